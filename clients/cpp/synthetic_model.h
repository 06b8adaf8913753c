// A synthetic Llama-style model directory — a real config.json and real safetensors with
// deterministic k_proj/v_proj weights — for the demo, tests and benchmarks, which cannot load
// a real checkpoint on a machine without network access.
//
// Thread-safety: stateless functions.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"

namespace slimkv::client {

struct SyntheticModel {
  uint32_t num_layers = 4;
  uint32_t hidden_size = 256;
  uint32_t num_heads = 4;
  uint32_t num_kv_heads = 4;
  uint32_t head_dim = 64;
  double rope_theta = 10000.0;
  uint32_t seed = 42;
  // Write model.safetensors too; false writes config.json alone (sizes only).
  bool weights = true;

  uint32_t e() const { return num_kv_heads * head_dim; }
  std::string ConfigJson() const;
  // W_K (role 0) or W_V (role 1) of `layer`, [hidden_size, e] row-major, bf16-exact floats.
  std::vector<float> Weight(uint32_t layer, int role) const;
  // Writes config.json (and model.safetensors) into `dir`, creating it.
  [[nodiscard]] absl::Status Write(const std::string& dir) const;
};

}  // namespace slimkv::client
