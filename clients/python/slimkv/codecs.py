"""Engine-side reconstruction (torch): K and V rebuilt from raw pages (Get with raw=True) on the
caller's device, with the layer's factors from the daemon (Client.layer_factors, the
GetLayerFactors RPC). Byte layouts: docs/api.md "Raw stored forms"; math: docs/codecs.md.

    f = client.layer_factors(model, layer, "slim")
    dec = slimkv.codecs.LayerDecoder(model, f, device="cuda")
    k, v = dec.decode(stored_layer, first_position)   # [page_tokens, h_kv, d] float32

Tolerances against the daemon's own decode (docs/python.md): see TOLERANCE."""
from __future__ import annotations

import math

import numpy as np
import torch

from . import _tensors as T
from ._wire import Model, StoredLayer

# Relative Frobenius difference from the daemon's fp32 decode of the same stored bytes, per
# stored dtype: both compute in float32 (the daemon with OpenBLAS, torch with its own GEMM), so
# they differ by float32 summation order, amplified nowhere (decode is a product, not a solve).
TOLERANCE = {"full": 0.0, "slim": 1e-5, "xcache": 1e-5, "latent": 1e-5}

_TORCH = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
_GROUP = {"fp8": 128, "int8": 64, "int4": 32}


def _f32(raw: torch.Tensor) -> torch.Tensor:
    """Little-endian fp32 values of a uint8 tensor whose length is a multiple of 4."""
    return raw.contiguous().view(torch.float32)


def _codes(raw: torch.Tensor, quant: str, cq: int) -> torch.Tensor:
    """[rows, cq] float32 codes from [rows, code bytes] uint8."""
    if quant == "fp8":
        return raw.contiguous().view(torch.float8_e4m3fn).float()
    if quant == "int8":
        return raw.contiguous().view(torch.int8).float()
    lo, hi = raw & 15, raw >> 4
    return torch.stack([lo, hi], dim=-1).reshape(raw.shape[0], -1)[:, :cq].float()


def dequantize(data: torch.Tensor, quant: str, rows: int, cols: int, *, per_channel: bool = False,
               keep_cols: int = 0) -> torch.Tensor:
    """A quantized matrix ([rows, cols] of docs/quantizers.md "Byte layout") as float32, on
    data's device: fp8 code·scale, int8 code·scale, int4 zero + code·scale (multiply, then add);
    the last keep_cols channels from bf16."""
    cq = cols - keep_cols
    code_bytes = (cq + 1) // 2 if quant == "int4" else cq
    out = torch.empty(rows, cols, dtype=torch.float32, device=data.device)
    if per_channel:  # int4 keys: blocks of 32 rows, one (scale, zero) per channel and block
        off = 0
        for r0 in range(0, rows, 32):
            b = min(32, rows - r0)
            codes = _codes(data[off:off + b * code_bytes].reshape(b, code_bytes), quant, cq)
            off += b * code_bytes
            scale = _f32(data[off:off + 4 * cq])
            zero = _f32(data[off + 4 * cq:off + 8 * cq])
            off += 8 * cq
            out[r0:r0 + b, :cq] = zero + codes * scale
            if keep_cols:
                out[r0:r0 + b, cq:] = data[off:off + 2 * b * keep_cols].contiguous().view(
                    torch.bfloat16).reshape(b, keep_cols).float()
                off += 2 * b * keep_cols
        return out
    g = _GROUP[quant]
    G = math.ceil(cq / g)
    zeros = 4 * G if quant == "int4" else 0
    row_bytes = code_bytes + 4 * G + zeros + 2 * keep_cols
    m = data[:rows * row_bytes].reshape(rows, row_bytes)
    codes = _codes(m[:, :code_bytes], quant, cq)
    scale = _f32(m[:, code_bytes:code_bytes + 4 * G]).reshape(rows, G)
    scale = scale.repeat_interleave(g, dim=1)[:, :cq]
    if quant == "int4":
        zero = _f32(m[:, code_bytes + 4 * G:code_bytes + 8 * G]).reshape(rows, G)
        out[:, :cq] = zero.repeat_interleave(g, dim=1)[:, :cq] + codes * scale
    else:
        out[:, :cq] = codes * scale
    if keep_cols:
        t = code_bytes + 4 * G + zeros
        out[:, cq:] = m[:, t:].contiguous().view(torch.bfloat16).reshape(rows, keep_cols).float()
    return out


