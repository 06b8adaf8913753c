#!/usr/bin/env python3
"""PyTorch's scaled_dot_product_attention on the shapes of gpu_bench, in the same device call.

Reads gpu_bench's table (the file named on the command line), times SDPA for one decode step of
one sequence (q [1, heads, 1, d_k]; K, V [1, heads, tokens, d] in bf16, contiguous: the engine
form a full cache hands to the kernel) with CUDA events, median of 20 after 3 warm-ups, and
prints every gpu_bench row again with its ratio to SDPA at the same geometry and length
(> 1: SlimKV's kernel is faster). Needs torch with CUDA; prints why not and exits 0 without it.
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
    return 0


if __name__ == "__main__":
    sys.exit(main())
