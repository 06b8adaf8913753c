"""Attend from Python against attention computed in numpy on the same K and V."""
import numpy as np
import pytest

from helpers import llama_truth


def attention(q, k, v, scale):
    """q [h_q, d], k/v [T, h_kv, d] -> o [h_q, d_v], lse [h_q] (float64)."""
    g = q.shape[0] // k.shape[1]
    o, lse = [], []
    for i in range(q.shape[0]):
        logits = scale * (k[:, i // g] @ q[i])
        m = logits.max()
        w = np.exp(logits - m)
        lse.append(m + np.log(w.sum()))
        o.append(w @ v[:, i // g] / w.sum())
    return np.array(o), np.array(lse)


@pytest.mark.parametrize("mode", ["full", "slim"])
def test_attend_matches_numpy(client, llama, llama_spec, mode):
    seqs = []
    for s in range(3):
        tokens, k64, v64 = llama_truth(llama_spec, 7000 + s + 10 * (mode == "slim"), pages=2)
        client.put(llama, tokens, k=[k.astype(np.float32) for k in k64],
                   v=[v.astype(np.float32) for v in v64], mode=mode)
        # One more partial page of tokens: not covered.
        seqs.append((tokens + [1, 2, 3], k64, v64))
    rng = np.random.default_rng(1)
    layer = 1
    qs = [rng.normal(0, 1, (llama.num_q_heads, llama.head_dim)).astype(np.float32) for _ in seqs]
    res = client.attend(llama, layer, [(t, q) for (t, _, _), q in zip(seqs, qs)])
    assert len(res) == 3
    for (tokens, k64, v64), q, r in zip(seqs, qs, res):
        assert r.covered_tokens == 32
        o, lse = attention(q.astype(np.float64), k64[layer], v64[layer], llama.softmax_scale)
        np.testing.assert_allclose(r.o, o, rtol=0, atol=2e-4)
        np.testing.assert_allclose(r.lse, lse, rtol=0, atol=2e-4)
    # Nothing stored: o = 0, lse = -inf.
    r = client.attend(llama, 0, [([9, 9, 9] * 16, qs[0])])[0]
    assert r.covered_tokens == 0 and np.all(r.o == 0) and np.all(np.isneginf(r.lse))
    for tokens, _, _ in seqs:
        client.delete(llama, tokens)
