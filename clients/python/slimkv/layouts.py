"""Where Get writes (get(..., into=...)) and where Put reads from, in the layouts engines use.

  into=(k, v)   k[l], v[l]: per-layer tensors [pages·page_tokens, h_kv, d] (numpy or torch,
                any device): page p of the answer lands in rows [p·page_tokens, (p+1)·page_tokens)
  into=Paged(caches, layout, block_ids): one paged cache tensor per layer:
    "flash"           (2, num_blocks, block_size, h_kv, d_h)   FlashAttention / vLLM
    "flashinfer_nhd"  (num_blocks, 2, block_size, h_kv, d_h)   FlashInfer NHD
    "flashinfer_hnd"  (num_blocks, 2, h_kv, block_size, d_h)   FlashInfer HND
    "mla"             (num_blocks, block_size, d_c + d_r)      MLA latent (FlashMLA, vLLM MLA)
  block_ids[i] is the engine block holding the sequence's tokens [i·block_size, (i+1)·block_size)
  (the sequence's block table, from token 0); the engine's block size may differ from SlimKV's
  page size (either may be larger). Only the rows of the pages returned are written.

CPU destinations whose rows for a page are contiguous receive the bytes straight from the
network buffers; others (HND, a page spanning blocks, GPU tensors) receive each tensor once
more from a staging buffer."""
from __future__ import annotations

from typing import Sequence

import numpy as np

from . import _tensors as T
from . import _wire as W
from .errors import FailedPrecondition, InvalidArgument

LAYOUTS = ("flash", "flashinfer_nhd", "flashinfer_hnd", "mla")


def _np_view(t):
    """A writable numpy view of a CPU tensor's bytes, or None (GPU tensor)."""
    if T.is_torch(t):
        if t.device.type != "cpu":
            return None
        import torch
        return t.view(torch.uint8).numpy() if t.dtype != torch.uint8 else t.numpy()
    return t.view(np.uint8)


def _assign(dst, src: np.ndarray, code: int, transpose: bool = False):
    """dst[...] = src (numpy of DType code), dst numpy or torch on any device."""
    if T.is_torch(dst):
        import torch
        s = torch.from_numpy(np.ascontiguousarray(src))
        if code == T.BF16:
            s = s.view(torch.bfloat16)
        if transpose:
            s = s.transpose(0, 1)
        dst.copy_(s.to(dtype=dst.dtype, device=dst.device))
    else:
        s = T.convert(src, code, T.dtype_code(dst.dtype))
        dst[...] = s.transpose(1, 0, 2) if transpose else s


class TensorSink(W.Sink):
    def __init__(self, model: W.Model, k: Sequence, v: Sequence):
        if len(k) != model.num_layers or len(v) != model.num_layers:
            raise InvalidArgument(f"into: {len(k)} K and {len(v)} V tensors, the model has "
                                  f"{model.num_layers} layers")
        self.model, self.k, self.v = model, list(k), list(v)
        self.code = T.tensor_code(self.k[0])

    def dtype(self):
        return self.code

    def _slot(self, page, layer, role):
        pt = self.model.page_tokens
        t = (self.k if role == W.ROLE_K else self.v)[layer]
        if (page + 1) * pt > t.shape[0]:
            raise InvalidArgument(f"into: layer {layer} has {t.shape[0]} rows, page {page} needs "
                                  f"{(page + 1) * pt}")
        return t[page * pt:(page + 1) * pt]

    def direct(self, page, layer, role, code, nbytes):
        s = self._slot(page, layer, role)
        if code != self.code:
            return None
        v = _np_view(s)
        if v is None or not (v.flags.c_contiguous if isinstance(v, np.ndarray) else False):
            return None
        flat = v.reshape(-1)
        return flat if flat.size == nbytes else None

    def store(self, page, layer, role, array, code):
        _assign(self._slot(page, layer, role), array, code)


