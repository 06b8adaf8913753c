"""get(into=...) fills caller tensors and paged caches at the right block ids and nowhere else;
Paged.read gathers what put() sends."""
import numpy as np
import pytest

import slimkv
from slimkv.layouts import Paged
from helpers import llama_truth, prompt, rel

torch = pytest.importorskip("torch")

SENTINEL = -7.0


def paged(layout, num_blocks, block_size, h, d, layers, dtype):
    shape = {"flash": (2, num_blocks, block_size, h, d),
             "flashinfer_nhd": (num_blocks, 2, block_size, h, d),
             "flashinfer_hnd": (num_blocks, 2, h, block_size, d)}[layout]
    return [torch.full(shape, SENTINEL, dtype=dtype) for _ in range(layers)]


def rows(cache, layout, block, kv):
    """[block_size, h, d] rows of K (kv=0) or V of one block."""
    if layout == "flash":
        return cache[kv, block]
    if layout == "flashinfer_nhd":
        return cache[block, kv]
    return cache[block, kv].transpose(0, 1)


@pytest.mark.parametrize("block_size", [8, 16, 32])
@pytest.mark.parametrize("layout", ["flash", "flashinfer_nhd", "flashinfer_hnd"])
def test_into_paged(client, llama, llama_spec, layout, block_size):
    seed = 5000 + block_size + 7 * ["flash", "flashinfer_nhd", "flashinfer_hnd"].index(layout)
    tokens, k64, v64 = llama_truth(llama_spec, seed, pages=4)
    ks = [torch.tensor(k, dtype=torch.float32) for k in k64]
    vs = [torch.tensor(v, dtype=torch.float32) for v in v64]
    assert client.put(llama, tokens, k=ks, v=vs, mode="full").pages_stored == 4
    n_tok = 64
    blocks_needed = n_tok // block_size
    num_blocks = blocks_needed * 2 + 3
    rng = np.random.default_rng(seed)
    block_ids = [int(b) for b in rng.permutation(num_blocks)[:blocks_needed]]
    caches = paged(layout, num_blocks, block_size, 4, 16, llama.num_layers, torch.bfloat16)
    # Pages 1..3 only: tokens [16, 64).
    r = client.get(llama, tokens, first_page=1, into=Paged(caches, layout, block_ids))
    assert r.pages == 3
    for l in range(llama.num_layers):
        for kv, truth in ((0, ks[l]), (1, vs[l])):
            for b in range(num_blocks):
                got = rows(caches[l], layout, b, kv).float()
                if b in block_ids:
                    i = block_ids.index(b)
                    for t in range(block_size):
                        tok = i * block_size + t
                        if tok < 16:
                            assert torch.all(got[t] == SENTINEL), (b, t)
                        else:
                            torch.testing.assert_close(got[t], truth[tok].bfloat16().float())
                else:
                    assert torch.all(got == SENTINEL), ("untouched block written", b)
    # Read back through the same layout and put again: the pages are already there.
    back = Paged(caches, layout, block_ids).bind(llama).read(1, 3)
    assert rel(back["k"][0].float().numpy(), ks[0][16:].numpy()) < 4e-3
    assert client.put(llama, tokens, first_page=1, **back).pages_present == 3
    client.delete(llama, tokens)


def test_into_tensors_direct(client, llama, llama_spec):
    tokens, k64, v64 = llama_truth(llama_spec, 6001, pages=2)
    ks = [np.asarray(k, np.float32) for k in k64]
    vs = [np.asarray(v, np.float32) for v in v64]
    client.put(llama, tokens, k=ks, v=vs, mode="slim")
    out_k = [torch.zeros(40, 4, 16) for _ in range(2)]
    out_v = [torch.zeros(40, 4, 16) for _ in range(2)]
    r = client.get(llama, tokens, into=(out_k, out_v))
    assert r.pages == 2 and r.k is None
    for l in range(2):
        assert rel(out_k[l][:32].numpy(), ks[l]) < 1e-4
        assert torch.all(out_k[l][32:] == 0) and torch.all(out_v[l][32:] == 0)
    client.delete(llama, tokens)


def test_into_mla(client, deepseek, deepseek_spec):
    tokens, rng = prompt(6100, 2)
    latent = [rng.normal(0, 1, (32, deepseek_spec.latent_dim)).astype(np.float32) for _ in range(2)]
    assert client.put(deepseek, tokens, latent=latent, mode="latent", quant="none").pages_stored == 2
    caches = [torch.full((6, 8, deepseek_spec.latent_dim), SENTINEL) for _ in range(2)]
    block_ids = [4, 1, 5, 0]
    client.get(deepseek, tokens, into=Paged(caches, "mla", block_ids))
    for l in range(2):
        for i, b in enumerate(block_ids):
            torch.testing.assert_close(caches[l][b], torch.tensor(latent[l][i * 8:(i + 1) * 8]))
        for b in (2, 3):
            assert torch.all(caches[l][b] == SENTINEL)
    # What the daemon reconstructs from the latent is the float64 truth from the weights.
    got = client.get(deepseek, tokens, dtype="fp32")
    k, v = deepseek_spec.kv(0, latent[0])
    assert rel(got.k[0], k) < 1e-5 and rel(got.v[0], v) < 1e-5
    client.delete(deepseek, tokens)
