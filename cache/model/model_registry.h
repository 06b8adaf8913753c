// Registered models: the geometry, weights and page size each model_id stands for.
//
// Registration is idempotent: the same model directory (or config) with the same page size
// yields the same model_id, the hex of the registration fingerprint
//   SHA-256(model fingerprint (docs/model-fingerprint.md) ‖ page_tokens as uint32 LE),
// so page keys of two page sizes never meet. Models are never unregistered while the daemon
// runs.
//
// A model registered with weights gets its ModelCodec (derived matrices, cached on disk under
// `factor_dir`) built by one background thread, in registration order, so RegisterModel never
// waits for a factorization; until it is ready only full mode is available.
//
// Thread-safety: internally synchronized; a RegisteredModel is immutable apart from its codec
// slot, which is synchronized.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "cache/model/model_config.h"
#include "cache/model/safetensors.h"
#include "cache/model/model_codec.h"
#include "cache/model/modes.h"
#include "cache/model/sha256.h"

namespace slimkv::cache {

enum class FactorsState { kNoWeights, kPending, kReady, kFailed };

struct RegisteredModel {
  std::string model_id;  // hex of `fingerprint`
  Digest fingerprint;
  Fingerprint weights_fingerprint;  // model fingerprint without page_tokens (FactorStore key)
  ModelConfig config;
  PageGeometry geometry;
  // Memory-mapped weights; null when the model was registered from a config alone.
  std::shared_ptr<const SafetensorsDir> weights;  // shared with the codec
  // Full mode from K and V: needs no weights, available at once.
  std::unique_ptr<const ModelCodec> full_codec;
  // Set once, when the first page of this model is put: that page is always verified.
  mutable std::atomic<bool> first_page_put{false};

  // The codec with the derived matrices once built; else null (use full_codec).
  std::shared_ptr<const ModelCodec> codec() const;
  FactorsState factors(std::string* detail = nullptr) const;
  // The codec every mode can use when ready, else full_codec.
  const ModelCodec& best_codec(std::shared_ptr<const ModelCodec>* hold) const;

 private:
  friend class ModelRegistry;
  mutable std::mutex mu_;
  std::shared_ptr<const ModelCodec> codec_;   // guarded by mu_
  FactorsState state_ = FactorsState::kNoWeights;  // guarded by mu_
  std::string detail_;                          // guarded by mu_
};

struct Registration {
  std::shared_ptr<const RegisteredModel> model;
  bool already_registered = false;
};

class ModelRegistry {
 public:
  // Pages larger than max_page_bytes (engine layout, fp32) are refused at registration, and so
  // is a new model beyond max_models (models are never unregistered). Derived matrices are
  // cached under `factor_dir` ("" caches nothing).
  ModelRegistry(uint64_t max_page_bytes, uint32_t max_models, std::string factor_dir = "",
                CodecOptions codec_options = {});
  // Stops the background builder (a build under way ends at its next layer).
  ~ModelRegistry();
  ModelRegistry(const ModelRegistry&) = delete;
  ModelRegistry& operator=(const ModelRegistry&) = delete;

  // Blocks until no codec build is queued or running (tests, benchmarks).
  void WaitForCodecs();

  // Registers the model in directory `dir` (config.json, optional *.safetensors).
  // NOT_FOUND: no config.json in dir. INVALID_ARGUMENT: dir not absolute, bad config, bad
  // safetensors, page_tokens not a power of two in [1, 4096], or pages over max_page_bytes; the
  // message names the field. RESOURCE_EXHAUSTED: max_models reached.
  [[nodiscard]] absl::StatusOr<Registration> RegisterDir(absl::string_view dir,
                                                         uint32_t page_tokens);
  // Registers from config.json text alone (no weights).
  [[nodiscard]] absl::StatusOr<Registration> RegisterConfig(absl::string_view config_json,
                                                            uint32_t page_tokens);

  // The model registered under `model_id` (64 hex digits); nullptr when none.
  std::shared_ptr<const RegisteredModel> Find(absl::string_view model_id) const;
  size_t size() const;

 private:
  [[nodiscard]] absl::StatusOr<Registration> Add(ModelConfig config,
                                                 std::unique_ptr<SafetensorsDir> weights,
                                                 uint32_t page_tokens);

  void BuildCodecs();

  const uint64_t max_page_bytes_;
  const uint32_t max_models_;
  const std::optional<FactorStore> factor_store_;
  const CodecOptions codec_options_;
  mutable std::mutex mu_;
  absl::flat_hash_map<std::string, std::shared_ptr<const RegisteredModel>> models_
      ABSL_GUARDED_BY(mu_);
  std::deque<std::shared_ptr<RegisteredModel>> to_build_ ABSL_GUARDED_BY(mu_);
  bool building_ ABSL_GUARDED_BY(mu_) = false;
  std::condition_variable work_cv_, idle_cv_;
  std::atomic<bool> stop_{false};
  std::thread builder_;  // started with the first model that has weights
};

}  // namespace slimkv::cache
