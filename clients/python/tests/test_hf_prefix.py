"""slimkv.integrations.hf: greedy generate with the SlimKV prefix cache is token-identical to
plain generate (fp32), and the second prompt's shared prefix comes from slimkvd (its hit
counter rises, the model computes only the rest)."""
import torch

from hf_models import build
from slimkv.integrations.hf import PrefixCache


def hit_tokens(client):
    return client.stats().tenants[0].hit_tokens


def test_prefix_cache_generate_is_token_identical(client, tmp_path):
    model, path = build("llama", tmp_path / "m", "llama3")
    m = client.register(str(path), page_tokens=16, wait_for_factors=120)
    pc = PrefixCache(client, m, model, mode="slim")
    g = torch.Generator().manual_seed(7)
    shared = torch.randint(0, 256, (1, 40), generator=g)
    a = torch.cat([shared, torch.randint(0, 256, (1, 5), generator=g)], 1)
    b = torch.cat([shared, torch.randint(0, 256, (1, 9), generator=g)], 1)
    kw = dict(max_new_tokens=12, do_sample=False, pad_token_id=0)

    def plain(ids):  # with its mask, as a tokenizer gives it (else generate masks token 0 as pad)
        return model.generate(ids, attention_mask=torch.ones_like(ids), **kw)

    out_a = pc.generate(a, **kw)
    assert pc.last_hit == 0
    assert torch.equal(out_a, plain(a))

    before = hit_tokens(client)
    out_b = pc.generate(b, **kw)
    assert pc.last_hit == 32, pc.last_hit  # two whole pages of the shared 40 tokens
    assert hit_tokens(client) >= before + 32
    assert torch.equal(out_b, plain(b))

    # the same prompt again: its pages, and those of its generated tokens, were put
    out_b2 = pc.generate(b, **kw)
    assert pc.last_hit == 48, pc.last_hit  # (49 prompt tokens - 1) // 16 pages
    assert torch.equal(out_b2, out_b)
    assert pc.errors == 0


def test_prefix_cache_survives_slimkvd_down(tmp_path):
    """slimkvd stopped: lookup and put fail, generate goes on and gives plain generate's tokens."""
    import slimkv
    from slimkvd import Daemon
    model, path = build("llama", tmp_path / "m")
    d = Daemon()
    try:
        c = slimkv.Client(d.target, deadline=5)
        m = c.register(str(path), page_tokens=16, wait_for_factors=120)
    finally:
        d.stop()
    pc = PrefixCache(c, m, model)
    ids = torch.randint(0, 256, (1, 40), generator=torch.Generator().manual_seed(3))
    kw = dict(max_new_tokens=6, do_sample=False, pad_token_id=0)
    out = pc.generate(ids, **kw)
    assert torch.equal(out, model.generate(ids, attention_mask=torch.ones_like(ids), **kw))
    assert pc.last_hit == 0 and pc.errors == 2  # the lookup and the put
    c.close()
