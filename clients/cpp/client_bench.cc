// client_bench: the C++ client's Put and Get throughput against a running slimkvd, the
// reference the Python client's benchmark (python -m slimkv.bench, docs/benchmarks.md) compares
// itself with on the same pages: `pages` distinct one-page prefixes of random bf16 K and V, each
// put in full (one Put per page), then all got back `rounds` times (one Get per page). Prints
// one line: "put_gbps GET_GBPS" of engine-layout bytes. Not a test.
//
//   client_bench TARGET MODEL_DIR PAGE_TOKENS PAGES ROUNDS SEED
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include "clients/cpp/slimkv_client.h"

namespace sc = slimkv::client;

int main(int argc, char** argv) {
  if (argc != 7) {
    std::fprintf(stderr, "usage: client_bench TARGET MODEL_DIR PAGE_TOKENS PAGES ROUNDS SEED\n");
    return 2;
  }
  const uint32_t page_tokens = std::atoi(argv[3]), pages = std::atoi(argv[4]);
  const int rounds = std::atoi(argv[5]);
  const uint32_t seed = std::atoi(argv[6]);
  auto client = sc::Client::Connect(argv[1], {.deadline_seconds = 600});
  auto model = client->RegisterModelDir(argv[2], page_tokens);
  if (!model.ok()) {
    std::fprintf(stderr, "register: %s\n", model.status().ToString().c_str());
    return 1;
  }
  std::mt19937 rng(seed);
  sc::PageData page{.dtype = slimkv::kernels::DType::kBF16};
  page.bytes.resize(model->PageElems() * 2);
  for (size_t i = 0; i < page.bytes.size(); i += 2) {  // finite bf16 values in [-2, 2)
    const uint16_t v = 0x3f80 + (rng() % 0x100) | ((rng() & 1) << 15);
    page.bytes[i] = v & 0xff;
    page.bytes[i + 1] = v >> 8;
  }
  std::vector<std::vector<uint32_t>> tokens(pages, std::vector<uint32_t>(page_tokens));
  for (auto& t : tokens) for (auto& x : t) x = rng() % 32000;
  using Clock = std::chrono::steady_clock;
  auto t0 = Clock::now();
  for (uint32_t p = 0; p < pages; ++p) {
    auto r = client->Put(*model, tokens[p], 0, {&page, 1}, {.mode = slimkv::v1::MODE_FULL,
                                                           .quant = slimkv::v1::QUANT_NONE});
    if (!r.ok()) {
      std::fprintf(stderr, "put: %s\n", r.status().ToString().c_str());
      return 1;
    }
  }
  const double put_s = std::chrono::duration<double>(Clock::now() - t0).count();
  t0 = Clock::now();
  for (int round = 0; round < rounds; ++round) {
    for (uint32_t p = 0; p < pages; ++p) {
      auto r = client->Get(*model, tokens[p], 0, std::nullopt, false);
      if (!r.ok() || r->size() != 1 || (*r)[0].bytes.size() != page.bytes.size()) {
        std::fprintf(stderr, "get: page %u missing or short\n", p);
        return 1;
      }
    }
  }
  const double get_s = std::chrono::duration<double>(Clock::now() - t0).count();
  for (uint32_t p = 0; p < pages; ++p) (void)client->Delete(*model, tokens[p], 0);
  const double bytes = double(page.bytes.size()) * pages;
  std::printf("%.4f %.4f\n", bytes / put_s / 1e9, bytes * rounds / get_s / 1e9);
  return 0;
}
