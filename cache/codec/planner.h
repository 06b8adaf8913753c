// The capacity planner behind `slimkv plan`: for each layer of a model, what every mode
// (SPEC §2) stores per token, exactly, under each quantizer; whether the mode applies and why
// not; and, with the weights, the condition numbers, the error each mode is predicted to add
// per input dtype, and the mode the layer takes under an error tolerance.
//
// Byte rules (per token per layer; "K-like" tensors are int4-quantized per channel as KIVI
// does keys, everything else per token, formats of kernels/quant_format.h, scales included):
//   full              K [h_kv·d_hk] (K-like) + V [h_kv·d_hv]
//   slim              K_raw [e] (K-like)                             needs e ≥ d
//   xcache            x [d]                                          worth it when d < 2e
//   latent (native)   DeepSeek [d_c + d_r] (fp8 keeps k_rope in bf16: FlashMLA's 656-byte
//                     token); MHA2MLA [h_kv·(r + d_kv)]               MLA models only
//   latent projected  c [R]                                          R fixed or by energy
// Unquantized elements take DTypeSize(PlanOptions::store_dtype) bytes. int4 per-channel
// groups span 32 tokens, so its per-token figure is the 32-token block's bytes / 32.
//
// Mode choice (with weights, per input dtype t): among slim and xcache (from K,V: the engine
// sends K and V) those that apply and whose predicted error ≤ tolerance, the one storing fewer
// elements (slim on a tie); else full. MLA layers take their native latent. The projected
// latent is lossy and never chosen automatically.
//
// Thread-safety: stateless functions; results are plain values.
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <limits>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "cache/model/attention_weights.h"
#include "cache/model/model_config.h"
#include "cache/model/safetensors.h"
#include "kernels/dtype.h"
#include "kernels/layer_factors.h"

namespace slimkv::cache {

enum class PlanMode : uint8_t { kFull, kSlim, kXcache, kLatentNative, kLatentProjected };
inline constexpr int kNumPlanModes = 5;
// "full", "slim", "xcache", "latent", "projected".
const char* PlanModeName(PlanMode m);

enum class PlanQuant : uint8_t { kNone, kFp8, kInt8, kInt4 };
inline constexpr int kNumPlanQuants = 4;
// "none", "fp8", "int8", "int4".
const char* PlanQuantName(PlanQuant q);

// Input dtypes the errors are predicted for, in this order.
inline constexpr std::array<kernels::DType, 3> kPlanDTypes = {
    kernels::DType::kF32, kernels::DType::kF16, kernels::DType::kBF16};

struct PlanOptions {
  // Relative Frobenius error a layer may add (SPEC §2 default).
  double tolerance = 1e-2;
  // Rank of the projected latent: fixed_rank or energy; both 0: the mode is not planned.
  kernels::RankRule rank;
  // Element type of unquantized stored values (and of full, the reference).
  kernels::DType store_dtype = kernels::DType::kBF16;
};

inline constexpr double kNotKnown = std::numeric_limits<double>::quiet_NaN();

struct ModePlan {
  bool applicable = false;
  std::string reason;    // why it does not apply (or a caveat); empty otherwise
  int64_t elements = 0;  // per token, before quantization
  std::array<double, kNumPlanQuants> bytes{};  // per token, by PlanQuant, scales included
  std::array<double, kNumPlanQuants> ratio{};  // bytes / full's unquantized bytes
  double bytes_4bit = 0;  // elements / 2: 4 bits per value, no scales (papers' convention)
  // With weights. slim: κ(W_K); xcache: κ([W_K W_V]); others NaN.
  double kappa = kNotKnown;
  // Predicted relative error per kPlanDTypes entry (docs/codecs.md "Error model"); xcache:
  // recovered from K,V. projected: the weight-only bound ‖A − A·B·Bᵀ‖_F / ‖A‖_F, every dtype.
  // 0 for exact stored-as-sent modes; NaN without weights.
  std::array<double, 3> predicted_error{kNotKnown, kNotKnown, kNotKnown};
};

struct LayerPlan {
  uint32_t layer = 0;
  std::array<ModePlan, kNumPlanModes> modes;  // indexed by PlanMode
  bool analyzed = false;    // κ and errors known (weights read, non-MLA)
  bool from_cache = false;  // the analysis came from the FactorStore
  double kappa_k = kNotKnown, kappa_v = kNotKnown, kappa_kv = kNotKnown;
  int projected_rank = 0;   // R; 0 when the projected latent is not planned
  // Mode under options.tolerance per kPlanDTypes entry. Without weights: full for non-MLA
  // (nothing is known to be safe), latent for MLA.
  std::array<PlanMode, 3> chosen{PlanMode::kFull, PlanMode::kFull, PlanMode::kFull};
};

struct ModelPlan {
  ModelConfig config;
  PlanOptions options;
  bool has_weights = false;
  std::vector<LayerPlan> layers;
  // Σ over layers of ModePlan::bytes for modes that apply on every layer; NaN otherwise.
  std::array<std::array<double, kNumPlanQuants>, kNumPlanModes> total_bytes{};
  // Σ over layers of the chosen mode's unquantized bytes, per kPlanDTypes entry.
  std::array<double, 3> chosen_bytes{};
};

// Called as the planner works: `what` says what is happening, `done` of `total` steps.
using PlanProgress = std::function<void(absl::string_view what, uint32_t done, uint32_t total)>;

// Sizes only (config.json alone). INVALID_ARGUMENT for an invalid option (tolerance ≤ 0, a
// bad rank rule, both fixed_rank and energy set).
[[nodiscard]] absl::StatusOr<ModelPlan> PlanFromConfig(const ModelConfig& config,
                                                       const PlanOptions& options);

// Sizes plus, per layer, κ(W_K), κ(W_V), κ([W_K W_V]) and the joint spectrum
// (kernels::AnalyzeConditioning), the predicted errors and the chosen modes. When `factor_dir`
// is not empty, each layer's analysis is looked up in FactorStore(factor_dir) under the model
// fingerprint (geometry + weights) first and stored there after computing, so a second run
// factorizes nothing; a corrupt entry is recomputed. `progress` may be empty.
// Fails as PlanFromConfig, LoadLayerWeights and ModelFingerprint do; INTERNAL if LAPACK fails.
// A FactorStore write failure is not fatal (the plan is returned; the entry is not cached).
[[nodiscard]] absl::StatusOr<ModelPlan> PlanWithWeights(const ModelConfig& config,
                                                        const SafetensorsDir& weights,
                                                        const PlanOptions& options,
                                                        const std::string& factor_dir,
                                                        const PlanProgress& progress);

}  // namespace slimkv::cache
