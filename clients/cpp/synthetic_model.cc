#include "clients/cpp/synthetic_model.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <functional>
#include <random>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "cache/model/safetensors.h"
#include "kernels/dtype.h"

namespace slimkv::client {
namespace {

float Bf16(float x) { return kernels::BF16ToFloat(kernels::FloatToBF16(x)); }

SyntheticModel::Tensor Random(const std::string& name, std::vector<int64_t> shape, uint32_t seed,
                              float stddev) {
  std::mt19937 rng(static_cast<uint32_t>(std::hash<std::string>{}(name)) ^ (seed * 7919u));
  std::normal_distribution<float> normal(0.0f, stddev);
  int64_t n = 1;
  for (int64_t s : shape) n *= s;
  SyntheticModel::Tensor t{name, std::move(shape), std::vector<float>(n)};
  for (float& x : t.values) x = Bf16(normal(rng));
  return t;
}

const SyntheticModel::Tensor* Find(const std::vector<SyntheticModel::Tensor>& ts,
                                   const std::string& suffix) {
  for (const auto& t : ts) {
    if (t.name.size() >= suffix.size() &&
        t.name.compare(t.name.size() - suffix.size(), suffix.size(), suffix) == 0) {
      return &t;
    }
  }
  return nullptr;
}

}  // namespace

std::string SyntheticModel::ConfigJson() const {
  if (arch == "t5") {
    return absl::StrFormat(R"({
  "architectures": ["T5ForConditionalGeneration"], "model_type": "t5",
  "num_layers": %u, "num_decoder_layers": %u, "d_model": %u, "num_heads": %u, "d_kv": %u,
  "d_ff": %u, "vocab_size": 32128, "torch_dtype": "bfloat16"
})", num_layers, num_layers, hidden_size, num_heads, head_dim, 4 * hidden_size);
  }
  if (arch == "deepseek") {
    return absl::StrFormat(R"({
  "architectures": ["DeepseekV3ForCausalLM"], "model_type": "deepseek_v3",
  "num_hidden_layers": %u, "hidden_size": %u, "num_attention_heads": %u,
  "num_key_value_heads": %u, "kv_lora_rank": %u, "qk_rope_head_dim": %u,
  "qk_nope_head_dim": %u, "v_head_dim": %u, "max_position_embeddings": 4096,
  "rope_theta": %.1f, "vocab_size": 32000, "torch_dtype": "bfloat16"
})", num_layers, hidden_size, num_heads, num_heads, kv_lora_rank, rope_dim, head_dim, head_dim,
                           rope_theta);
  }
  const std::string type = arch == "mha2mla" ? "llama" : arch;
  std::string extra;
  if (arch == "phi3") extra = R"(, "partial_rotary_factor": 0.5)";
  if (arch == "mha2mla") {
    extra = absl::StrFormat(
        R"(, "mha2mla": {"rope_dim_for_mla": %u, "low_rank": %u, "svd_init_method": "joint"})",
        rope_dim, kv_lora_rank);
  }
  return absl::StrFormat(R"({
  "architectures": ["CausalLM"], "model_type": "%s",
  "num_hidden_layers": %u, "hidden_size": %u, "intermediate_size": %u,
  "num_attention_heads": %u, "num_key_value_heads": %u, "head_dim": %u,
  "max_position_embeddings": 4096, "rope_theta": %.1f, "rms_norm_eps": 1e-5,
  "vocab_size": 32000, "torch_dtype": "bfloat16"%s
})", type, num_layers, hidden_size, hidden_size * 8 / 3, num_heads, num_kv_heads, head_dim,
                         rope_theta, extra);
}

