// Test helpers for cache/model: scratch directories and synthetic tensors.
//
// Thread-safety: external synchronization required (test code only).
#pragma once

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include "cache/model/safetensors.h"
#include "kernels/dtype.h"

namespace slimkv::cache::testing_util {

// A fresh directory under $TMPDIR, removed with its contents on destruction.
class ScratchDir {
 public:
  ScratchDir() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "slimkv-model-XXXXXX").string();
    path_ = ::mkdtemp(tmpl.data()) != nullptr ? tmpl : std::string();
  }
  ~ScratchDir() {
    std::error_code ec;
    if (!path_.empty()) std::filesystem::remove_all(path_, ec);
  }
  ScratchDir(const ScratchDir&) = delete;
  ScratchDir& operator=(const ScratchDir&) = delete;

  const std::string& path() const { return path_; }
  std::string File(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

// A tensor whose element i is `seed + (i % 256) / 1024`, encoded as `dtype` (exact in F16; in
// BF16 only for small seeds).
inline TensorToWrite Ramp(const std::string& name, std::vector<int64_t> shape,
                          kernels::DType dtype = kernels::DType::kF32, float seed = 0) {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  std::vector<float> values(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) values[i] = seed + static_cast<float>(i % 256) / 1024.0f;
  TensorToWrite t;
  t.name = name;
  t.dtype = dtype;
  t.shape = std::move(shape);
  t.data.resize(static_cast<size_t>(n) * kernels::DTypeSize(dtype));
  kernels::ConvertDType(values.data(), kernels::DType::kF32, t.data.data(), dtype,
                        static_cast<size_t>(n));
  return t;
}

}  // namespace slimkv::cache::testing_util
