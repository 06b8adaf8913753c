"""The Python client's benchmark (docs/benchmarks.md "Python client"):

    python -m slimkv.bench --slimkvd build/daemon/slimkvd --client-bench build/clients/cpp/client_bench

1. Put and Get GB/s of the Python client against the C++ client (clients/cpp/client_bench.cc)
   on the same daemon, the same model and the same page size: one-page prefixes of random bf16
   K and V stored in full, one call per page, then read back `--rounds` times.
2. Slim reconstruction: the daemon's own slim Get (decoded on its CPU) against a raw Get plus
   slimkv.codecs in torch on this CPU, for the same pages.
Llama-2-7B layer geometry (d = 4096, 32 heads of 128) with `--layers` layers, 256-token pages.
Starts its own slimkvd in a temp dir; prints a markdown table."""
from __future__ import annotations

import argparse
import os
import platform
import subprocess
import tempfile
import time
import pathlib

import numpy as np

from . import Client, float32_to_bf16
from .testing import Daemon, Llama


def _gbps(nbytes, seconds):
    return nbytes / seconds / 1e9


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--slimkvd", default="build/daemon/slimkvd")
    ap.add_argument("--client-bench", default="build/clients/cpp/client_bench")
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--page-tokens", type=int, default=256)
    ap.add_argument("--pages", type=int, default=16)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--slim-pages", type=int, default=4)
    args = ap.parse_args()
    import torch
    from . import codecs

    d = Daemon(os.path.abspath(args.slimkvd),
               "default_policy { mode: MODE_FULL quant: QUANT_NONE error_tolerance: 0.5 }\n")
    try:
        c = Client(d.target, deadline=1200)
        spec = Llama(layers=args.layers, d=4096, heads=32, kv_heads=32, head_dim=128)
        tmp = pathlib.Path(tempfile.mkdtemp(prefix="slimkv-bench-"))
        t0 = time.perf_counter()
        m = c.register(str(spec.write(tmp / "llama")), page_tokens=args.page_tokens,
                       wait_for_factors=1800)
        print(f"registered in {time.perf_counter() - t0:.1f} s (factors {m.factors})", flush=True)
        pt, rng = m.page_tokens, np.random.default_rng(0)
        page_bytes = m.num_layers * 2 * pt * 4096 * 2

        # 1. C++ client, then Python, same daemon and page size.
        out = subprocess.run([os.path.abspath(args.client_bench), d.target, str(tmp / "llama"),
                              str(pt), str(args.pages), str(args.rounds), "1"],
                             check=True, capture_output=True, text=True).stdout.split()
        cpp_put, cpp_get = float(out[0]), float(out[1])
        pages = []
        for p in range(args.pages):
            kv = [float32_to_bf16(rng.uniform(-2, 2, (pt, 32, 128)).astype(np.float32))
                  for _ in range(2 * m.num_layers)]
            pages.append(([int(t) for t in rng.integers(0, 32000, pt)], kv[:m.num_layers],
                          kv[m.num_layers:]))
        t0 = time.perf_counter()
        for tokens, k, v in pages:
            c.put(m, tokens, k=k, v=v, mode="full", quant="none")
        py_put = _gbps(page_bytes * args.pages, time.perf_counter() - t0)
        t0 = time.perf_counter()
        for _ in range(args.rounds):
            for tokens, _, _ in pages:
                assert c.get(m, tokens).pages == 1
        py_get = _gbps(page_bytes * args.pages * args.rounds, time.perf_counter() - t0)
        for tokens, _, _ in pages:
            c.delete(m, tokens)

        # 2. Slim: the daemon's decode against raw + torch on this CPU.
        slim = []
        for p in range(args.slim_pages):
            x = rng.normal(0, 1, (pt, 4096))
            kv = [spec.kv(l, x) for l in range(m.num_layers)]
            tokens = [int(t) for t in rng.integers(0, 32000, pt)]
            r = c.put(m, tokens, k=[k.astype(np.float32) for k, _ in kv],
                      v=[v.astype(np.float32) for _, v in kv], mode="slim")
            slim.append(tokens)
        modes = c.get(m, slim[0], raw=True).stored[0]
        assert all(s.mode == "slim" for s in modes), [s.mode for s in modes]
        factors = {(l, "slim"): c.layer_factors(m, l, "slim") for l in range(m.num_layers)}
        decoders = {l: codecs.LayerDecoder(m, factors[(l, "slim")]) for l in range(m.num_layers)}
        t0 = time.perf_counter()
        for tokens in slim:
            c.get(m, tokens, dtype="fp32")
        daemon_s = (time.perf_counter() - t0) / len(slim)
        raw_s = dec_s = 0.0
        for tokens in slim:
            t0 = time.perf_counter()
            raw = c.get(m, tokens, raw=True)
            t1 = time.perf_counter()
            for l, s in enumerate(raw.stored[0]):
                decoders[l].decode(s, 0)
            raw_s += t1 - t0
            dec_s += time.perf_counter() - t1
        raw_s /= len(slim)
        dec_s /= len(slim)
        c.close()
    finally:
        d.stop()

    print(f"\nmachine: {platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__} "
          f"({torch.get_num_threads()} threads); {m.num_layers} layers of Llama-2-7B geometry, "
          f"{pt}-token pages ({page_bytes / 2**20:.0f} MiB bf16 K+V per page)\n")
    print("| what | C++ client | Python client | Python / C++ |")
    print("|---|---|---|---|")
    print(f"| put GB/s ({args.pages} pages, full) | {cpp_put:.3f} | {py_put:.3f} | {py_put / cpp_put:.2f} |")
    print(f"| get GB/s ({args.pages} pages × {args.rounds}) | {cpp_get:.3f} | {py_get:.3f} | {py_get / cpp_get:.2f} |")
    print()
    print("| slim page (all layers) | seconds per page |")
    print("|---|---|")
    print(f"| daemon's slim Get (decoded on the daemon's CPU, fp32 out) | {daemon_s:.4f} |")
    print(f"| raw Get (stored K_raw) | {raw_s:.4f} |")
    print(f"| slimkv.codecs decode in torch on this CPU | {dec_s:.4f} |")
    print(f"| raw Get + torch decode | {raw_s + dec_s:.4f} (daemon's time / this: "
          f"{daemon_s / (raw_s + dec_s):.2f}) |")


if __name__ == "__main__":
    main()
