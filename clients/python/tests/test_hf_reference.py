"""transformers as the reference for SlimKV's architecture readers: for each architecture slimkvd
reads, a scaled-down model built by transformers' own classes (hf_models.py) is saved as
safetensors and registered; the K and V in transformers' cache after a forward pass are put in
every applicable mode, and what slimkvd gives back must equal them within the codec's
tolerance — near position 0 and beyond 100k, for every RoPE scaling the reader accepts. The
daemon's RoPE frequencies must be transformers' inv_freq buffer bit for bit."""
import itertools

import numpy as np
import pytest
import torch

import slimkv
from helpers import rel
from hf_models import ROPE, build, build_t5, layer_kv

PAGE = 16
T = 2 * PAGE
FAR = 100000  # a multiple of PAGE: the pages at positions 100000..100031
# fp32 K and V: full is a copy; slim and xcache are one fp32 solve/GEMM away (κ(W_K) = 1 here);
# native latent reconstructs K_nope, V from the cached latent row.
TOL = {"full": 0.0, "slim": 2e-6, "xcache": 2e-6, "latent": 2e-6}
_seeds = itertools.count(1000)


def tokens_for(offset: int):
    """Fresh token ids (the page keys differ per call); the first `offset` are a filler prefix."""
    rng = np.random.default_rng(next(_seeds))
    return [int(t) for t in rng.integers(0, 1 << 20, offset + T)]


def hf_forward(model, offset: int):
    ids = torch.randint(0, model.config.vocab_size, (1, T), generator=torch.Generator().manual_seed(offset))
    pos = torch.arange(offset, offset + T)[None]
    with torch.no_grad():
        return model(input_ids=ids, position_ids=pos, use_cache=True).past_key_values


def put_get(client, m, k, v, offset, mode, *, latent=None, quant="none"):
    """(GetResult, PutResponse) of fresh pages at `offset` stored in mode + quant."""
    tokens = tokens_for(offset)
    first = offset // PAGE
    kw = {"latent": latent} if latent is not None else {"k": k, "v": v}
    put = client.put(m, tokens, first_page=first, mode=mode, quant=quant, **kw)
    r = client.get(m, tokens, first_page=first, dtype="fp32")
    assert len(r.layer_modes) == T // PAGE, r.page_modes
    assert all(lm == [mode] * m.num_layers for lm in r.layer_modes), (mode, r.layer_modes)
    return r, put


def check_modes(client, m, cache, offset, modes):
    L = m.num_layers
    k, v = zip(*(layer_kv(cache, l) for l in range(L)))
    for mode in modes:
        r, _ = put_get(client, m, list(k), list(v), offset, mode)
        for l in range(L):
            ek, ev = rel(r.k[l], k[l].numpy()), rel(r.v[l], v[l].numpy())
            assert ek <= TOL[mode] and ev <= TOL[mode], (mode, offset, l, ek, ev)


def check_rope(client, m, model, mode):
    """The daemon's inv_freq and attention factor are transformers' (after its last forward)."""
    rot = model.model.rotary_emb
    info = client.layer_factors(m, 0, mode).info.rope
    ours = np.asarray(info.inv_freq, np.float64)
    theirs = rot.inv_freq.double().numpy()
    assert ours.shape == theirs.shape
    bad = np.nonzero(ours != theirs)[0]
    assert bad.size == 0, f"inv_freq differs at {bad}: {ours[bad]} vs {theirs[bad]}"
    assert info.attention_factor == pytest.approx(rot.attention_scaling, rel=1e-12)


def register(client, path):
    m = client.register(str(path), page_tokens=PAGE, wait_for_factors=120)
    assert m.factors == "ready", m.factors_detail
    return m


ARCHS = {  # arch -> modes that apply (mistral is GQA 4:1 as published: 2e <= d, full only)
    "llama": ("full", "slim", "xcache"),
    "mistral": ("full",),
    "qwen2": ("full", "slim", "xcache"),
    "phi3": ("full", "slim", "xcache"),
    "gemma2": ("full", "slim", "xcache"),
}
CASES = [(a, "default") for a in ARCHS] + [
    ("llama", "linear"), ("llama", "dynamic"), ("llama", "llama3"), ("qwen2", "yarn"),
    ("llama", "yarn_mscale"), ("mistral", "yarn_mscale"), ("llama", "yarn_all_dim_only"),
]  # phi3: transformers accepts only default and longrope, which slimkvd refuses


@pytest.mark.parametrize("arch,rope", CASES, ids=[f"{a}-{r}" for a, r in CASES])
def test_decoder_kv_equals_transformers(client, tmp_path, arch, rope):
    model, path = build(arch, tmp_path / "m", rope)
    m = register(client, path)
    modes = ("full",) if rope == "dynamic" else ARCHS[arch]
    for offset in (0, FAR):
        if rope == "dynamic" and offset >= model.config.max_position_embeddings:
            continue  # test_dynamic_ntk_refuses_all_but_full
        cache = hf_forward(model, offset)
        if rope != "dynamic" and len(modes) > 1:  # full has no factors to ask for
            check_rope(client, m, model, modes[-1])
        check_modes(client, m, cache, offset, modes)


