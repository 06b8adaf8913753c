"""slimkv.aio.Client: the same calls from asyncio, concurrently."""
import asyncio

import numpy as np

import slimkv.aio
from helpers import llama_truth, rel


def test_aio_round_trip(daemon, llama, llama_spec):
    async def main():
        async with slimkv.aio.Client(daemon.target, deadline=30) as c:
            m = llama
            prompts = [llama_truth(llama_spec, 8000 + i, pages=2) for i in range(4)]
            puts = await asyncio.gather(*(c.put(m, t, k=[a.astype(np.float32) for a in k],
                                                v=[a.astype(np.float32) for a in v], mode="slim")
                                          for t, k, v in prompts))
            assert all(p.pages_stored == 2 for p in puts)
            gets = await asyncio.gather(*(c.get(m, t, dtype="fp32") for t, _, _ in prompts))
            for (t, k, v), g in zip(prompts, gets):
                assert g.pages == 2 and rel(g.v[1], v[1]) < 1e-4
            assert (await c.lookup(m, prompts[0][0])).hit_tokens == 32
            assert (await c.explain(m, prompts[0][0])).reason == 1
            assert (await c.stats()).tenants[0].pages >= 8
            res = await c.attend(m, 0, [(prompts[0][0], np.ones((4, 16), np.float32))])
            assert res[0].covered_tokens == 32
            f = await c.layer_factors(m, 0, "slim")
            assert f["w_kv"].shape == (64, 64)
            assert [t.tenant for t in (await c.list_tenants()).tenants] == ["default"]
            for t, _, _ in prompts:
                assert await c.delete(m, t) == 2
            try:
                await c.lookup("ab" * 32, [1] * 16)
                raise AssertionError("no error")
            except slimkv.NotFound as e:
                assert "model" in e.message
    asyncio.run(main())