class Paged(W.Sink):
    """A paged KV cache (one tensor per layer) and a sequence's block table; see the module
    docstring for the layouts."""

    def __init__(self, caches: Sequence, layout: str, block_ids: Sequence[int]):
        if layout not in LAYOUTS:
            raise InvalidArgument(f"layout: {layout!r} is not one of {LAYOUTS}")
        self.caches, self.layout, self.block_ids = list(caches), layout, list(block_ids)
        shape = tuple(self.caches[0].shape)
        want = {"flash": 5, "flashinfer_nhd": 5, "flashinfer_hnd": 5, "mla": 3}[layout]
        if len(shape) != want:
            raise InvalidArgument(f"caches[0]: shape {shape} is not {layout}'s {want} dimensions")
        self.block_size = shape[{"flash": 2, "flashinfer_nhd": 2, "flashinfer_hnd": 3, "mla": 1}[layout]]
        self.num_blocks = shape[0] if layout != "flash" else shape[1]
        for b in self.block_ids:
            if not 0 <= b < self.num_blocks:
                raise InvalidArgument(f"block_ids: {b} outside [0, {self.num_blocks})")
        self.code = T.tensor_code(self.caches[0])
        self.model = None

    def bind(self, model: W.Model) -> "Paged":
        if len(self.caches) != model.num_layers:
            raise InvalidArgument(f"caches: {len(self.caches)} layers, the model has "
                                  f"{model.num_layers}")
        self.model = model
        return self

    def dtype(self):
        return self.code

    def segments(self, first_token: int, n_tokens: int):
        """(block id, row in block, row in the span, rows) covering tokens
        [first_token, first_token + n_tokens) of the sequence."""
        t, end = first_token, first_token + n_tokens
        while t < end:
            i, o = divmod(t, self.block_size)
            if i >= len(self.block_ids):
                raise InvalidArgument(f"block_ids: {len(self.block_ids)} blocks cover "
                                      f"{len(self.block_ids) * self.block_size} tokens; token {t} "
                                      "has none")
            n = min(self.block_size - o, end - t)
            yield self.block_ids[i], o, t - first_token, n
            t += n

    def view(self, layer: int, role: int, block: int, o: int, n: int):
        """The cache rows of `role` (K or V; LATENT for mla) in `block`, [n, h, d] (HND:
        [h, n, d]; mla: [n, width])."""
        c = self.caches[layer]
        kv = 0 if role == W.ROLE_K else 1
        if self.layout == "flash":
            return c[kv, block, o:o + n]
        if self.layout == "flashinfer_nhd":
            return c[block, kv, o:o + n]
        if self.layout == "flashinfer_hnd":
            return c[block, kv, :, o:o + n]
        return c[block, o:o + n]

    # Sink (K and V layouts): page index i of a Get starting at first_page.
    first_page = 0

    def direct(self, page, layer, role, code, nbytes):
        if self.layout == "flashinfer_hnd" or code != self.code:
            return None
        pt = self.model.page_tokens
        segs = list(self.segments((self.first_page + page) * pt, pt))
        if len(segs) != 1:
            return None
        b, o, _, n = segs[0]
        v = _np_view(self.view(layer, role, b, o, n))
        if v is None or not v.flags.c_contiguous or v.size != nbytes:
            return None
        return v.reshape(-1)

    def store(self, page, layer, role, array, code):
        pt = self.model.page_tokens
        for b, o, s, n in self.segments((self.first_page + page) * pt, pt):
            _assign(self.view(layer, role, b, o, n), array[s:s + n], code,
                    transpose=self.layout == "flashinfer_hnd")

    def fill_latent(self, result: W.GetResult, first_page: int) -> None:
        """Writes a raw Get's latent layers (mode latent, no quantizer) into an "mla" cache."""
        pt = self.model.page_tokens
        for p, layers in enumerate(result.stored):
            for l, s in enumerate(layers):
                if s.mode != "latent" or s.quant != "none":
                    raise FailedPrecondition(
                        f"into: page {first_page + p} layer {l} is stored {s.mode}/{s.quant}; an mla "
                        "cache takes unquantized latent pages (dequantize with slimkv.codecs)")
                code = T.dtype_code(s.dtype)
                arr = s.data.view(T.NUMPY[code]).reshape(pt, -1)
                for b, o, st, n in self.segments((first_page + p) * pt, pt):
                    _assign(self.view(l, W.ROLE_LATENT, b, o, n), arr[st:st + n], code)

    def read(self, first_page: int, pages: int) -> dict:
        """The cache's rows of pages [first_page, first_page + pages), per layer, as put()'s
        keyword arguments: {"k": [...], "v": [...]} or, for mla, {"latent": [...]}."""
        pt = self.model.page_tokens if self.model else None
        if pt is None:
            raise InvalidArgument("read: bind(model) first")
        roles = [W.ROLE_LATENT] if self.layout == "mla" else [W.ROLE_K, W.ROLE_V]
        out = {}
        for role in roles:
            per_layer = []
            for l in range(len(self.caches)):
                parts = []
                for b, o, _, n in self.segments(first_page * pt, pages * pt):
                    v = self.view(l, role, b, o, n)
                    if self.layout == "flashinfer_hnd":
                        v = v.transpose(0, 1) if T.is_torch(v) else v.transpose(1, 0, 2)
                    parts.append(v)
                if T.is_torch(parts[0]):
                    import torch
                    per_layer.append(torch.cat(parts).contiguous())
                else:
                    per_layer.append(np.concatenate(parts))
            out[{W.ROLE_K: "k", W.ROLE_V: "v", W.ROLE_LATENT: "latent"}[role]] = per_layer
        return out


def sink_for(model: W.Model, into, first_page: int = 0) -> W.Sink:
    if isinstance(into, Paged):
        into.bind(model)
        into.first_page = first_page
        return into
    if isinstance(into, (tuple, list)) and len(into) == 2:
        return TensorSink(model, into[0], into[1])
    raise InvalidArgument("into: want (k_layers, v_layers) or a slimkv.layouts.Paged")
