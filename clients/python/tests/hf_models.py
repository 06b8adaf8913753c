"""Scaled-down models built by transformers' own classes from published-style configs (few
layers, small hidden size, random weights), saved as safetensors: the reference for SlimKV's
architecture readers (test_hf_reference.py) and for slimkv.integrations.hf. Nothing is
downloaded (HF_HUB_OFFLINE=1; models are made from config objects)."""
from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pathlib  # noqa: E402

import torch  # noqa: E402
import transformers as tf  # noqa: E402

from slimkv.integrations.hf import cache_layers  # noqa: E402

VOCAB = 256

# Published RoPE settings, scaled to the small models (original lengths kept).
ROPE = {
    "default": {"rope_type": "default", "rope_theta": 10000.0},
    "linear": {"rope_type": "linear", "rope_theta": 10000.0, "factor": 2.0},
    "dynamic": {"rope_type": "dynamic", "rope_theta": 10000.0, "factor": 2.0},
    # Llama 3.1
    "llama3": {"rope_type": "llama3", "rope_theta": 500000.0, "factor": 8.0, "low_freq_factor": 1.0,
               "high_freq_factor": 4.0, "original_max_position_embeddings": 8192},
    # Qwen2.5 long-context recipe; attention_factor given explicitly
    "yarn": {"rope_type": "yarn", "rope_theta": 1000000.0, "factor": 4.0,
             "original_max_position_embeddings": 32768, "attention_factor": 1.2},
    # DeepSeek V3
    "yarn_mscale": {"rope_type": "yarn", "rope_theta": 10000.0, "factor": 40.0, "beta_fast": 32,
                    "beta_slow": 1, "mscale": 1.0, "mscale_all_dim": 1.0,
                    "original_max_position_embeddings": 4096},
    # mscale_all_dim alone: transformers then uses 0.1·ln(factor) + 1
    "yarn_all_dim_only": {"rope_type": "yarn", "rope_theta": 10000.0, "factor": 40.0,
                          "mscale_all_dim": 0.707, "original_max_position_embeddings": 4096},
}

_COMMON = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, vocab_size=VOCAB,
               tie_word_embeddings=False)


# max_position_embeddings of the published configs with these scalings (the trained length)
MAX_POSITIONS = {"llama3": 131072, "yarn": 131072, "yarn_mscale": 163840,
                 "yarn_all_dim_only": 163840}


def config(arch: str, rope: str = "default", **kw):
    rp = dict(ROPE[rope])
    kw.setdefault("max_position_embeddings", MAX_POSITIONS.get(rope, 4096))
    if arch == "llama":
        return tf.LlamaConfig(**_COMMON, num_attention_heads=4, num_key_value_heads=4, head_dim=16,
                              rope_parameters=rp, **kw)
    if arch == "mistral":  # GQA as published (32/8): e < d, so slim does not apply
        return tf.MistralConfig(**_COMMON, num_attention_heads=8, num_key_value_heads=2, head_dim=16,
                                sliding_window=None, rope_parameters=rp, **kw)
    if arch == "qwen2":  # q/k/v biases
        return tf.Qwen2Config(**_COMMON, num_attention_heads=4, num_key_value_heads=4,
                              rope_parameters=rp, **kw)
    if arch == "phi3":  # fused qkv_proj; Phi-4-mini's partial rotary
        rp.setdefault("partial_rotary_factor", 0.75)
        return tf.Phi3Config(**_COMMON, num_attention_heads=4, num_key_value_heads=4,
                             rope_parameters=rp, pad_token_id=0, eos_token_id=1, **kw)
    if arch == "gemma2":
        return tf.Gemma2Config(**_COMMON, num_attention_heads=4, num_key_value_heads=4, head_dim=16,
                               query_pre_attn_scalar=16, sliding_window=4096,
                               attn_logit_softcapping=50.0, final_logit_softcapping=30.0,
                               rope_parameters=rp, **kw)
    if arch == "deepseek_v3":
        return tf.DeepseekV3Config(**_COMMON, moe_intermediate_size=32, num_attention_heads=4,
                                   num_key_value_heads=4, kv_lora_rank=16, q_lora_rank=32,
                                   qk_rope_head_dim=8, qk_nope_head_dim=16, v_head_dim=16,
                                   n_routed_experts=4, num_experts_per_tok=2, n_group=1,
                                   topk_group=1, first_k_dense_replace=2, rope_interleave=True,
                                   rope_parameters=rp, **kw)
    raise ValueError(arch)


def orthogonalize_(w: torch.Tensor, gain: float = 0.1) -> None:
    """Replace w [e, d] by gain · a random matrix with orthonormal rows or columns (κ = 1), so
    that fp32 reconstruction errors stay at fp32 rounding and any RoPE or reading mismatch
    stands out."""
    q, _ = torch.linalg.qr(torch.randn(max(w.shape), min(w.shape), dtype=torch.float64))
    q = q if w.shape[0] >= w.shape[1] else q.T
    w.copy_((gain * q).to(w.dtype))


def build(arch: str, path: pathlib.Path, rope: str = "default", seed: int = 0, **kw):
    """The model (eval, float32) and its directory (config.json + model.safetensors)."""
    torch.manual_seed(seed)
    cfg = config(arch, rope, **kw)
    model = tf.AutoModelForCausalLM.from_config(cfg, dtype=torch.float32).eval()
    with torch.no_grad():
        for layer in model.model.layers:
            a = layer.self_attn
            if arch == "phi3":
                q = a.config.num_attention_heads * a.head_dim
                e = a.config.num_key_value_heads * a.head_dim
                orthogonalize_(a.qkv_proj.weight[q:q + e])
            elif hasattr(a, "k_proj"):
                orthogonalize_(a.k_proj.weight)
            if getattr(a, "k_proj", None) is not None and a.k_proj.bias is not None:
                a.k_proj.bias.normal_(0, 0.1)
                a.v_proj.bias.normal_(0, 0.1)
    model.save_pretrained(path, safe_serialization=True)
    return model, path


def build_t5(path: pathlib.Path, seed: int = 0):
    torch.manual_seed(seed)
    cfg = tf.T5Config(vocab_size=VOCAB, d_model=64, d_kv=16, d_ff=128, num_layers=2, num_heads=4,
                      decoder_start_token_id=0, pad_token_id=0)
    model = tf.T5ForConditionalGeneration(cfg).eval()
    with torch.no_grad():
        for block in model.decoder.block:
            orthogonalize_(block.layer[1].EncDecAttention.k.weight)
    model.save_pretrained(path, safe_serialization=True)
    return model, path


def layer_kv(cache, layer: int):
    """K, V of one layer of a transformers cache (batch 1): [T, h_kv, d] each."""
    k, v = cache_layers(cache)[layer]
    return k[0].transpose(0, 1).contiguous(), v[0].transpose(0, 1).contiguous()
