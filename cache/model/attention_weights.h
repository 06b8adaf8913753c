// The projection weights of one attention layer that SlimKV's modes read, located in a
// checkpoint by architecture, and the model fingerprint built from them.
//
// Thread-safety: LayerWeights is a plain value of views into a SafetensorsDir (valid while it
// lives); the functions are stateless and safe to call concurrently.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <vector>

#include "absl/status/statusor.h"
#include "cache/model/model_config.h"
#include "cache/model/safetensors.h"
#include "cache/model/sha256.h"

namespace slimkv::cache {

// Views in the checkpoint's orientation: a weight is [out, in] (HF nn.Linear stores W^T).
// Which fields are set depends on the architecture (see LoadLayerWeights).
struct LayerWeights {
  uint32_t layer = 0;

  // Standard attention (every non-MLA architecture; t5: decoder cross-attention).
  std::optional<TensorView> k;       // [e, d] = W_K^T (phi3: rows of qkv_proj)
  std::optional<TensorView> v;       // [e, d] = W_V^T
  std::optional<TensorView> k_bias;  // [e]   (qwen2; llama/mistral attention_bias)
  std::optional<TensorView> v_bias;  // [e]

  // MLA, DeepSeek layout (deepseek_v2/v3, TransMLA conversions).
  std::optional<TensorView> kv_a;       // kv_a_proj_with_mqa.weight [d_c + d_r, d]
  std::optional<TensorView> kv_a_bias;  // [d_c + d_r]        (TransMLA attention_bias)
  std::optional<TensorView> kv_a_norm;  // kv_a_layernorm.weight [d_c] (absent when disabled)
  std::optional<TensorView> kv_b;       // kv_b_proj.weight [h*(nope + v_head_dim), d_c]:
                                        // per head h, rows nope of W_UK,h^T then v of W_UV,h^T

  // MLA, MHA2MLA layout (llama/qwen2 with an `mha2mla` block, svd_init_method "joint").
  std::optional<TensorView> k_rope;       // k_r_proj.weight [h_kv*r, d]
  std::optional<TensorView> k_rope_bias;  // [h_kv*r]
  std::optional<TensorView> kv_down;      // kv_proj.down_kv.weight [h_kv*d_kv, d]
  std::optional<TensorView> k_up;         // kv_proj.up_k.weight [h_kv*(d_h - r), h_kv*d_kv]
  std::optional<TensorView> k_up_bias;
  std::optional<TensorView> v_up;         // kv_proj.up_v.weight [h_kv*d_h, h_kv*d_kv]
  std::optional<TensorView> v_up_bias;

  // The views that are set, in the fixed order of the fields above (the fingerprint order).
  std::vector<const TensorView*> Used() const;
};

// Locates layer `layer`'s tensors (names under `model.layers.{i}.self_attn.`, or
// `decoder.block.{i}.layer.1.EncDecAttention.` for t5) and checks their shapes against
// `config`. No data is copied.
// INVALID_ARGUMENT when layer >= config.num_layers, a shape disagrees with the config, or a
// tensor has a dtype other than F32/F16/BF16 (naming the tensor); NOT_FOUND naming the tensor
// when a required one is absent.
[[nodiscard]] absl::StatusOr<LayerWeights> LoadLayerWeights(const SafetensorsDir& weights,
                                                            const ModelConfig& config,
                                                            uint32_t layer);

// A dense row-major float64 matrix.
struct MatrixF64 {
  int64_t rows = 0;
  int64_t cols = 0;
  std::vector<double> data;  // rows * cols
  double at(int64_t r, int64_t c) const { return data[r * cols + c]; }
};

// Converts a checkpoint weight view [out, in] to W in SPEC §2 orientation: [in, out]
// (so k -> W_K in R^{d x e}). INVALID_ARGUMENT when the view is not 2-D.
[[nodiscard]] absl::StatusOr<MatrixF64> WeightToMatrixF64(const TensorView& weight);

// Converts a view of any rank to float64, in storage order (biases, norms).
std::vector<double> ViewToF64(const TensorView& view);

using Fingerprint = Digest;

// SHA-256 over CanonicalGeometry(config) and, when `weights` is not null, every layer's used
// tensors (name, dtype, shape, bytes), as docs/model-fingerprint.md describes byte by byte.
// Fails as LoadLayerWeights does; INTERNAL if OpenSSL fails.
[[nodiscard]] absl::StatusOr<Fingerprint> ModelFingerprint(const ModelConfig& config,
                                                           const SafetensorsDir* weights);

}  // namespace slimkv::cache
