"""A SlimKV prefix cache for Hugging Face transformers' `generate` (docs/engines.md).

    pc = PrefixCache(client, model_handle, hf_model)      # model_handle: client.register(...)
    out = pc.generate(input_ids, max_new_tokens=32, do_sample=False)

generate(): looks up the longest stored prefix of the prompt (whole pages; always at least one
prompt token left to compute, since generate needs its logits), fills a DynamicCache with it
from slimkvd, lets the model compute only the rest, then puts the whole pages the model
computed (prompt and generated tokens) that were not stored yet. SlimKV failures never stop
generation: a failed lookup or get is a miss, a failed put is only counted (`errors`).

Batch size 1; models whose cache transformers keeps as a DynamicCache of full-attention layers
(llama, mistral without sliding window, qwen2, phi3; not gemma2's sliding layers)."""
from __future__ import annotations

import inspect
import logging

import numpy as np
import torch

from ..errors import Error

log = logging.getLogger(__name__)


def _dynamic_cache(model):
    from transformers import DynamicCache
    try:
        return DynamicCache(config=model.config)
    except TypeError:  # transformers < 4.56
        return DynamicCache()


def _cache_kwarg(model) -> str:
    """The name generate and forward take the cache by: `cache` from transformers 5.2x (where
    `past_key_values` is deprecated), `past_key_values` before (5.19 has only that)."""
    params = inspect.signature(model.forward).parameters
    return "cache" if "cache" in params else "past_key_values"


def cache_layers(cache):
    """[(K, V)] per layer, [batch, h_kv, T, d] each, of a transformers cache."""
    if hasattr(cache, "layers"):
        return [(l.keys, l.values) for l in cache.layers]
    return list(zip(cache.key_cache, cache.value_cache))


class PrefixCache:
    def __init__(self, client, model, hf_model, *, mode=None, quant=None):
        self.client, self.model, self.hf = client, model, hf_model
        self.mode, self.quant = mode, quant
        self.page = model.page_tokens
        self.errors = 0
        self.last_hit = 0

    def _dtype(self):
        return {torch.float32: "fp32", torch.float16: "fp16", torch.bfloat16: "bf16"}[self.hf.dtype]

    def load(self, tokens: list[int]):
        """(cache, tokens it holds): the longest stored prefix leaving ≥ 1 token to compute."""
        limit = (len(tokens) - 1) // self.page * self.page
        cache = _dynamic_cache(self.hf)
        try:
            hit = min(self.client.lookup(self.model, tokens).hit_tokens, limit)
            if hit == 0:
                return cache, 0
            r = self.client.get(self.model, tokens[:hit], dtype=self._dtype())
        except Error as e:
            self.errors += 1
            log.warning("slimkv: load failed, computing the whole prompt: %s", e)
            return cache, 0
        got = min(r.tokens, hit)
        if got == 0:
            return cache, 0
        for l in range(self.model.num_layers):
            cache.update(self._tensor(r.k[l][:got]), self._tensor(r.v[l][:got]), l)
        return cache, got

    def _tensor(self, a: np.ndarray) -> torch.Tensor:
        """[T, h_kv, d] numpy (bf16 as uint16 bits) -> [1, h_kv, T, d] on the model's device."""
        t = torch.from_numpy(np.ascontiguousarray(a))
        if a.dtype == np.uint16:
            t = t.view(torch.bfloat16)
        return t.transpose(0, 1)[None].to(self.hf.device, self.hf.dtype)

    def save(self, tokens: list[int], cache, first_token: int) -> int:
        """Puts the whole pages of `tokens` the cache holds from `first_token` (a page boundary)
        on; returns the pages put (0 on failure)."""
        layers = cache_layers(cache)
        held = min(layers[0][0].shape[2], len(tokens))
        end = held // self.page * self.page
        if end <= first_token:
            return 0
        k = [kk[0, :, first_token:end].transpose(0, 1) for kk, _ in layers]
        v = [vv[0, :, first_token:end].transpose(0, 1) for _, vv in layers]
        try:
            self.client.put(self.model, tokens[:end], k=k, v=v, first_page=first_token // self.page,
                            mode=self.mode, quant=self.quant)
        except Error as e:
            self.errors += 1
            log.warning("slimkv: put failed (generation unaffected): %s", e)
            return 0
        return (end - first_token) // self.page

    def generate(self, input_ids: torch.Tensor, **kw) -> torch.Tensor:
        if input_ids.shape[0] != 1:
            raise ValueError("PrefixCache.generate: batch size 1")
        tokens = [int(t) for t in input_ids[0]]
        cache, hit = self.load(tokens)
        self.last_hit = hit
        # With a filled cache, generate computes only the uncached tokens when the attention
        # mask spans the whole input (transformers 5.25 _prefill: without a mask it feeds the
        # whole prompt again, after the cached tokens). Batch 1, no padding: all ones.
        kw.setdefault("attention_mask", torch.ones_like(input_ids))
        kw[_cache_kwarg(self.hf)] = cache
        out = self.hf.generate(input_ids, use_cache=True, **kw)
        self.save([int(t) for t in out[0]], cache, hit)
        return out
