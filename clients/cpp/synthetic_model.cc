#include "clients/cpp/synthetic_model.h"

#include <cmath>
#include <filesystem>
#include <fstream>
#include <random>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "cache/model/safetensors.h"
#include "kernels/dtype.h"

namespace slimkv::client {

std::string SyntheticModel::ConfigJson() const {
  return absl::StrFormat(R"({
  "architectures": ["LlamaForCausalLM"], "model_type": "llama",
  "num_hidden_layers": %u, "hidden_size": %u, "intermediate_size": %u,
  "num_attention_heads": %u, "num_key_value_heads": %u, "head_dim": %u,
  "max_position_embeddings": 4096, "rope_theta": %.1f, "rms_norm_eps": 1e-5,
  "vocab_size": 32000, "torch_dtype": "bfloat16"
})", num_layers, hidden_size, hidden_size * 8 / 3, num_heads, num_kv_heads, head_dim, rope_theta);
}

std::vector<float> SyntheticModel::Weight(uint32_t layer, int role) const {
  std::mt19937 rng(seed * 7919u + layer * 2u + static_cast<uint32_t>(role));
  std::normal_distribution<float> normal(0.0f, 1.0f / std::sqrt(float(hidden_size)));
  std::vector<float> w(size_t{hidden_size} * e());
  for (float& x : w) x = kernels::BF16ToFloat(kernels::FloatToBF16(normal(rng)));
  return w;
}

absl::Status SyntheticModel::Write(const std::string& dir) const {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) return absl::InternalError(absl::StrCat("cannot create ", dir, ": ", ec.message()));
  std::ofstream(dir + "/config.json") << ConfigJson();
  if (!weights) return absl::OkStatus();
  std::vector<cache::TensorToWrite> tensors;
  for (uint32_t l = 0; l < num_layers; ++l) {
    for (int role = 0; role < 2; ++role) {
      const std::vector<float> w = Weight(l, role);
      cache::TensorToWrite t;
      t.name = absl::StrCat("model.layers.", l, ".self_attn.", role ? "v" : "k", "_proj.weight");
      t.dtype = kernels::DType::kBF16;
      t.shape = {e(), hidden_size};  // HF stores W^T: [out, in]
      t.data.resize(size_t{e()} * hidden_size * 2);
      auto* out = reinterpret_cast<uint16_t*>(t.data.data());
      for (uint32_t r = 0; r < e(); ++r) {
        for (uint32_t c = 0; c < hidden_size; ++c) {
          out[r * hidden_size + c] = kernels::FloatToBF16(w[c * e() + r]);
        }
      }
      tensors.push_back(std::move(t));
    }
  }
  return cache::WriteSafetensors(dir + "/model.safetensors", tensors);
}

}  // namespace slimkv::client
