// On-disk cache of per-layer matrices derived from a model's weights (spectra, condition
// numbers, factorizations), keyed by model fingerprint, so that a restart never repeats a
// factorization that took seconds to minutes per layer.
//
// Layout: ROOT/<fingerprint, 64 hex>/layer-<layer>.<name>.f64, one file per (layer, name):
//   "SKVF" | u32 version (1) | u32 layer | u32 len(name) | name | u64 count
//   | count × f64 | u32 CRC32C of every byte before it            (all little-endian)
// Files are written to a temporary name and renamed, so a reader sees a whole file or none.
//
// Thread-safety: immutable after construction; concurrent Get/Put are safe (a concurrent Put
// of the same entry leaves one of the two whole files).
#pragma once

#include <string>
#include <vector>

#include "absl/functional/function_ref.h"

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "cache/model/attention_weights.h"
#include "kernels/kv_projection.h"
#include "kernels/layer_factors.h"

namespace slimkv::cache {

class FactorStore {
 public:
  // `root` need not exist yet; Put creates it.
  explicit FactorStore(std::string root) : root_(std::move(root)) {}

  // The values stored for (model, layer, name). NOT_FOUND when absent; DATA_LOSS when the file
  // is truncated, its header disagrees with the key, or its checksum fails (the caller
  // recomputes and Puts again, which replaces it).
  [[nodiscard]] absl::StatusOr<std::vector<double>> Get(const Fingerprint& model, uint32_t layer,
                                                        absl::string_view name) const;

  // Stores `values` for (model, layer, name), replacing what was there. `name` is
  // [A-Za-z0-9_-]+ (INVALID_ARGUMENT otherwise); the errno-derived code on I/O failure.
  [[nodiscard]] absl::Status Put(const Fingerprint& model, uint32_t layer, absl::string_view name,
                                 const std::vector<double>& values) const;

  // Whether a file of the right size for `count` values of (model, layer, name) is there: a
  // stat, not a read, so the checksum is checked only by Get. For deciding that an entry need
  // not be recomputed now.
  bool Holds(const Fingerprint& model, uint32_t layer, absl::string_view name,
             uint64_t count) const;

  // The file that holds (model, layer, name).
  std::string PathOf(const Fingerprint& model, uint32_t layer, absl::string_view name) const;

 private:
  const std::string root_;  // constant after construction
};

// The values of (model, layer, name) from `store` when it holds a whole entry of
// `expect_count` values (0: any count), else `compute()`'s, which are then stored. A failed
// write only costs a recomputation next time. `store` may be null (nothing is cached);
// `from_cache` (may be null) says which happened. Fails as `compute` does.
[[nodiscard]] absl::StatusOr<std::vector<double>> GetOrCompute(
    const FactorStore* store, const Fingerprint& model, uint32_t layer, absl::string_view name,
    size_t expect_count, absl::FunctionRef<absl::StatusOr<std::vector<double>>()> compute,
    bool* from_cache = nullptr);

// κ(W_K), κ(W_V), κ([W_K W_V]) and the joint spectrum of layer `layer`
// (kernels::AnalyzeConditioning), through GetOrCompute under the name "conditioning". When it
// is computed rather than read and `joint_svd` is not null, the joint SVD comes out of the same
// eigensolve into *joint_svd (empty when it could not: see AnalyzeConditioning).
[[nodiscard]] absl::StatusOr<kernels::Conditioning> CachedConditioning(
    const FactorStore* store, const Fingerprint& model, uint32_t layer,
    const kernels::KvProjection& projection, bool* from_cache = nullptr,
    kernels::JointSvd* joint_svd = nullptr);

}  // namespace slimkv::cache