std::vector<SyntheticModel::Tensor> SyntheticModel::LayerTensors(uint32_t layer) const {
  const int64_t d = hidden_size, e_ = e();
  const float sd = 1.0f / std::sqrt(static_cast<float>(hidden_size));
  std::vector<Tensor> out;
  if (arch == "deepseek") {
    const std::string p = absl::StrCat("model.layers.", layer, ".self_attn.");
    out.push_back(Random(p + "kv_a_proj_with_mqa.weight", {kv_lora_rank + rope_dim, d}, seed, sd));
    Tensor norm{p + "kv_a_layernorm.weight", {kv_lora_rank}, std::vector<float>(kv_lora_rank, 1)};
    out.push_back(std::move(norm));
    out.push_back(Random(p + "kv_b_proj.weight", {int64_t{num_heads} * 2 * head_dim, kv_lora_rank},
                         seed, 1.0f / std::sqrt(static_cast<float>(kv_lora_rank))));
    return out;
  }
  if (arch == "mha2mla") {
    const std::string p = absl::StrCat("model.layers.", layer, ".self_attn.");
    const int64_t h = num_kv_heads, latent = h * kv_lora_rank;
    const float su = 1.0f / std::sqrt(static_cast<float>(latent));
    out.push_back(Random(p + "k_r_proj.weight", {h * rope_dim, d}, seed, sd));
    out.push_back(Random(p + "kv_proj.down_kv.weight", {latent, d}, seed, sd));
    out.push_back(Random(p + "kv_proj.up_k.weight", {h * (head_dim - rope_dim), latent}, seed, su));
    out.push_back(Random(p + "kv_proj.up_v.weight", {h * head_dim, latent}, seed, su));
    return out;
  }
  const std::string p = arch == "t5"
                            ? absl::StrCat("decoder.block.", layer, ".layer.1.EncDecAttention.")
                            : absl::StrCat("model.layers.", layer, ".self_attn.");
  const std::string k = arch == "t5" ? "k" : "k_proj", v = arch == "t5" ? "v" : "v_proj";
  Tensor wk = Random(p + k + ".weight", {e_, d}, seed, sd);
  Tensor wv = Random(p + v + ".weight", {e_, d}, seed, sd);
  if (std::find(ill_conditioned_layers.begin(), ill_conditioned_layers.end(), layer) !=
      ill_conditioned_layers.end()) {
    for (int64_t r = 0; r < e_; ++r) {
      const float s = static_cast<float>(std::pow(10.0, -ill_kappa_decades * r / (e_ - 1.0)));
      for (int64_t c = 0; c < d; ++c) wk.values[r * d + c] = Bf16(wk.values[r * d + c] * s);
    }
  }
  if (arch == "phi3") {  // qkv_proj rows: [q (h·d_h) | k | v]
    Tensor q = Random(p + "q_proj.weight", {int64_t{num_heads} * head_dim, d}, seed, sd);
    Tensor qkv{p + "qkv_proj.weight", {int64_t{num_heads} * head_dim + 2 * e_, d}, q.values};
    qkv.values.insert(qkv.values.end(), wk.values.begin(), wk.values.end());
    qkv.values.insert(qkv.values.end(), wv.values.begin(), wv.values.end());
    out.push_back(std::move(qkv));
    return out;
  }
  out.push_back(std::move(wk));
  out.push_back(std::move(wv));
  if (arch == "qwen2") {
    out.push_back(Random(p + "k_proj.bias", {e_}, seed, 0.5f));
    out.push_back(Random(p + "v_proj.bias", {e_}, seed, 0.5f));
  }
  return out;
}

std::vector<float> SyntheticModel::Weight(uint32_t layer, int role) const {
  const std::vector<Tensor> ts = LayerTensors(layer);
  const int64_t d = hidden_size, e_ = e();
  std::vector<float> w(d * e_);
  const float* rows;  // [e, d], the checkpoint's W^T
  if (arch == "phi3") {
    rows = Find(ts, "qkv_proj.weight")->values.data() +
           (int64_t{num_heads} * head_dim + role * e_) * d;
  } else {
    rows = Find(ts, role == 0 ? (arch == "t5" ? ".k.weight" : "k_proj.weight")
                              : (arch == "t5" ? ".v.weight" : "v_proj.weight"))
               ->values.data();
  }
  for (int64_t r = 0; r < e_; ++r) {
    for (int64_t c = 0; c < d; ++c) w[c * e_ + r] = rows[r * d + c];
  }
  return w;
}

std::vector<float> SyntheticModel::Bias(uint32_t layer, int role) const {
  if (arch != "qwen2") return {};
  return Find(LayerTensors(layer), role == 0 ? "k_proj.bias" : "v_proj.bias")->values;
}

absl::Status SyntheticModel::Write(const std::string& dir) const {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) return absl::InternalError(absl::StrCat("cannot create ", dir, ": ", ec.message()));
  std::ofstream(dir + "/config.json") << ConfigJson();
  if (!weights) return absl::OkStatus();
  std::vector<cache::TensorToWrite> tensors;
  for (uint32_t l = 0; l < num_layers; ++l) {
    for (Tensor& t : LayerTensors(l)) {
      cache::TensorToWrite w;
      w.name = std::move(t.name);
      w.dtype = kernels::DType::kBF16;
      w.shape = std::move(t.shape);
      w.data.resize(t.values.size() * 2);
      kernels::ConvertDType(t.values.data(), kernels::DType::kF32, w.data.data(),
                            kernels::DType::kBF16, t.values.size());
      tensors.push_back(std::move(w));
    }
  }
  return cache::WriteSafetensors(dir + "/model.safetensors", tensors);
}

}  // namespace slimkv::client
