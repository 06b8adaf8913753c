"""What SlimKV is for, in one run (ops/demo.sh): the same prompts stored in full, slim, xcache and
the projected latent, and slim + int8 (a Llama-geometry MHA model) and in the native latent (a DeepSeek-geometry
MLA model), stored vs logical bytes per mode, and what comes back checked against the engine's
own K and V (recomputed in float64 from the weights).

    python clients/python/examples/demo.py [--target 127.0.0.1:50551]

Models are synthetic (random bf16 weights written as config.json + safetensors), so nothing is
downloaded; their geometry is small so the demo takes seconds."""
import argparse
import pathlib
import tempfile

import numpy as np

import slimkv
from slimkv.testing import DeepSeek, Llama


def rel(a, b):
    return float(np.linalg.norm(np.asarray(a, np.float64) - b) / np.linalg.norm(b))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--target", default="127.0.0.1:50551")
    ap.add_argument("--prompts", type=int, default=8)
    args = ap.parse_args()
    c = slimkv.Client(args.target, deadline=120)
    tmp = tempfile.mkdtemp(prefix="slimkv-demo-")
    llama = Llama(layers=4, d=512, heads=8, kv_heads=8, head_dim=64)
    deepseek = DeepSeek(layers=4, d=512, heads=8, head_dim=64, kv_lora_rank=128, rope_dim=32)
    m = c.register(str(llama.write(pathlib.Path(tmp) / "llama")), page_tokens=64,
                   wait_for_factors=300)
    ml = c.register(str(deepseek.write(pathlib.Path(tmp) / "deepseek")),
                    page_tokens=64, wait_for_factors=300)
    rng = np.random.default_rng()  # fresh prompts each run: the data dir keeps earlier ones
    pt = m.page_tokens
    prompts = []
    for i in range(args.prompts):
        x = rng.normal(0, 1, (4 * pt, llama.d))
        kv = [llama.kv(l, x) for l in range(llama.layers)]
        prompts.append(([int(t) for t in rng.integers(0, 32000, 4 * pt)], kv))
    print(f"{args.prompts} prompts of {4 * pt} tokens, {llama.layers} layers, d={llama.d}, "
          f"h_kv={llama.kv_heads}, d_h={llama.head_dim}; pages of {pt} tokens; K, V sent as bf16")
    print(f"{'model / mode':<24}{'logical MiB':>12}{'stored MiB':>12}{'ratio':>8}"
          f"{'max rel err K':>15}{'max rel err V':>15}  layers kept")
    ok = True
    for n, (mode, quant) in enumerate([("full", "none"), ("slim", "none"), ("slim", "int8"),
                                       ("xcache", "none"), ("latent", "none")]):
        logical = stored = 0
        err_k = err_v = 0.0
        kept = total = 0
        for i, (tokens, kv) in enumerate(prompts):
            tokens = [t + 40000 * n for t in tokens]  # each mode its own prefixes
            ks = [slimkv.float32_to_bf16(k.astype(np.float32)) for k, _ in kv]
            vs = [slimkv.float32_to_bf16(v.astype(np.float32)) for _, v in kv]
            r = c.put(m, tokens, k=ks, v=vs, mode=mode, quant=quant)
            logical += sum(a.nbytes for a in ks + vs)
            stored += r.stored_bytes
            g = c.get(m, tokens, dtype="fp32")
            for l, (k64, v64) in enumerate(kv):
                err_k, err_v = max(err_k, rel(g.k[l], k64)), max(err_v, rel(g.v[l], v64))
            kept += sum(lm == mode and lq == quant for p, q in zip(g.layer_modes, g.layer_quants)
                        for lm, lq in zip(p, q))
            total += sum(len(p) for p in g.layer_modes)
        ok &= err_k < 0.02 and err_v < 0.02
        name = f"llama / {mode}" + (f"+{quant}" if quant != "none" else "")
        print(f"{name:<24}{logical / 2**20:>12.2f}{stored / 2**20:>12.2f}"
              f"{stored / logical:>8.2f}{err_k:>15.2e}{err_v:>15.2e}  {kept}/{total}")
    # MLA: the engine caches the latent; full stores K and V, latent the engine's own latent.
    for mode in ("full", "latent"):
        logical = stored = 0
        err_k = err_v = 0.0
        for i in range(args.prompts):
            tokens = [int(t) for t in rng.integers(0, 32000, 4 * pt)]
            lat = [rng.normal(0, 1, (4 * pt, deepseek.latent_dim)).astype(np.float32)
                   for _ in range(deepseek.layers)]
            kv = [deepseek.kv(l, lat[l]) for l in range(deepseek.layers)]
            if mode == "latent":
                r = c.put(ml, tokens, latent=[slimkv.float32_to_bf16(a) for a in lat], mode=mode)
            else:
                r = c.put(ml, tokens, k=[slimkv.float32_to_bf16(k.astype(np.float32)) for k, _ in kv],
                          v=[slimkv.float32_to_bf16(v.astype(np.float32)) for _, v in kv], mode=mode)
            logical += sum(2 * (k.size + v.size) for k, v in kv)  # K and V in bf16
            stored += r.stored_bytes
            g = c.get(ml, tokens, dtype="fp32")
            for l, (k64, v64) in enumerate(kv):
                err_k, err_v = max(err_k, rel(g.k[l], k64)), max(err_v, rel(g.v[l], v64))
        ok &= err_k < 0.02 and err_v < 0.02
        print(f"{'deepseek / ' + mode:<24}{logical / 2**20:>12.2f}{stored / 2**20:>12.2f}"
              f"{stored / logical:>8.2f}{err_k:>15.2e}{err_v:>15.2e}")
    print("logical: K and V as the engine holds them (bf16); stored: what the daemon keeps "
          "(payload + 256 B per page). Errors: relative Frobenius vs the engine's float64 K, V.")
    if not ok:
        raise SystemExit("demo: a mode returned K or V off by more than 2%")


if __name__ == "__main__":
    main()
