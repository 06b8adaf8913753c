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
    # Per page and layer, what it is stored as: the asked mode and quantizer, or a fallback
    # (full, or the mode without its quantizer) that the header's layer_modes/layer_quants show.
    stored = [list(zip(ms, qs)) for ms, qs in zip(got.layer_modes, got.layer_quants)]
    assert all(s in {(mode, quant), ("full", "none"), (mode, "none")} for p in stored for s in p)
    bound = max(r.max_measured_error, 0) * 1.05 + 1e-6
    pt = llama.page_tokens
    for p in range(2):
        rows = slice(p * pt, (p + 1) * pt)
        for l in range(llama.num_layers):
            sent_k, sent_v = as_float(ks[l][rows]), as_float(vs[l][rows])
            if stored[p][l] == ("full", "none"):  # as sent, bit for bit
                np.testing.assert_array_equal(got.k[l][rows], sent_k.astype(np.float32))
                np.testing.assert_array_equal(got.v[l][rows], sent_v.astype(np.float32))
            else:  # what the daemon measured on the put (every page measured) bounds it
                ek, ev = rel(got.k[l][rows], sent_k), rel(got.v[l][rows], sent_v)
                assert max(ek, ev) <= bound, (p, l, stored[p][l], ek, ev, r.max_measured_error)
            # and against the float64 truth: input rounding plus the representation's error
            assert rel(got.k[l][rows], k64[l][rows]) <= INPUT[dtype] + bound
            assert rel(got.v[l][rows], v64[l][rows]) <= INPUT[dtype] + bound
    fell = sum(s != (mode, quant) for p in stored for s in p)
    assert r.layers_fallen_back == fell
    if (mode, quant) != ("full", "none"):
        assert fell < 2 * llama.num_layers, "every layer fell back to full"
        assert r.stored_bytes < 2 * 256 + sum(a.nbytes for a in ks + vs)

    # Get in the put dtype returns the same values, bf16 as uint16 bits.
    same = client.get(llama, tokens)
    assert same.dtype == dtype
    assert rel(as_float(same.k[0]), got.k[0]) <= INPUT[dtype]

    assert client.delete(llama, tokens) == 2
    assert client.lookup(llama, tokens).hit_tokens == 0
