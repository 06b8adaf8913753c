// Pages that agree with a synthetic model's weights, for end-to-end tests of the lossless modes:
// K and V computed from random layer inputs x exactly as the engine would (SyntheticModel's
// float64 reference), and the error of what a Get returned against them.
#pragma once

#include <chrono>
#include <cmath>
#include <cstring>
#include <random>
#include <span>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <gtest/gtest.h>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "clients/cpp/slimkv_client.h"
#include "tests/support/synthetic_model.h"

namespace slimkv::testing {

// A small 2-layer synthetic model (SyntheticModel::Small).
inline client::SyntheticModel Make(std::string arch, uint32_t d, uint32_t heads,
                                   uint32_t kv_heads, uint32_t head_dim) {
  return client::SyntheticModel::Small(std::move(arch), d, heads, kv_heads, head_dim);
}

// A geometry of a suite and the (mode, input) cases it takes.
struct Geometry {
  const char* name;
  client::SyntheticModel model;
  std::vector<std::pair<v1::Mode, v1::PageInput>> cases;
};

inline std::vector<double> RandomNormal(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<double> normal(0, 1);
  std::vector<double> v(n);
  for (double& x : v) x = normal(rng);
  return v;
}

inline std::vector<uint8_t> Fp32Bytes(const std::vector<double>& v) {
  std::vector<uint8_t> out(v.size() * 4);
  for (size_t i = 0; i < v.size(); ++i) {
    const float f = static_cast<float>(v[i]);
    std::memcpy(out.data() + 4 * i, &f, 4);
  }
  return out;
}

// Relative Frobenius error of `got` (want.size() floats) against `want`.
inline double RelErr(const float* got, const std::vector<double>& want) {
  double diff = 0, ref = 0;
  for (size_t i = 0; i < want.size(); ++i) {
    diff += (got[i] - want[i]) * (got[i] - want[i]);
    ref += want[i] * want[i];
  }
  return std::sqrt(diff / ref);
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

// Writes `model` into dir/name and registers it with its factors ready (RegisterWithFactors).
inline absl::StatusOr<client::ModelHandle> WriteAndRegister(client::Client& c,
                                                            const std::string& dir,
                                                            const std::string& name,
                                                            const client::SyntheticModel& model,
                                                            uint32_t page_tokens) {
  const std::string path = absl::StrCat(dir, "/", name);
  if (absl::Status s = model.Write(path); !s.ok()) return s;
  return RegisterWithFactors(c, path, page_tokens);
}

// Page `page` of a prompt in the engine layout (fp32 K, V per layer), computed from random x
// drawn from `seed`, and the float64 K, V it was made from.
struct EnginePage {
  client::PageData data;
  std::vector<client::SyntheticModel::Kv> kv;  // per layer
};

inline EnginePage KvPageFromX(const client::SyntheticModel& model, const client::ModelHandle& m,
                              uint32_t page, uint32_t seed) {
  std::vector<int32_t> positions(m.page_tokens);
  for (uint32_t t = 0; t < m.page_tokens; ++t) positions[t] = page * m.page_tokens + t;
  EnginePage out;
  std::vector<double> sent;
  for (uint32_t l = 0; l < m.num_layers; ++l) {
    const auto x = RandomNormal(size_t{m.page_tokens} * model.hidden_size, seed * 1000 + l);
    out.kv.push_back(model.EngineKvFromX(l, x, positions));
    sent.insert(sent.end(), out.kv.back().k.begin(), out.kv.back().k.end());
    sent.insert(sent.end(), out.kv.back().v.begin(), out.kv.back().v.end());
  }
  out.data.dtype = kernels::DType::kF32;
  out.data.bytes = Fp32Bytes(sent);
  return out;
}

// The whole pages of `tokens` as KvPageFromX makes them.
inline std::vector<client::PageData> EnginePages(const client::SyntheticModel& model,
                                                 const client::ModelHandle& m,
                                                 std::span<const uint32_t> tokens, uint32_t seed) {
  std::vector<client::PageData> pages;
  for (uint32_t p = 0; p < tokens.size() / m.page_tokens; ++p) {
    pages.push_back(KvPageFromX(model, m, p, seed * 64 + p).data);
  }
  return pages;
}

// Largest relative error over the layers' K and V of a page got back in fp32.
inline double PageError(const client::PageData& got, const client::ModelHandle& m,
                        const EnginePage& want) {
  double worst = 0;
  for (uint32_t l = 0; l < m.num_layers; ++l) {
    for (auto role : {v1::TENSOR_ROLE_K, v1::TENSOR_ROLE_V}) {
      const float* p = reinterpret_cast<const float*>(
          got.bytes.data() + m.TensorOffset(l, role, kernels::DType::kF32));
      worst = std::max(worst, RelErr(p, role == v1::TENSOR_ROLE_K ? want.kv[l].k : want.kv[l].v));
    }
  }
  return worst;
}

}  // namespace slimkv::testing
