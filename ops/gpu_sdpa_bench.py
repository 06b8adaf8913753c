#!/usr/bin/env python3
"""PyTorch baselines on the shapes of gpu_bench, in the same device call.

Reads gpu_bench's tables (the file named on the command line) and times, with CUDA events,
median of 20 after 3 warm-ups:
- attention rows: scaled_dot_product_attention for one decode step of one sequence
  (q [1, heads, 1, d_k]; K, V [1, heads, tokens, d] in bf16, contiguous: the engine form a full
  cache hands to the kernel);
- reconstruction rows: the unfused path on cuBLAS — the stored bf16 rows widened to float32,
  torch.matmul in float32 (cuBLAS SGEMM, the precision SlimKV's kernel keeps), the RoPE (slim) or
  the k_rope placement (MLA) as separate tensor ops, both outputs cast to bf16 — and, for
  scale, the same matmuls in bf16 on the tensor cores.
Each gpu_bench row is printed again with its ratio to the baseline (> 1: SlimKV is faster).
Needs torch with CUDA; prints why not and exits 0 without it.
"""
import re
import sys

GEOMETRIES = {  # gpu_bench row prefix -> (q heads, kv heads, d_k, d_v)
    "llama2-7b": (32, 32, 128, 128),
    "deepseek": (128, 128, 192, 128),
}


def median_ms(torch, fn):
    for _ in range(3):
        fn()
    times = []
    for _ in range(20):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end))
    times.sort()
    return times[len(times) // 2]


def sdpa_us(torch, geometry, tokens):
    h_q, h_kv, d_k, d_v = GEOMETRIES[geometry]
    F = torch.nn.functional
    q = torch.randn(1, h_q, 1, d_k, device="cuda", dtype=torch.bfloat16)
    k = torch.randn(1, h_kv, tokens, d_k, device="cuda", dtype=torch.bfloat16)
    v = torch.randn(1, h_kv, tokens, d_v, device="cuda", dtype=torch.bfloat16)
    ms = median_ms(torch, lambda: F.scaled_dot_product_attention(q, k, v))
    del q, k, v
    torch.cuda.empty_cache()
    return ms * 1e3


def unfused_slim(torch, tokens, dtype):
    e, half = 4096, 64
    x = torch.randn(tokens, e, device="cuda", dtype=torch.bfloat16)
    w = torch.randn(e, e, device="cuda", dtype=dtype)
    pos = torch.arange(tokens, device="cuda", dtype=torch.float32)[:, None]
    inv = 10000.0 ** (-torch.arange(half, device="cuda", dtype=torch.float32) / half)
    cos, sin = torch.cos(pos * inv)[:, None, :], torch.sin(pos * inv)[:, None, :]

    def run():
        xw = x.to(dtype)
        v = (xw @ w).to(torch.bfloat16)
        k = x.float().view(tokens, 32, 128)
        lo, hi = k[..., :half], k[..., half:]
        k = torch.cat((lo * cos - hi * sin, hi * cos + lo * sin), dim=-1).to(torch.bfloat16)
        return k, v

    ms = median_ms(torch, run)
    del x, w
    torch.cuda.empty_cache()
    return ms * 1e3


def unfused_latent(torch, tokens, dtype):
    rows = torch.randn(tokens, 576, device="cuda", dtype=torch.bfloat16)
    w_uk = torch.randn(512, 128 * 128, device="cuda", dtype=dtype)
    w_uv = torch.randn(512, 128 * 128, device="cuda", dtype=dtype)

    def run():
        c = rows[:, :512].to(dtype)
        k_nope = (c @ w_uk).view(tokens, 128, 128)
        rope = rows[:, None, 512:].expand(tokens, 128, 64).to(dtype)
        k = torch.cat((k_nope, rope), dim=-1).to(torch.bfloat16)
        v = (c @ w_uv).to(torch.bfloat16)
        return k, v

    ms = median_ms(torch, run)
    del rows, w_uk, w_uv
    torch.cuda.empty_cache()
    return ms * 1e3


def reconstruction(torch, path):
    rows = []
    with open(path) as f:
        for line in f:
            m = re.match(r"\|\s*recon (\S+) (.+?)\s*\|\s*(\d+)\s*\|\s*([\d.]+)\s*\|", line)
            if m:
                rows.append((m.group(1), m.group(2), int(m.group(3)), float(m.group(4))))
    if not rows:
        return
    print("\n| reconstruction | tokens | SlimKV µs | cuBLAS fp32 + RoPE µs | ×fp32 | cuBLAS bf16 + RoPE µs | ×bf16 |")
    print("|---|---|---|---|---|---|---|")
    for geometry, kernel, tokens, us in rows:
        base = unfused_slim if geometry == "llama2-7b" else unfused_latent
        f32, b16 = base(torch, tokens, torch.float32), base(torch, tokens, torch.bfloat16)
        print(f"| {geometry} {kernel} | {tokens} | {us:.1f} | {f32:.1f} | {f32 / us:.2f} | {b16:.1f} | {b16 / us:.2f} |")


def main():
    try:
        import torch
    except ImportError:
        print("gpu_sdpa_bench: no torch; nothing measured")
        return 0
    if not torch.cuda.is_available():
        print("gpu_sdpa_bench: torch sees no GPU; nothing measured")
        return 0
    rows = []
    with open(sys.argv[1]) as f:
        for line in f:
            m = re.match(r"\|\s*(\S+) (.+?)\s*\|\s*(\d+)\s*\|\s*([\d.]+)\s*\|", line)
            if m and m.group(1) in GEOMETRIES:
                rows.append((m.group(1), m.group(2), int(m.group(3)), float(m.group(4))))
    print(f"{torch.cuda.get_device_name()}, torch {torch.__version__}\n")
    print("| kernel | tokens | SlimKV µs | SDPA µs (full K, V) | ×SDPA |")
    print("|---|---|---|---|---|")
    cache = {}
    for geometry, kernel, tokens, us in rows:
        key = (geometry, tokens)
        if key not in cache:
            cache[key] = sdpa_us(torch, geometry, tokens)
        print(f"| {geometry} {kernel} | {tokens} | {us:.1f} | {cache[key]:.1f} | {cache[key] / us:.2f} |")
    reconstruction(torch, sys.argv[1])
    return 0


if __name__ == "__main__":
    sys.exit(main())
