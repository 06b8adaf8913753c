// The codec state of one registered model: per layer, the views the codecs take
// (kernels::KvCodecLayer, kernels::LatentLayout) over float32 matrices read from the checkpoint
// or derived from it in float64 (W_KV, pinv([W_K W_V]), the projected basis), the RoPE table,
// and the condition numbers that predict each mode's error (SPEC §2, docs/codecs.md).
//
// Derived matrices and condition numbers are cached in a FactorStore under the model
// fingerprint, so a restart factorizes nothing. Building the state of a 4096-wide model takes
// minutes on first registration: the registry builds it in the background (ModelRegistry).
//
// Memory: Build keeps no matrix that a mode might not need. W_K, W_V (float32 copies of the
// checkpoint's tensors, 128 MiB per Llama-2-7B layer) are read again from the mapped checkpoint
// the first time xcache needs them; with a FactorStore, every derived matrix is computed (or
// found) and dropped, and kv() reads it back from the store the first time a mode needs it
// (Llama-2-7B: W_KV 64 MiB, pinv 128 MiB, basis 2e·R·4 bytes per layer). So a model serving
// full pages holds none of them. Without a store the derived matrices stay resident from
// Build, as there would be no cheap way back.
//
// Thread-safety: internally synchronized. Everything but the derived matrices is constant
// after Build; those are filled at most once each, under a per-layer mutex, and never change
// afterwards. Every method is const and safe to call concurrently.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "cache/model/factor_store.h"
#include "cache/model/attention_weights.h"
#include "cache/model/model_config.h"
#include "cache/model/safetensors.h"
#include "cache/model/modes.h"
#include "kernels/codec_layer.h"
#include "kernels/layer_factors.h"
#include "kernels/rope.h"

namespace slimkv::cache {

struct CodecOptions {
  // Rank of the projected latent per layer: the smallest R keeping this fraction of
  // Σσ² of [W_K W_V] (the weight-only error is then at most √(1 − energy)), or a fixed rank.
  kernels::RankRule latent_rank{.fixed_rank = 0, .energy = 0.9999};
};

// The RoPE of K as config.json describes it; nullopt for models without RoPE on cached K
// (t5 cross-attention). Dynamic NTK is taken at its original length (no per-sequence rescale).
std::optional<kernels::RopeParams> RopeParamsOf(const ModelConfig& config);

class ModelCodec {
 public:
  // A model registered without weights: full mode from K and V only.
  static std::unique_ptr<const ModelCodec> WithoutWeights(const ModelConfig& config);

  // Reads every layer's projection and derives what the modes need. The codec shares
  // `weights` (not null) to read W_K, W_V again when xcache needs them. `store` (may be null)
  // caches the derived matrices under `fingerprint` (the codec keeps a copy of it: it is a
  // path); `cancel` (may be null) is polled between layers and ends the build with CANCELLED.
  // Fails as LoadLayerWeights does; INTERNAL when LAPACK fails. A layer whose W_K is singular
  // simply cannot take slim (Supports says why).
  [[nodiscard]] static absl::StatusOr<std::unique_ptr<const ModelCodec>> Build(
      const ModelConfig& config, std::shared_ptr<const SafetensorsDir> weights,
      const Fingerprint& fingerprint, const FactorStore* store, const CodecOptions& options,
      const std::atomic<bool>* cancel);

  ~ModelCodec();
  ModelCodec(const ModelCodec&) = delete;
  ModelCodec& operator=(const ModelCodec&) = delete;

  const ModelConfig& config() const { return config_; }
  bool has_weights() const { return has_weights_; }
  bool is_mla() const { return config_.mla.has_value(); }

  // Whether pages sent as `input` can be stored in mode `m` on this model at all (every layer
  // has the same geometry): OK, or FAILED_PRECONDITION saying why not (slim on GQA, latent
  // native from K and V, a mode that needs weights on a config-only model, ...).
  [[nodiscard]] absl::Status Supports(Mode m, PageInput input) const;

  // Whether layer `l` can take mode `m` given its derived matrices (a singular W_K has no
  // W_KV): OK or FAILED_PRECONDITION with the reason. REQUIRES Supports(m, input).ok().
  [[nodiscard]] absl::Status LayerSupports(uint32_t l, Mode m, PageInput input) const;

  // First-order predicted relative error of storing layer `l` in mode `m` when the engine
  // sends `input` in dtype `t` (docs/codecs.md "Error model"): 0 for modes stored as sent,
  // κ·u for slim and xcache recovered from K,V, the weight-only Eckart–Young residual for the
  // projected latent. +inf when unknown.
  double PredictedError(uint32_t l, Mode m, PageInput input, kernels::DType t) const;

  // Elements per token layer `l` stores in mode `m` (before quantization).
  int64_t StoredCols(uint32_t l, Mode m) const;
  // Elements per token of one engine input tensor.
  int64_t InputCols(PageInput input, Role role) const;

  // The codec view of layer `l` for kernel op family `m`, with the matrix that `m` reads
  // resident (xcache from x: W_K, W_V; slim: W_KV; xcache from K,V: pinv; projected: the basis):
  // the first call that needs one reads it (W_K, W_V from the checkpoint, derived matrices from
  // the FactorStore, recomputed if the entry has gone), later calls return at once. Matrices
  // `m` does not read may be null in the view. The pointers stay valid as long as the codec.
  // FAILED_PRECONDITION when the layer has no such matrix (LayerSupports says why); INTERNAL
  // when reading (and recomputing) fails.
  // REQUIRES l < num_layers, a model with weights, not MLA.
  [[nodiscard]] absl::StatusOr<kernels::KvCodecLayer> kv(uint32_t l, kernels::CodecMode m) const;
  // REQUIRES l < num_layers, an MLA model with weights.
  const kernels::LatentLayout& latent(uint32_t l) const;

  // Bytes of W_K, W_V and derived matrices (W_KV, pinv, basis) resident now, all layers.
  uint64_t ResidentMatrixBytes() const;

 private:
  struct Layer;
  explicit ModelCodec(const ModelConfig& config);
  [[nodiscard]] absl::Status BuildLayer(const Fingerprint& fingerprint, const FactorStore* store,
                                        const CodecOptions& options, uint32_t l);
  // Reads layer `l`'s W_K, W_V from weights_ into it unless there. REQUIRES layer.mu held.
  [[nodiscard]] absl::Status LoadProjection(uint32_t l, Layer& layer) const;

  // Constant after Build.
  const ModelConfig config_;
  bool has_weights_ = false;
  std::optional<kernels::RopeTable> rope_;
  std::shared_ptr<const SafetensorsDir> weights_;  // where W_K, W_V are read back from
  std::optional<FactorStore> store_;  // where derived matrices are read back from
  Fingerprint fingerprint_{};
  std::vector<std::unique_ptr<Layer>> layers_;  // each internally synchronized
};

}  // namespace slimkv::cache
