// Read-only access to the tensors of a model directory in the safetensors format
// (https://github.com/huggingface/safetensors): one `model.safetensors`, or shards listed by
// `model.safetensors.index.json`. Files are memory-mapped; views point into the mappings.
//
// Thread-safety: SafetensorsDir is immutable after Open; all const methods are safe to call
// concurrently. Views stay valid while the SafetensorsDir lives.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "kernels/dtype.h"

namespace slimkv::cache {

// One tensor inside a mapped file. Does not own `data`.
struct TensorView {
  std::string name;
  kernels::DType dtype = kernels::DType::kF32;
  std::vector<int64_t> shape;
  const uint8_t* data = nullptr;  // little-endian elements, row-major; not necessarily aligned
  size_t bytes = 0;               // == prod(shape) * DTypeSize(dtype)

  int64_t num_elements() const;
};

class SafetensorsDir {
 public:
  // Opens `dir`: `model.safetensors.index.json` if present (every shard its weight_map names
  // is opened), else `model.safetensors`, else the single `*.safetensors` file in `dir`.
  // Every header is validated: header length sane (<= 100 MiB and inside the file), JSON
  // well formed, each entry with dtype/shape/data_offsets, offsets inside the data section,
  // size == prod(shape) * dtype size, no two tensors overlapping, names unique across shards.
  // NOT_FOUND when `dir` holds no safetensors file; INVALID_ARGUMENT naming the file (and the
  // tensor) when a file or the index is malformed; the errno-derived code when a file cannot
  // be opened or mapped.
  [[nodiscard]] static absl::StatusOr<std::unique_ptr<SafetensorsDir>> Open(
      const std::string& dir);

  // Opens one safetensors file (same validation as above).
  [[nodiscard]] static absl::StatusOr<std::unique_ptr<SafetensorsDir>> OpenFile(
      const std::string& path);

  ~SafetensorsDir();
  SafetensorsDir(const SafetensorsDir&) = delete;
  SafetensorsDir& operator=(const SafetensorsDir&) = delete;

  // The tensor `name`. NOT_FOUND when absent; INVALID_ARGUMENT naming the tensor when its
  // dtype is not F32, F16 or BF16 (SlimKV reads only those).
  [[nodiscard]] absl::StatusOr<TensorView> Find(absl::string_view name) const;
  bool Contains(absl::string_view name) const;

  // All tensor names, sorted.
  std::vector<std::string> Names() const;

  // `__metadata__` of the first file (string -> string), empty when absent.
  const std::map<std::string, std::string>& metadata() const { return metadata_; }

 private:
  struct Mapping;
  struct Entry {
    std::string dtype;  // safetensors dtype string, e.g. "BF16", "I64"
    std::vector<int64_t> shape;
    const uint8_t* data;
    size_t bytes;
  };
  SafetensorsDir();
  [[nodiscard]] absl::Status AddFile(const std::string& path);

  // Constant after construction.
  std::vector<std::unique_ptr<Mapping>> mappings_;
  std::map<std::string, Entry, std::less<>> entries_;
  std::map<std::string, std::string> metadata_;
};

// A tensor to write: `data` holds prod(shape) elements of `dtype`, little-endian, row-major.
struct TensorToWrite {
  std::string name;
  kernels::DType dtype = kernels::DType::kF32;
  std::vector<int64_t> shape;
  std::string data;
};

// Writes `tensors` as one safetensors file at `path` (header padded with spaces to a multiple
// of 8, data in the given order). INVALID_ARGUMENT when a tensor's data size does not match its
// shape or a name repeats; the errno-derived code when the file cannot be written.
[[nodiscard]] absl::Status WriteSafetensors(
    const std::string& path, const std::vector<TensorToWrite>& tensors,
    const std::map<std::string, std::string>& metadata = {});

// Writes `model.safetensors.index.json` in `dir` mapping each tensor name to its shard file
// name (relative to `dir`). Used by tests and the demo to build sharded checkpoints.
[[nodiscard]] absl::Status WriteSafetensorsIndex(
    const std::string& dir, const std::map<std::string, std::string>& weight_map);

// safetensors dtype string for a DType: "F32", "F16", "BF16".
const char* SafetensorsDTypeName(kernels::DType t);

}  // namespace slimkv::cache
