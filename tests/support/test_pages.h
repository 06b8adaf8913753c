// Deterministic page contents for end-to-end tests: page p of a prompt is a function of the
// prompt's tokens up to the end of page p, as real KV is, so shared prefixes share pages.
#pragma once

#include <chrono>
#include <cstdint>
#include <cstring>
#include <random>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "clients/cpp/slimkv_client.h"
#include "tests/support/synthetic_model.h"
#include "kernels/dtype.h"

namespace slimkv::testing {

inline client::PageData MakePage(const client::ModelHandle& m, std::span<const uint32_t> tokens,
                                 uint32_t page, kernels::DType dtype = kernels::DType::kBF16) {
  uint64_t seed = 1469598103934665603ull;
  for (size_t i = 0; i < size_t{page + 1} * m.page_tokens; ++i) seed = (seed ^ tokens[i]) * 1099511628211ull;
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> normal(0.0f, 2.0f);
  std::vector<float> values(m.PageElems());
  for (float& v : values) v = normal(rng);
  client::PageData out;
  out.dtype = dtype;
  out.bytes.resize(values.size() * kernels::DTypeSize(dtype));
  kernels::ConvertDType(values.data(), kernels::DType::kF32, out.bytes.data(), dtype, values.size());
  return out;
}

inline std::vector<client::PageData> MakePages(const client::ModelHandle& m,
                                               std::span<const uint32_t> tokens,
                                               uint32_t first_page = 0,
                                               kernels::DType dtype = kernels::DType::kBF16) {
  std::vector<client::PageData> pages;
  for (uint32_t p = first_page; p < tokens.size() / m.page_tokens; ++p) pages.push_back(MakePage(m, tokens, p, dtype));
  return pages;
}

inline std::vector<uint32_t> Tokens(uint32_t seed, size_t n) {
  std::mt19937 rng(seed);
  std::vector<uint32_t> t(n);
  for (auto& x : t) x = rng() % 32000;
  return t;
}

}  // namespace slimkv::testing
