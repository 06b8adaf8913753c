#include "tests/support/synthetic_model.h"

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

SyntheticModel SyntheticModel::Small(std::string arch, uint32_t d, uint32_t heads,
                                     uint32_t kv_heads, uint32_t head_dim) {
  SyntheticModel m;
  m.arch = std::move(arch);
  m.num_layers = 2;
  m.hidden_size = d;
  m.num_heads = heads;
  m.num_kv_heads = kv_heads;
  m.head_dim = head_dim;
  m.kv_lora_rank = 16;
  m.rope_dim = 8;
  return m;
}

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

uint32_t SyntheticModel::LatentDim() const {
  if (arch == "deepseek") return kv_lora_rank + rope_dim;
  if (arch == "mha2mla") return num_kv_heads * (kv_lora_rank + rope_dim);
  return 0;
}

SyntheticModel::Kv SyntheticModel::EngineKvFromX(uint32_t layer, const std::vector<double>& x,
                                                 const std::vector<int32_t>& positions) const {
  const int64_t d = hidden_size, e_ = e(), tokens = static_cast<int64_t>(positions.size());
  const std::vector<float> wk = Weight(layer, 0), wv = Weight(layer, 1);
  const std::vector<float> bk = Bias(layer, 0), bv = Bias(layer, 1);
  Kv out{std::vector<double>(tokens * e_), std::vector<double>(tokens * e_)};
  for (int64_t t = 0; t < tokens; ++t) {
    for (int64_t j = 0; j < e_; ++j) {
      double k = bk.empty() ? 0 : bk[j], v = bv.empty() ? 0 : bv[j];
      for (int64_t i = 0; i < d; ++i) {
        k += x[t * d + i] * wk[i * e_ + j];
        v += x[t * d + i] * wv[i * e_ + j];
      }
      out.k[t * e_ + j] = k;
      out.v[t * e_ + j] = v;
    }
  }
  if (arch == "t5") return out;
  // Half-split RoPE over the first `rotary` dims of each head, as HF's rotate_half; the angle
  // formed in float32 as engines form it.
  const int64_t rotary = arch == "phi3" ? head_dim / 2 : head_dim, half = rotary / 2;
  for (int64_t t = 0; t < tokens; ++t) {
    for (int64_t h = 0; h < num_kv_heads; ++h) {
      double* k = out.k.data() + t * e_ + h * head_dim;
      for (int64_t j = 0; j < half; ++j) {
        const float inv_freq = static_cast<float>(std::pow(rope_theta, -2.0 * j / rotary));
        const double angle = static_cast<float>(positions[t]) * inv_freq;
        const double a = k[j], b = k[j + half];
        k[j] = a * std::cos(angle) - b * std::sin(angle);
        k[j + half] = b * std::cos(angle) + a * std::sin(angle);
      }
    }
  }
  return out;
}

SyntheticModel::Kv SyntheticModel::EngineKvFromLatent(uint32_t layer,
                                                      const std::vector<double>& latent) const {
  const bool deepseek = arch == "deepseek";
  const std::vector<Tensor> ts = LayerTensors(layer);
  const int64_t heads = deepseek ? num_heads : num_kv_heads;
  const int64_t r = rope_dim, dk = deepseek ? head_dim + rope_dim : head_dim, nope = dk - r;
  const int64_t dv = head_dim;
  const int64_t dc = deepseek ? kv_lora_rank : int64_t{num_kv_heads} * kv_lora_rank;
  const int64_t width = LatentDim(), tokens = static_cast<int64_t>(latent.size()) / width;
  // deepseek: kv_b [heads·(nope + dv), d_c]; mha2mla: up_k [heads·nope, d_c], up_v [heads·dv, d_c].
  const std::vector<float>& uk = ts[2].values;
  const std::vector<float>& uv = deepseek ? ts[2].values : ts[3].values;
  Kv out{std::vector<double>(tokens * heads * dk), std::vector<double>(tokens * heads * dv)};
  for (int64_t t = 0; t < tokens; ++t) {
    const double* row = latent.data() + t * width;
    for (int64_t h = 0; h < heads; ++h) {
      for (int64_t i = 0; i < nope; ++i) {
        const int64_t w_row = deepseek ? h * (nope + dv) + i : h * nope + i;
        double acc = 0;
        for (int64_t j = 0; j < dc; ++j) acc += row[j] * uk[w_row * dc + j];
        out.k[(t * heads + h) * dk + i] = acc;
      }
      for (int64_t i = 0; i < r; ++i) {
        out.k[(t * heads + h) * dk + nope + i] = row[dc + (deepseek ? i : h * r + i)];
      }
      for (int64_t i = 0; i < dv; ++i) {
        const int64_t w_row = deepseek ? h * (nope + dv) + nope + i : h * dv + i;
        double acc = 0;
        for (int64_t j = 0; j < dc; ++j) acc += row[j] * uv[w_row * dc + j];
        out.v[(t * heads + h) * dv + i] = acc;
      }
    }
  }
  return out;
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
