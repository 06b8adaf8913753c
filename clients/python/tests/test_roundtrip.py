"""Put and Get in every mode x fp32/bf16 x quantizer, against the float64 truth from the weights."""
import numpy as np
import pytest

import slimkv
from helpers import as_float, cast, llama_truth, rel

MODES = ["full", "slim", "xcache", "latent"]
QUANTS = ["none", "fp8", "int8", "int4"]
# Input rounding of what the engine sends (relative Frobenius, generous over 2^-24 / 2^-9).
INPUT = {"fp32": 1e-6, "bf16": 4e-3}


@pytest.mark.parametrize("quant", QUANTS)
@pytest.mark.parametrize("dtype", ["fp32", "bf16"])
@pytest.mark.parametrize("mode", MODES)
def test_put_get(client, llama, llama_spec, mode, dtype, quant):
    seed = 1000 + 100 * MODES.index(mode) + 10 * QUANTS.index(quant) + (dtype == "bf16")
    tokens, k64, v64 = llama_truth(llama_spec, seed, pages=2)
    ks, vs = [cast(k, dtype) for k in k64], [cast(v, dtype) for v in v64]
    r = client.put(llama, tokens, k=ks, v=vs, mode=mode, quant=quant)
    assert (r.pages_stored, r.pages_present) == (2, 0)
    assert r.stored_bytes > 0
    assert client.lookup(llama, tokens).hit_tokens == 32

    got = client.get(llama, tokens, dtype="fp32")
    assert got.pages == 2 and got.dtype == "fp32"
    assert got.page_modes == [mode, mode] and got.page_quants == [quant, quant]
    kept = [[m == mode and q == quant for m, q in zip(ms, qs)]
            for ms, qs in zip(got.layer_modes, got.layer_quants)]
    lossless = mode == "full" and quant == "none"
    for l in range(llama.num_layers):
        ek, ev = rel(got.k[l], as_float(ks[l])), rel(got.v[l], as_float(vs[l]))
        if lossless or not all(p[l] for p in kept):  # stored as sent (full, or fell back to full)
            if all(not p[l] or lossless for p in kept):
                np.testing.assert_array_equal(got.k[l], as_float(ks[l]).astype(np.float32))
                np.testing.assert_array_equal(got.v[l], as_float(vs[l]).astype(np.float32))
        else:
            # What the daemon measured on the put bounds what comes back (every page measured).
            bound = max(r.max_measured_error, 1e-6) * 1.05 + 1e-6
            assert max(ek, ev) <= bound, (l, ek, ev, r.max_measured_error)
        # And against the float64 truth: input rounding plus the representation's error.
        assert rel(got.k[l], k64[l]) <= INPUT[dtype] + max(r.max_measured_error * 1.05, 0) + 1e-6
        assert rel(got.v[l], v64[l]) <= INPUT[dtype] + max(r.max_measured_error * 1.05, 0) + 1e-6
    if mode != "full" or quant != "none":
        assert any(any(p) for p in kept), "every layer fell back to full"
        assert r.stored_bytes < 2 * 256 + sum(a.nbytes for a in ks + vs)

    # Get in the put dtype returns the same values, bf16 as uint16 bits.
    same = client.get(llama, tokens)
    assert same.dtype == dtype
    assert rel(as_float(same.k[0]), got.k[0]) <= INPUT[dtype]

    assert client.delete(llama, tokens) == 2
    assert client.lookup(llama, tokens).hit_tokens == 0
