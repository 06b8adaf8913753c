"""Synthetic model directories for tests, the demo and the benchmark (config.json + model.safetensors
written with numpy; no checkpoint download), and the float64 truth of what an engine caches,
recomputed from the weights (SPEC §2). numpy only."""
from __future__ import annotations

import hashlib
import json
import pathlib
import shutil
import signal
import struct
import subprocess
import tempfile
import time

import numpy as np

from . import _tensors as _T


def write_safetensors(path: pathlib.Path, tensors: dict) -> None:
    """tensors: name -> float32 array, written as BF16 (values are made bf16-exact)."""
    header, blobs, off = {}, [], 0
    for name, a in tensors.items():
        raw = _T.float32_to_bf16(a).tobytes()
        header[name] = {"dtype": "BF16", "shape": list(a.shape), "data_offsets": [off, off + len(raw)]}
        blobs.append(raw)
        off += len(raw)
    h = json.dumps(header).encode()
    h += b" " * (-len(h) % 8)
    path.write_bytes(struct.pack("<Q", len(h)) + h + b"".join(blobs))


def write_model_dir(path: pathlib.Path, config: dict, tensors: dict) -> pathlib.Path:
    path.mkdir(parents=True, exist_ok=True)
    (path / "config.json").write_text(json.dumps(config))
    write_safetensors(path / "model.safetensors", tensors)
    return path


def bf16_exact(a: np.ndarray) -> np.ndarray:
    return _T.bf16_to_float32(_T.float32_to_bf16(a.astype(np.float32)))


class Llama:
    """llama MHA (e = d, so slim, xcache and projected latent all apply), half-split RoPE."""

    def __init__(self, layers=2, d=64, heads=4, kv_heads=4, head_dim=16, theta=10000.0, seed=1):
        self.layers, self.d, self.heads, self.kv_heads, self.head_dim = layers, d, heads, kv_heads, head_dim
        self.theta = theta
        rng = np.random.default_rng(seed)
        e = kv_heads * head_dim
        # HF orientation: k_proj.weight is [e, d] = W_K^T. W_K orthogonal (then rounded to bf16),
        # κ ≈ 1, so slim holds in bf16 too; ill-conditioned layers are cache/'s tests' business.
        self.wk = [bf16_exact(np.linalg.qr(rng.normal(0, 1, (e, d)))[0]) for _ in range(layers)]
        self.wv = [bf16_exact(rng.normal(0, d ** -0.5, (e, d))) for _ in range(layers)]

    def config(self) -> dict:
        return {"architectures": ["LlamaForCausalLM"], "model_type": "llama",
                "num_hidden_layers": self.layers, "hidden_size": self.d,
                "intermediate_size": self.d * 8 // 3, "num_attention_heads": self.heads,
                "num_key_value_heads": self.kv_heads, "head_dim": self.head_dim,
                "max_position_embeddings": 4096, "rope_theta": self.theta, "rms_norm_eps": 1e-5,
                "vocab_size": 32000, "torch_dtype": "bfloat16"}

    def write(self, path: pathlib.Path) -> pathlib.Path:
        t = {}
        for l in range(self.layers):
            p = f"model.layers.{l}.self_attn."
            t[p + "k_proj.weight"], t[p + "v_proj.weight"] = self.wk[l], self.wv[l]
        return write_model_dir(path, self.config(), t)

    def kv(self, layer: int, x: np.ndarray, first_pos: int = 0):
        """float64 K (post-RoPE) and V [T, h_kv, d_h] from x [T, d] at positions first_pos.."""
        T = x.shape[0]
        x = x.astype(np.float64)
        k = (x @ self.wk[layer].astype(np.float64).T).reshape(T, self.kv_heads, self.head_dim)
        v = (x @ self.wv[layer].astype(np.float64).T).reshape(T, self.kv_heads, self.head_dim)
        return rope(k, np.arange(first_pos, first_pos + T), self.theta), v


def rope(k: np.ndarray, pos: np.ndarray, theta: float) -> np.ndarray:
    """Half-split (rotate_half) RoPE over the whole head; the angle formed in float32 as engines do."""
    d_h = k.shape[-1]
    half = d_h // 2
    inv = np.power(theta, -2.0 * np.arange(half) / d_h).astype(np.float32)
    ang = (pos.astype(np.float32)[:, None] * inv[None, :]).astype(np.float64)
    c, s = np.cos(ang)[:, None, :], np.sin(ang)[:, None, :]
    a, b = k[..., :half], k[..., half:]
    return np.concatenate([a * c - b * s, b * c + a * s], axis=-1)


