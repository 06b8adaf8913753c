import numpy as np

import slimkv


def prompt(seed: int, pages: int, page_tokens: int = 16):
    rng = np.random.default_rng(seed)
    return [int(t) for t in rng.integers(0, 32000, pages * page_tokens)], rng


def rel(a, b) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-300))


def as_float(a):
    a = np.asarray(a)
    return slimkv.bf16_to_float32(a).astype(np.float64) if a.dtype == np.uint16 else a.astype(np.float64)


def cast(a64, dtype: str):
    """float64 -> what an engine would send: float32, or bf16 bits (uint16)."""
    f = np.asarray(a64, np.float32)
    return slimkv.float32_to_bf16(f) if dtype == "bf16" else f


def llama_truth(spec, seed, pages, page_tokens=16):
    tokens, rng = prompt(seed, pages, page_tokens)
    x = rng.normal(0, 1, (pages * page_tokens, spec.d))
    ks, vs = zip(*(spec.kv(l, x) for l in range(spec.layers)))
    return tokens, list(ks), list(vs)
