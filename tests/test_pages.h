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
#include "clients/cpp/synthetic_model.h"
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

// Pages of `tokens` as an engine running `model` would cache them: per layer K and V computed
// from random layer inputs x, in fp32, so that every mode the model takes reconstructs them.
inline std::vector<client::PageData> EnginePages(const client::SyntheticModel& model,
                                                 const client::ModelHandle& m,
                                                 std::span<const uint32_t> tokens, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<double> normal(0, 1);
  std::vector<client::PageData> pages(tokens.size() / m.page_tokens);
  for (uint32_t p = 0; p < pages.size(); ++p) {
    std::vector<int32_t> positions(m.page_tokens);
    for (uint32_t t = 0; t < m.page_tokens; ++t) positions[t] = p * m.page_tokens + t;
    std::vector<float> sent;
    for (uint32_t l = 0; l < m.num_layers; ++l) {
      std::vector<double> x(m.page_tokens * model.hidden_size);
      for (double& v : x) v = normal(rng);
      const client::SyntheticModel::Kv kv = model.EngineKvFromX(l, x, positions);
      sent.insert(sent.end(), kv.k.begin(), kv.k.end());
      sent.insert(sent.end(), kv.v.begin(), kv.v.end());
    }
    pages[p].dtype = kernels::DType::kF32;
    pages[p].bytes.resize(sent.size() * sizeof(float));
    std::memcpy(pages[p].bytes.data(), sent.data(), pages[p].bytes.size());
  }
  return pages;
}

// Registers the model in `dir` and waits (at most 30 s) until its derived matrices are ready,
// so that puts in every mode it takes are stored as asked.
inline absl::StatusOr<client::ModelHandle> RegisterWithFactors(client::Client& c,
                                                               const std::string& dir,
                                                               uint32_t page_tokens) {
  for (int i = 0; i < 600; ++i) {
    auto m = c.RegisterModelDir(dir, page_tokens);
    if (!m.ok() || m->factors == v1::RegisterModelResponse::FACTORS_READY) return m;
    if (m->factors != v1::RegisterModelResponse::FACTORS_PENDING) {
      return absl::FailedPreconditionError(
          absl::StrCat("factors ", v1::RegisterModelResponse::Factors_Name(m->factors)));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));  // polling the daemon's state
  }
  return absl::DeadlineExceededError("factors never became ready");
}

inline std::vector<uint32_t> Tokens(uint32_t seed, size_t n) {
  std::mt19937 rng(seed);
  std::vector<uint32_t> t(n);
  for (auto& x : t) x = rng() % 32000;
  return t;
}

}  // namespace slimkv::testing