def test_deepseek_v3_latent_equals_transformers(client, tmp_path):
    """MLA: transformers caches the latent (kv_a_layernorm(c_kv) as keys, the rotated shared
    k_rope as values), the row vLLM caches too; put as SlimKV's native latent it must give back
    the per-head K and V transformers expands it to. DeepSeek V3's YaRN included."""
    model, path = build("deepseek_v3", tmp_path / "m", "yarn_mscale")
    m = register(client, path)
    L = m.num_layers
    for offset in (0, FAR):
        cache = hf_forward(model, offset)
        latent, k, v = [], [], []
        for l in range(L):
            c_kv, k_rope = cache.layers[l].keys, cache.layers[l].values  # [1, 1, T, 16], [.., 8]
            latent.append(torch.cat([c_kv[0, 0], k_rope[0, 0]], dim=-1))
            with torch.no_grad():
                kk, vv = model.model.layers[l].self_attn.expand_kv(c_kv, k_rope)
            k.append(kk[0].transpose(0, 1).contiguous())
            v.append(vv[0].transpose(0, 1).contiguous())
        r, _ = put_get(client, m, None, None, offset, "latent", latent=latent)
        for l in range(L):
            ek, ev = rel(r.k[l], k[l].numpy()), rel(r.v[l], v[l].numpy())
            assert ek <= TOL["latent"] and ev <= TOL["latent"], (offset, l, ek, ev)
        r, _ = put_get(client, m, k, v, offset, "full")
        for l in range(L):
            assert rel(r.k[l], k[l].numpy()) == 0 and rel(r.v[l], v[l].numpy()) == 0
        # int4 on this latent exceeds the tenant's 0.25 tolerance: the daemon stores it full
        check_quants(client, m, offset, {"latent": latent}, k, v, ("latent",), ("fp8", "int8"))


# Quantizers (SPEC §2, docs/quantizers.md): lossy; each page's error is what the daemon measured
# on the put (verify_one_in 1 in conftest), and at most this (relative, transformers' K/V).
QUANT_CAP = {"fp8": 0.1, "int8": 0.05, "int4": 0.3}


def check_quants(client, m, offset, inputs, k, v, modes, quants=tuple(QUANT_CAP)):
    for mode in modes:
        for quant in quants:
            cap = QUANT_CAP[quant]
            r, put = put_get(client, m, inputs.get("k"), inputs.get("v"), offset, mode,
                             latent=inputs.get("latent"), quant=quant)
            bound = min(max(put.max_measured_error, 0) * 1.05 + 1e-6, cap)
            for l in range(m.num_layers):
                ek, ev = rel(r.k[l], k[l].numpy()), rel(r.v[l], v[l].numpy())
                assert max(ek, ev) <= bound, (mode, quant, offset, l, ek, ev, put.max_measured_error)


@pytest.mark.parametrize("arch,rope", [("llama", "llama3"), ("qwen2", "yarn")])
def test_quantized_modes_equal_transformers_within_measured_error(client, tmp_path, arch, rope):
    model, path = build(arch, tmp_path / "m", rope)
    m = register(client, path)
    cache = hf_forward(model, FAR)
    k, v = zip(*(layer_kv(cache, l) for l in range(m.num_layers)))
    check_quants(client, m, FAR, {"k": list(k), "v": list(v)}, k, v, ARCHS[arch])


def test_t5_cross_attention_kv_equals_transformers(client, tmp_path):
    """t5: the cached K, V are the decoder cross-attention's over the encoder output."""
    model, path = build_t5(tmp_path / "m")
    m = register(client, path)
    ids = torch.randint(1, 256, (1, T), generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        out = model(input_ids=ids, decoder_input_ids=torch.zeros((1, 1), dtype=torch.long),
                    use_cache=True)
    cross = out.past_key_values.cross_attention_cache
    check_modes(client, m, cross, 0, ("full", "slim", "xcache"))


def test_dynamic_ntk_refuses_all_but_full(client, tmp_path):
    """Dynamic NTK rotates with a base that grows with the sequence length of the forward pass
    that computed the keys (past max_position_embeddings), which a stored page does not record:
    slimkvd keeps such keys as they are (full) and refuses the modes that would un-rotate them."""
    model, path = build("llama", tmp_path / "m", "dynamic")
    m = register(client, path)
    cache = hf_forward(model, FAR)
    check_modes(client, m, cache, FAR, ("full",))
    k, v = zip(*(layer_kv(cache, l) for l in range(m.num_layers)))
    for mode in ("slim", "xcache"):
        with pytest.raises(slimkv.FailedPrecondition, match="dynamic"):
            put_get(client, m, list(k), list(v), FAR, mode)
    # a tenant whose policy is slim: the pages are stored, every layer full
    from slimkvd import Daemon
    d = Daemon("default_policy { mode: MODE_SLIM quant: QUANT_NONE error_tolerance: 0.25 }")
    try:
        with slimkv.Client(d.target, deadline=60) as c:
            m2 = register(c, path)
            tokens = tokens_for(0)
            c.put(m2, tokens, k=list(k), v=list(v))
            r = c.get(m2, tokens, dtype="fp32")
            assert r.layer_modes == [["full"] * m2.num_layers] * (T // PAGE), r.layer_modes
            assert all(rel(r.k[l], k[l].numpy()) == 0 for l in range(m2.num_layers))
    finally:
        d.stop()


def test_partial_rotary_refused_where_transformers_ignores_it(client, tmp_path):
    """transformers' Llama rotates the whole head (its rotary embedding then no longer fits the
    head): a llama config carrying partial_rotary_factor is refused, naming the field."""
    from slimkv.testing import Llama
    spec = Llama()
    cfg = spec.config()
    cfg["partial_rotary_factor"] = 0.5
    with pytest.raises(slimkv.InvalidArgument, match="partial_rotary_factor"):
        client.register(config_json=cfg, page_tokens=PAGE)
