// Registered models: the geometry, weights and page size each model_id stands for.
//
// Registration is idempotent: the same model directory (or config) with the same page size
// yields the same model_id, the hex of the registration fingerprint
//   SHA-256(model fingerprint (docs/model-fingerprint.md) ‖ page_tokens as uint32 LE),
// so page keys of two page sizes never meet. Models are never unregistered while the daemon
// runs.
//
// Thread-safety: internally synchronized; returned models are immutable.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "cache/model/model_config.h"
#include "cache/model/safetensors.h"
#include "cache/page.h"

namespace slimkv::cache {

struct RegisteredModel {
  std::string model_id;  // hex of `fingerprint`
  Digest fingerprint;
  ModelConfig config;
  PageGeometry geometry;
  // Memory-mapped weights; null when the model was registered from a config alone.
  std::unique_ptr<SafetensorsDir> weights;
};

struct Registration {
  std::shared_ptr<const RegisteredModel> model;
  bool already_registered = false;
};

class ModelRegistry {
 public:
  // Pages larger than max_page_bytes (engine layout, fp32) are refused at registration, and so
  // is a new model beyond max_models (models are never unregistered).
  ModelRegistry(uint64_t max_page_bytes, uint32_t max_models);

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

  const uint64_t max_page_bytes_;
  const uint32_t max_models_;
  mutable std::mutex mu_;
  absl::flat_hash_map<std::string, std::shared_ptr<const RegisteredModel>> models_
      ABSL_GUARDED_BY(mu_);
};

}  // namespace slimkv::cache
