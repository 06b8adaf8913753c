// The attention geometry of a served model, as read from its HF `config.json`.
//
// Thread-safety: ModelConfig is a plain value (immutable once parsed); the functions are
// stateless and safe to call concurrently.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "kernels/rope.h"

namespace slimkv::cache {

// RoPE's vocabulary is the kernels' (kernels/rope.h): how a head's dims pair (SPEC §2) and the
// frequency schedule config.json names.
using RopePairing = kernels::RopePairing;
using RopeScalingType = kernels::RopeScalingType;

// `rope_scaling` of config.json. Fields not used by `type` keep their defaults.
struct RopeScaling {
  RopeScalingType type = RopeScalingType::kNone;
  double factor = 1;
  // YaRN (DeepSeek V2/V3 names).
  double beta_fast = 32;
  double beta_slow = 1;
  uint32_t original_max_position_embeddings = 0;  // 0 when the config does not say
  double mscale = 0;            // 0: absent
  double mscale_all_dim = 0;    // 0: absent
  double attention_factor = 0;  // 0: absent (derived from factor / mscale / mscale_all_dim)
  bool truncate = true;
  // Llama 3.
  double low_freq_factor = 1;
  double high_freq_factor = 4;
};

struct RopeConfig {
  double theta = 10000;
  // Dims per head that rotate (== the K rope dims); 0 for models without RoPE (t5).
  // For MLA (DeepSeek) it is qk_rope_head_dim; for partial rotary (phi3) < k_head_dim.
  uint32_t rotary_dim = 0;
  RopePairing pairing = RopePairing::kHalfSplit;
  RopeScaling scaling;
  uint32_t max_position_embeddings = 0;
};

enum class LatentLayout {
  kNone,
  kDeepSeek,  // c_kv[d_c] + one shared k_rope[d_r] per token
  kMha2Mla,   // per-KV-head rope dims h_kv*r + h_kv*d_kv latent
};

// Multi-head latent attention geometry (DeepSeek V2/V3, TransMLA / MHA2MLA conversions).
struct MlaConfig {
  LatentLayout layout = LatentLayout::kNone;
  uint32_t kv_lora_rank = 0;      // d_c (kDeepSeek); per-KV-head latent d_kv (kMha2Mla)
  uint32_t qk_rope_head_dim = 0;  // d_r (kDeepSeek); rope dims kept per KV head r (kMha2Mla)
  uint32_t qk_nope_head_dim = 0;
  uint32_t v_head_dim = 0;
  bool kv_a_layernorm = true;     // kv_a_layernorm between down- and up-projection
  bool kv_a_bias = false;         // kv_a_proj_with_mqa has a bias (some TransMLA checkpoints)
};

struct ModelConfig {
  // config.json model_type: llama, mistral, qwen2, gemma2, phi3, deepseek_v2, deepseek_v3, t5.
  std::string architecture;
  // Layers whose KV is cached (decoder layers; for t5: decoder cross-attention layers).
  uint32_t num_layers = 0;
  uint32_t hidden_size = 0;  // d
  uint32_t num_q_heads = 0;
  uint32_t num_kv_heads = 0;
  // Engine-layout head dims of K and V (differ for MLA: nope + rope vs v_head_dim).
  uint32_t k_head_dim = 0;
  uint32_t v_head_dim = 0;
  bool kv_bias = false;          // k/v projections have biases (qwen2; llama `attention_bias`)
  bool fused_qkv = false;        // phi3 qkv_proj
  bool cross_attention = false;  // t5: cached K, V come from the encoder output
  RopeConfig rope;
  std::optional<MlaConfig> mla;
  // Decode attention: logits = softmax_scale * q.k, then (when > 0)
  // attn_logit_softcapping * tanh(logits / attn_logit_softcapping) (gemma2).
  // softmax_scale is 1/sqrt(k_head_dim) unless the config says otherwise (gemma2
  // query_pre_attn_scalar; DeepSeek YaRN multiplies by mscale^2).
  double softmax_scale = 0;
  double attn_logit_softcapping = 0;
  uint32_t sliding_window = 0;   // informational; 0 = none. Not part of the geometry.
  std::string torch_dtype;       // as written in config.json; "" when absent
};

// Parses config.json text; docs/model-fingerprint.md §3 lists the fields read per model_type.
// MLA is recognised from deepseek_v2/v3 configs (TransMLA conversions write deepseek_v3, with
// `qk_latent_layernorm` and `attention_bias`) and from llama/mistral/qwen2 configs carrying the
// `mha2mla` block MHA2MLA's training script writes (`rope_dim_for_mla`, `low_rank`,
// `svd_init_method: "joint"`). On success every size is in [1, 1<<20] and the heads divide.
// INVALID_ARGUMENT naming the field when the text is not JSON, a field is missing, of the
// wrong type or out of range (0 or > 1<<20 for sizes; q heads not a multiple of kv heads),
// when the model_type is not a supported architecture, or when rope_scaling is of a kind
// SlimKV cannot reproduce (phi3 `longrope`/`su`: its factors switch with sequence length).
[[nodiscard]] absl::StatusOr<ModelConfig> ParseModelConfig(absl::string_view config_json);

// Canonical byte encoding of the geometry (fixed field order, little-endian): the geometry
// part of the model fingerprint, documented byte by byte in docs/model-fingerprint.md.
std::string CanonicalGeometry(const ModelConfig& config);

// The geometry rules of the modes for models without MLA (SPEC §2), shared by the planner and
// the codec: the reason the mode does not fit `config`, or "" when it does.
//   every mode that recovers K_raw from K (slim, xcache, projected latent) needs a rotation
//   that depends on the position alone: not dynamic NTK RoPE (KeyRecoveryMisfit);
//   slim needs rank(W_K) = d, i.e. e = h_kv·d_h >= d (else V is not a function of K);
//   xcache pays only when x is smaller than K and V together, d < 2e.
std::string KeyRecoveryMisfit(const ModelConfig& config);
std::string SlimMisfit(const ModelConfig& config);
std::string XcacheMisfit(const ModelConfig& config);

// Names used in messages and docs, e.g. "half_split", "yarn".
const char* RopePairingName(RopePairing p);
const char* RopeScalingTypeName(RopeScalingType t);
const char* LatentLayoutName(LatentLayout l);

}  // namespace slimkv::cache
