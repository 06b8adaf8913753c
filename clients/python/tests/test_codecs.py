"""Engine-side reconstruction (slimkv.codecs, torch on the CPU) from raw pages equals the daemon's
own decode (a reconstructed Get) within slimkv.codecs.TOLERANCE, and the float64 truth from the
weights within input rounding plus the error the daemon measured at put."""
import numpy as np
import pytest

import slimkv
from helpers import as_float, cast, llama_truth, prompt, rel

torch = pytest.importorskip("torch")
from slimkv import codecs  # noqa: E402

INPUT = {"fp32": 1e-6, "bf16": 4e-3}


def engine_side(client, model, tokens, device="cpu"):
    raw = client.get(model, tokens, raw=True)
    factors = {}
    ks = [[] for _ in range(model.num_layers)]
    vs = [[] for _ in range(model.num_layers)]
    for p, page in enumerate(raw.stored):
        for l, s in enumerate(page):
            if s.mode != "full" and (l, s.mode) not in factors:
                factors[(l, s.mode)] = client.layer_factors(model, l, s.mode)
        k, v = codecs.decode_page(model, page, factors, p, device)
        for l in range(model.num_layers):
            ks[l].append(k[l])
            vs[l].append(v[l])
    return raw, [torch.cat(x).numpy() for x in ks], [torch.cat(x).numpy() for x in vs]


@pytest.mark.parametrize("quant", ["none", "fp8", "int8", "int4"])
@pytest.mark.parametrize("dtype", ["fp32", "bf16"])
@pytest.mark.parametrize("mode", ["full", "slim", "xcache", "latent"])
def test_engine_side_equals_daemon(client, llama, llama_spec, mode, dtype, quant):
    seed = 20000 + 100 * ["full", "slim", "xcache", "latent"].index(mode) + 10 * len(quant) + len(dtype)
    tokens, k64, v64 = llama_truth(llama_spec, seed, pages=2)
    r = client.put(llama, tokens, k=[cast(k, dtype) for k in k64], v=[cast(v, dtype) for v in v64],
                   mode=mode, quant=quant)
    assert r.pages_stored == 2
    daemon = client.get(llama, tokens, dtype="fp32")
    raw, ks, vs = engine_side(client, llama, tokens)
    assert [[s.mode for s in p] for p in raw.stored] == daemon.layer_modes
    assert [[s.quant for s in p] for p in raw.stored] == daemon.layer_quants
    tol = max(codecs.TOLERANCE[mode], 1e-6)
    for l in range(llama.num_layers):
        assert rel(ks[l], daemon.k[l]) <= tol, (l, rel(ks[l], daemon.k[l]))
        assert rel(vs[l], daemon.v[l]) <= tol, (l, rel(vs[l], daemon.v[l]))
        bound = INPUT[dtype] + r.max_measured_error * 1.05 + 1e-6
        assert rel(ks[l], k64[l]) <= bound and rel(vs[l], v64[l]) <= bound
    client.delete(llama, tokens)


@pytest.mark.parametrize("quant", ["none", "fp8", "int8", "int4"])
def test_native_latent(client, deepseek, deepseek_spec, quant):
    tokens, rng = prompt(21000 + len(quant), 2)
    latent = [rng.normal(0, 1, (32, deepseek_spec.latent_dim)).astype(np.float32) for _ in range(2)]
    r = client.put(deepseek, tokens, latent=latent, mode="latent", quant=quant)
    assert r.pages_stored == 2
    daemon = client.get(deepseek, tokens, dtype="fp32")
    raw, ks, vs = engine_side(client, deepseek, tokens)
    for l in range(2):
        assert rel(ks[l], daemon.k[l]) <= 1e-5 and rel(vs[l], daemon.v[l]) <= 1e-5
        k, v = deepseek_spec.kv(l, latent[l])
        bound = 1e-6 + r.max_measured_error * 1.05
        assert rel(ks[l], k) <= bound and rel(vs[l], v) <= bound
    client.delete(deepseek, tokens)


def test_factors_errors(client, llama, deepseek):
    with pytest.raises(slimkv.InvalidArgument, match="layer"):
        client.layer_factors(llama, 7, "slim")
    with pytest.raises(slimkv.InvalidArgument, match="mode"):
        client.layer_factors(llama, 0, "full")
    with pytest.raises(slimkv.FailedPrecondition, match="mode"):
        client.layer_factors(deepseek, 0, "slim")
    with pytest.raises(slimkv.NotFound, match="model_id"):
        client.layer_factors("ab" * 32, 0, "slim")
    f = client.layer_factors(llama, 1, "slim")
    assert f["w_kv"].shape == (64, 64) and f.info.rope.rotary_dim == 16
