// Synthetic model directories — a real config.json and real safetensors with deterministic
// random attention weights — in every geometry SlimKV serves, for the demo, tests and
// benchmarks, which cannot load a real checkpoint on a machine without network access.
//
//   llama     MHA (e = d) or GQA (num_kv_heads < num_heads: e < d), half-split RoPE
//   qwen2     llama geometry with K/V biases
//   phi3      fused qkv_proj, partial rotary (half the head dims rotate)
//   t5        decoder cross-attention, no RoPE; wide when num_heads·head_dim > hidden_size
//   deepseek  MLA, DeepSeek layout: c_kv [kv_lora_rank] + shared k_rope [rope_dim], interleaved
//   mha2mla   MLA, MHA2MLA layout: per KV head rope_dim dims + kv_lora_rank latent
//
// Weights are bf16-exact floats drawn from N(0, 1/d). `ill_conditioned_layers` get a W_K whose
// output channels are scaled over `ill_kappa` decades (κ(W_K) ≳ 1e6), so slim is unsafe there.
//
// Thread-safety: stateless functions.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"

namespace slimkv::client {

struct SyntheticModel {
  std::string arch = "llama";  // llama, qwen2, phi3, t5, deepseek, mha2mla
  uint32_t num_layers = 4;
  uint32_t hidden_size = 256;
  uint32_t num_heads = 4;
  uint32_t num_kv_heads = 4;
  uint32_t head_dim = 64;
  double rope_theta = 10000.0;
  // MLA: kv_lora_rank (deepseek: d_c; mha2mla: d_kv per KV head) and rope dims (deepseek:
  // qk_rope_head_dim, the K head being head_dim + rope_dim; mha2mla: rope dims per head, within
  // head_dim).
  uint32_t kv_lora_rank = 64;
  uint32_t rope_dim = 16;
  std::vector<uint32_t> ill_conditioned_layers;
  double ill_kappa_decades = 8;
  uint32_t seed = 42;
  // Write model.safetensors too; false writes config.json alone (sizes only).
  bool weights = true;

  // A small 2-layer model of `arch` (kv_lora_rank 16, rope_dim 8), for conformance tables.
  static SyntheticModel Small(std::string arch, uint32_t d, uint32_t heads, uint32_t kv_heads,
                              uint32_t head_dim);

  uint32_t e() const { return num_kv_heads * head_dim; }
  std::string ConfigJson() const;

  // A checkpoint tensor: HF name, shape [out, in] (or [n] for biases and norms), values.
  struct Tensor {
    std::string name;
    std::vector<int64_t> shape;
    std::vector<float> values;
  };
  // Every tensor of `layer` the modes read.
  std::vector<Tensor> LayerTensors(uint32_t layer) const;

  // Non-MLA: W_K (role 0) or W_V (role 1) of `layer`, [hidden_size, e] (SPEC §2 orientation),
  // and its bias [e] (empty without biases).
  std::vector<float> Weight(uint32_t layer, int role) const;
  std::vector<float> Bias(uint32_t layer, int role) const;

  // Elements of the MLA latent row: deepseek kv_lora_rank + rope_dim; mha2mla
  // num_kv_heads·(kv_lora_rank + rope_dim). 0 for other architectures.
  uint32_t LatentDim() const;

  // What an engine caches for `layer` (SPEC §2), in float64 straight from the weights — the
  // reference the codecs are checked against. From x [T, hidden_size] at `positions`: K =
  // R_p·(x·W_K + b_K) [T, h_kv, d_h] (half-split RoPE on the first rotary dims; none for t5),
  // V = x·W_V + b_V. From the latent row [T, LatentDim()] (MLA): K head h = [c·W_UK,h | rope
  // part], V_h = c·W_UV,h.
  struct Kv {
    std::vector<double> k, v;
  };
  Kv EngineKvFromX(uint32_t layer, const std::vector<double>& x,
                   const std::vector<int32_t>& positions) const;
  Kv EngineKvFromLatent(uint32_t layer, const std::vector<double>& latent) const;

  // Writes config.json (and model.safetensors) into `dir`, creating it.
  [[nodiscard]] absl::Status Write(const std::string& dir) const;
};

}  // namespace slimkv::client