class DeepSeek:
    """MLA, DeepSeek layout: latent row = c_kv [kv_lora_rank] + shared k_rope [rope_dim]."""

    def __init__(self, layers=2, d=64, heads=4, head_dim=16, kv_lora_rank=16, rope_dim=8, seed=2):
        self.layers, self.d, self.heads, self.head_dim = layers, d, heads, head_dim
        self.rank, self.rope_dim = kv_lora_rank, rope_dim
        rng = np.random.default_rng(seed)
        self.kv_a = [bf16_exact(rng.normal(0, d ** -0.5, (kv_lora_rank + rope_dim, d))) for _ in range(layers)]
        self.kv_b = [bf16_exact(rng.normal(0, kv_lora_rank ** -0.5, (heads * 2 * head_dim, kv_lora_rank)))
                     for _ in range(layers)]

    @property
    def latent_dim(self):
        return self.rank + self.rope_dim

    def config(self) -> dict:
        return {"architectures": ["DeepseekV3ForCausalLM"], "model_type": "deepseek_v3",
                "num_hidden_layers": self.layers, "hidden_size": self.d,
                "num_attention_heads": self.heads, "num_key_value_heads": self.heads,
                "kv_lora_rank": self.rank, "qk_rope_head_dim": self.rope_dim,
                "qk_nope_head_dim": self.head_dim, "v_head_dim": self.head_dim,
                "max_position_embeddings": 4096, "rope_theta": 10000.0, "vocab_size": 32000,
                "torch_dtype": "bfloat16"}

    def write(self, path: pathlib.Path) -> pathlib.Path:
        t = {}
        for l in range(self.layers):
            p = f"model.layers.{l}.self_attn."
            t[p + "kv_a_proj_with_mqa.weight"] = self.kv_a[l]
            t[p + "kv_a_layernorm.weight"] = np.ones(self.rank, np.float32)
            t[p + "kv_b_proj.weight"] = self.kv_b[l]
        return write_model_dir(path, self.config(), t)

    def kv(self, layer: int, latent: np.ndarray):
        """float64 K [T, heads, nope + rope] and V [T, heads, d_v] from latent rows."""
        T = latent.shape[0]
        lat = latent.astype(np.float64)
        c, r = lat[:, :self.rank], lat[:, self.rank:]
        w = self.kv_b[layer].astype(np.float64).reshape(self.heads, 2 * self.head_dim, self.rank)
        k_nope = np.einsum("tc,hic->thi", c, w[:, :self.head_dim])
        v = np.einsum("tc,hic->thi", c, w[:, self.head_dim:])
        k = np.concatenate([k_nope, np.broadcast_to(r[:, None, :], (T, self.heads, self.rope_dim))], -1)
        return k, v


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


class Daemon:
    """A slimkvd of its own: a temp dir with a config (listen on 127.0.0.1:0), --ready_file to
    learn the ports, bounded start-up, SIGTERM (then SIGKILL) and the dir removed on stop()."""

    def __init__(self, slimkvd: str, config: str = ""):
        self.dir = pathlib.Path(tempfile.mkdtemp(prefix="slimkvd-py-"))
        conf = self.dir / "slimkvd.conf"
        conf.write_text(config + f'\nlisten: "127.0.0.1:0"\nmetrics_listen: "127.0.0.1:0"\n'
                        f'data_dir: "{self.dir}/data"\n')
        ready = self.dir / "ready"
        self.log = open(self.dir / "slimkvd.log", "wb")
        self.proc = subprocess.Popen([slimkvd, f"--config={conf}", f"--ready_file={ready}"],
                                     stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            parts = ready.read_text().split() if ready.exists() else []
            if len(parts) >= 2:
                self.port, self.metrics_port = int(parts[0]), int(parts[1])
                self.target = f"127.0.0.1:{self.port}"
                return
            if self.proc.poll() is not None:
                raise RuntimeError(f"slimkvd exited at start-up:\n{self.logtext()}")
            time.sleep(0.02)  # polling a file the daemon writes once
        self.stop()
        raise RuntimeError("slimkvd did not become ready within 20 s")

    def logtext(self) -> str:
        return (self.dir / "slimkvd.log").read_text(errors="replace")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)
