// Rotary position embedding (RoPE): the per-head rotation R_p that engines apply to K_raw, and
// its exact inverse, with the frequency schedules HF transformers reads from config.json.
//
// Engine form: K = a · R_p · K_raw on the first `rotary_dim` dims of every head (pair j turned
// by angle p·inv_freq[j]); the remaining dims pass through unchanged. a is the YaRN attention
// factor when `attention_factor_in_cos_sin` (HF multiplies cos and sin by it, so it reaches
// only the rotated dims), else 1. Un-applying divides by a and rotates back, so
// un-apply(apply(k)) == k up to rounding.
//
// Thread-safety: RopeParams and RopeTable are immutable after construction; the functions are
// stateless and safe to call concurrently on disjoint buffers.
#pragma once

#include <cstdint>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace slimkv::kernels {

enum class RopePairing : uint8_t {
  kHalfSplit = 0,    // HF Llama rotate_half / GPT-NeoX: dim j with j + rotary_dim/2
  kInterleaved = 1,  // GPT-J / DeepSeek (vLLM is_neox_style=false): dim 2j with 2j+1
};

enum class RopeScalingType : uint8_t { kNone = 0, kLinear, kDynamicNtk, kYarn, kLlama3 };

// config.json "rope_scaling". Fields not used by `type` are ignored.
struct RopeScaling {
  RopeScalingType type = RopeScalingType::kNone;
  double factor = 1.0;
  // llama3 and YaRN: "original_max_position_embeddings"; dynamic NTK: the model's
  // max_position_embeddings.
  int64_t original_max_position_embeddings = 0;
  // Dynamic NTK only: the sequence length the engine computed its frequencies for
  // (HF: max position id + 1 of the forward pass). Frequencies change only when it exceeds
  // original_max_position_embeddings. Keys rotated under different lengths need separate calls.
  int64_t dynamic_seq_len = 0;
  // YaRN.
  double beta_fast = 32.0;
  double beta_slow = 1.0;
  double mscale = 0.0;            // 0: absent
  double mscale_all_dim = 0.0;    // 0: absent
  double attention_factor = 0.0;  // 0: derive from factor / mscale / mscale_all_dim
  bool truncate = true;
  // llama3.
  double low_freq_factor = 1.0;
  double high_freq_factor = 4.0;
};

struct RopeParams {
  double theta = 10000.0;  // "rope_theta"
  int head_dim = 0;
  int rotary_dim = 0;  // even, 0 < rotary_dim <= head_dim; dims past it are not rotated
  RopePairing pairing = RopePairing::kHalfSplit;
  RopeScaling scaling;
  // HF transformers (and vLLM) scale cos/sin by the YaRN attention factor, so cached keys carry
  // it. DeepSeek's reference code folds it into the softmax scale instead: set false there.
  bool attention_factor_in_cos_sin = true;
  // Engines build their cos/sin cache from float32 inv_freq (RopeInvFreq) and float32 p·inv_freq. For the
  // round trip un-rotate → rotate only consistency matters, but V reconstructed from K_raw
  // needs the engine's own angles (a float64 angle differs by up to p·2^-24 rad), so by
  // default the angle is formed the way engines do and only cos/sin are evaluated in double.
  bool fp32_angles = true;
};

// OK, or INVALID_ARGUMENT naming the bad field.
[[nodiscard]] absl::Status ValidateRopeParams(const RopeParams& p);

// inv_freq[j], j < rotary_dim/2, after scaling. With fp32_angles (the engines' convention) the
// values are float32 numbers computed as HF transformers computes them (every step in float32,
// so they match its inv_freq buffer bit for bit); otherwise exact float64.
// REQUIRES: ValidateRopeParams ok.
std::vector<double> RopeInvFreq(const RopeParams& p);

// The YaRN attention factor (1 for other scaling types), whether or not it is applied to keys.
double RopeAttentionFactor(const RopeParams& p);

// Scalar reference, float64 throughout (the oracle). x: [tokens, heads, head_dim] row-major,
// rotated in place; positions: [tokens]. inverse=false applies a·R_p, true applies R_p^T / a.
// REQUIRES: ValidateRopeParams(p) ok.
void ApplyRopeRef(const RopeParams& p, double* x, int64_t tokens, int heads,
                  const int32_t* positions, bool inverse);

// Precomputed frequencies for the fast path.
class RopeTable {
 public:
  [[nodiscard]] static absl::StatusOr<RopeTable> Create(const RopeParams& p);

  const RopeParams& params() const { return params_; }

  // Same contract as ApplyRopeRef on float32 data: cos/sin are evaluated once per token in
  // double and rounded to float; the rotation itself is float32.
  void Apply(float* x, int64_t tokens, int heads, const int32_t* positions, bool inverse) const;

  // The float cos and sin (attention factor included) Apply turns pair j of `position` by,
  // for j < rotary_dim / 2: what a GPU kernel needs to rotate exactly as Apply does.
  void CosSin(int32_t position, float* cos, float* sin) const;

 private:
  void CosSinScaled(int32_t position, bool inverse, float* cos, float* sin) const;

  RopeParams params_;
  std::vector<double> inv_freq_;
  double scale_ = 1.0;  // attention factor applied to keys
};

}  // namespace slimkv::kernels