def quant_bytes(quant: str, rows: int, cols: int, per_channel: bool = False, keep_cols: int = 0) -> int:
    """Bytes of a quantized [rows, cols] matrix (docs/quantizers.md "Bytes per token")."""
    cq = cols - keep_cols
    tail = 2 * keep_cols
    if quant == "int4" and per_channel:
        return rows * ((cq + 1) // 2 + tail) + math.ceil(rows / 32) * 8 * cq
    if quant == "int4":
        return rows * ((cq + 1) // 2 + 8 * math.ceil(cq / 32) + tail)
    return rows * (cq + 4 * math.ceil(cq / _GROUP[quant]) + tail)


def rope_cos_sin(info, positions: torch.Tensor, device) -> tuple[torch.Tensor, torch.Tensor]:
    """[T, rotary_dim/2] cos and sin (attention factor included) as the daemon forms them."""
    inv = torch.tensor(list(info.inv_freq), dtype=torch.float64)
    if info.fp32_angles:
        ang = (positions.to(torch.float32)[:, None] * inv.to(torch.float32)[None, :]).double()
    else:
        ang = positions.double()[:, None] * inv[None, :]
    a = info.attention_factor or 1.0
    cos = ang.cos().float() * np.float32(a)
    sin = ang.sin().float() * np.float32(a)
    return cos.to(device), sin.to(device)


def apply_rope(x: torch.Tensor, info, positions: torch.Tensor) -> torch.Tensor:
    """K = R_p·K_raw for x [T, heads, d_h] float32 (a new tensor)."""
    cos, sin = rope_cos_sin(info, positions, x.device)
    r = info.rotary_dim
    half = r // 2
    out = x.clone()
    c, s = cos[:, None, :], sin[:, None, :]
    if info.interleaved:
        a, b = x[..., 0:r:2], x[..., 1:r:2]
        out[..., 0:r:2] = a * c - b * s
        out[..., 1:r:2] = b * c + a * s
    else:
        a, b = x[..., :half], x[..., half:r]
        out[..., :half] = a * c - b * s
        out[..., half:r] = b * c + a * s
    return out


class LayerDecoder:
    """Rebuilds one layer's K and V from its stored bytes, on `device`. factors: what
    Client.layer_factors returned for the layer and the stored mode (None for full)."""

    def __init__(self, model: Model, factors=None, device="cpu"):
        self.m, self.device = model, torch.device(device)
        self.info = factors.info if factors is not None else None
        self.f = {}
        for name, a in (factors or {}).items():
            t = torch.from_numpy(np.ascontiguousarray(a))
            if a.dtype == np.uint16:
                t = t.view(torch.bfloat16)
            self.f[name] = t.to(self.device, torch.float32)

    def _matrix(self, s: StoredLayer, parts):
        """Stored parts [(cols, k_like, keep)] as float32 [T, cols] tensors."""
        T_ = self.m.page_tokens
        data = torch.from_numpy(s.data).to(self.device)
        out, off = [], 0
        for cols, k_like, keep in parts:
            if s.quant == "none":
                n = T_ * cols * T.SIZE[T.dtype_code(s.dtype)]
                out.append(data[off:off + n].contiguous().view(_TORCH[s.dtype]).reshape(T_, cols).float())
            else:
                per_channel = s.quant == "int4" and k_like
                keep = keep if s.quant == "fp8" else 0
                n = quant_bytes(s.quant, T_, cols, per_channel, keep)
                out.append(dequantize(data[off:off + n], s.quant, T_, cols, per_channel=per_channel,
                                      keep_cols=keep))
            off += n
        if off != s.data.size:
            raise ValueError(f"stored layer: {s.data.size} bytes, its {s.mode}/{s.quant} parts take {off}")
        return out

    def decode(self, s: StoredLayer, first_position: int):
        """(K, V) float32 on the device: [page_tokens, h_kv, head_dim], [.., v_head_dim]. The
        page's tokens sit at positions first_position.. (page index · page_tokens)."""
        m, f, info = self.m, self.f, self.info
        T_ = m.page_tokens
        pos = torch.arange(first_position, first_position + T_)
        e = m.num_kv_heads * m.head_dim
        if s.mode == "full":
            k, v = self._matrix(s, [(e, True, 0), (m.num_kv_heads * m.v_head_dim, False, 0)])
            return k.reshape(T_, m.num_kv_heads, -1), v.reshape(T_, m.num_kv_heads, -1)
        if s.mode == "latent" and "w_uk" in f:
            return self._native(s)
        if s.mode == "slim":
            (k_raw,) = self._matrix(s, [(e, True, 0)])
            v = k_raw @ f["w_kv"]
            if "b_k" in f or "b_v" in f:
                v = v + (f.get("b_v", 0) - (f["b_k"] @ f["w_kv"] if "b_k" in f else 0))
        elif s.mode == "xcache":
            (x,) = self._matrix(s, [(m.hidden_size, False, 0)])
            k_raw = x @ f["w_k"] + f.get("b_k", 0)
            v = x @ f["w_v"] + f.get("b_v", 0)
        elif s.mode == "latent":
            kept = list(info.kept_k_cols)
            (c,) = self._matrix(s, [(len(kept) + info.rank, False, 0)])
            rec = c[:, len(kept):] @ f["basis"].T  # [T, n_proj]: K columns not kept, then V
            mask = torch.ones(e, dtype=torch.bool)
            mask[kept] = False
            k_raw = torch.empty(T_, e, device=self.device)
            k_raw[:, mask.to(self.device)] = rec[:, :e - len(kept)]
            k_raw[:, kept] = c[:, :len(kept)]
            v = rec[:, e - len(kept):]
            if "b_k" in f:
                k_raw[:, mask.to(self.device)] += f["b_k"][mask.to(self.device)]
            if "b_v" in f:
                v = v + f["b_v"]
        else:
            raise ValueError(f"stored layer: mode {s.mode!r}")
        k = k_raw.reshape(T_, m.num_kv_heads, m.head_dim)
        if info is not None and info.HasField("rope"):
            k = apply_rope(k, info.rope, pos)
        return k, v.reshape(T_, m.num_kv_heads, m.v_head_dim)

    def _native(self, s: StoredLayer):
        m, f, info = self.m, self.f, self.info
        T_ = m.page_tokens
        d_c, r = info.d_c, info.rope_dim
        heads = m.num_kv_heads
        rope_elems = r if info.shared_rope else heads * r
        keep = r if info.shared_rope else 0
        (lat,) = self._matrix(s, [(d_c + rope_elems, False, keep)])
        c, rope = lat[:, :d_c], lat[:, d_c:]
        d_nope = m.head_dim - r
        nope = (c @ f["w_uk"]).reshape(T_, heads, d_nope)
        v = (c @ f["w_uv"]).reshape(T_, heads, m.v_head_dim)
        k = torch.empty(T_, heads, m.head_dim, device=self.device)
        rp = rope.reshape(T_, 1, r).expand(T_, heads, r) if info.shared_rope else rope.reshape(T_, heads, r)
        if len(info.rope_cols) == 0:
            k[..., :d_nope], k[..., d_nope:] = nope, rp
        else:
            cols = torch.tensor(list(info.rope_cols)).reshape(heads, r)
            for h in range(heads):
                mask = torch.ones(m.head_dim, dtype=torch.bool)
                mask[cols[h]] = False
                k[:, h, cols[h]] = rp[:, h]
                k[:, h, mask] = nope[:, h]
        return k, v


def decode_page(model: Model, stored_page, factors_by_layer: dict, first_page_index: int,
                device="cpu"):
    """Every layer of one raw page: lists of K and V. factors_by_layer[(layer, mode)] holds
    Client.layer_factors for each (layer, stored mode) present (not needed for full)."""
    ks, vs = [], []
    for l, s in enumerate(stored_page):
        dec = LayerDecoder(model, factors_by_layer.get((l, s.mode)), device)
        k, v = dec.decode(s, first_page_index * model.page_tokens)
        ks.append(k)
        vs.append(v)
    return ks, vs
