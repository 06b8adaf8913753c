// quant_bench: encode and decode throughput of every quantizer on one page (256 tokens × 4096
// channels), fp32 and bf16, as a ratio to memcpy of the same uncompressed bytes in the same run.
//
//   quant_bench [--tokens N] [--channels N] [--reps N] [--ref]
//
// GB/s counts the uncompressed page (tokens × channels × dtype size) per second, for encode and
// decode alike. Each figure is the median of --reps timed runs after warm-up; --ref adds the
// scalar reference for comparison. Single-threaded.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "kernels/dtype.h"
#include "kernels/quant.h"

namespace slimkv::kernels {
namespace {

double MedianSeconds(int reps, const std::function<void()>& op) {
  for (int i = 0; i < 3; ++i) op();
  std::vector<double> t(reps);
  for (int i = 0; i < reps; ++i) {
    const auto start = std::chrono::steady_clock::now();
    op();
    t[i] = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  }
  std::nth_element(t.begin(), t.begin() + reps / 2, t.end());
  return t[reps / 2];
}

struct Format {
  const char* name;
  QuantParams params;
};

int Run(uint64_t tokens, uint64_t channels, int reps, bool with_ref) {
  const Format formats[] = {
      {"fp8 e4m3 /128", {QuantKind::kFp8E4M3, QuantAxis::kPerToken, 0}},
      {"int8 /64", {QuantKind::kInt8, QuantAxis::kPerToken, 0}},
      {"int4 /32 per-token", {QuantKind::kInt4, QuantAxis::kPerToken, 0}},
      {"int4 /32 per-channel", {QuantKind::kInt4, QuantAxis::kPerChannel, 0}},
  };
  const uint64_t n = tokens * channels;
  std::mt19937 rng(1);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> page(n);
  for (float& v : page) v = normal(rng);

  std::printf("page %llu tokens x %llu channels, fast path: %s, median of %d runs\n",
              static_cast<unsigned long long>(tokens), static_cast<unsigned long long>(channels),
              QuantCpuPath(), reps);
  std::printf("| format | input | B/token | encode GB/s | x memcpy | decode GB/s | x memcpy |\n");
  std::printf("|---|---|---|---|---|---|---|\n");
  for (DType t : {DType::kF32, DType::kBF16}) {
    const uint64_t bytes = n * DTypeSize(t);
    std::vector<uint8_t> src(bytes), out(bytes);
    ConvertDType(page.data(), DType::kF32, src.data(), t, n);
    const double memcpy_s = MedianSeconds(reps, [&] { std::memcpy(out.data(), src.data(), bytes); });
    const double memcpy_gbs = bytes / memcpy_s / 1e9;
    std::printf("| memcpy | %s | %llu | %.2f | 1.00 | %.2f | 1.00 |\n", DTypeName(t),
                static_cast<unsigned long long>(channels * DTypeSize(t)), memcpy_gbs, memcpy_gbs);
    for (const Format& f : formats) {
      std::vector<uint8_t> enc(QuantBytes(f.params, tokens, channels));
      for (bool ref : {false, true}) {
        if (ref && !with_ref) continue;
        const auto encode = ref ? QuantEncodeRef : QuantEncode;
        const auto decode = ref ? QuantDecodeRef : QuantDecode;
        const double enc_s = MedianSeconds(
            reps, [&] { encode(f.params, src.data(), t, tokens, channels, enc.data()); });
        const double dec_s = MedianSeconds(
            reps, [&] { decode(f.params, enc.data(), tokens, channels, out.data(), t); });
        std::printf("| %s%s | %s | %.1f | %.2f | %.2f | %.2f | %.2f |\n", f.name,
                    ref ? " (ref)" : "", DTypeName(t),
                    static_cast<double>(enc.size()) / static_cast<double>(tokens),
                    bytes / enc_s / 1e9, memcpy_s / enc_s, bytes / dec_s / 1e9, memcpy_s / dec_s);
      }
    }
  }
  return 0;
}

}  // namespace
}  // namespace slimkv::kernels

int main(int argc, char** argv) {
  uint64_t tokens = 256, channels = 4096;
  int reps = 51;
  bool with_ref = false;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    const bool has_value = i + 1 < argc;
    if (a == "--tokens" && has_value) {
      tokens = std::strtoull(argv[++i], nullptr, 10);
    } else if (a == "--channels" && has_value) {
      channels = std::strtoull(argv[++i], nullptr, 10);
    } else if (a == "--reps" && has_value) {
      reps = std::max(1, std::atoi(argv[++i]));
    } else if (a == "--ref") {
      with_ref = true;
    } else {
      std::fprintf(stderr, "usage: quant_bench [--tokens N] [--channels N] [--reps N] [--ref]\n");
      return 2;
    }
  }
  if (tokens == 0 || channels == 0) {
    std::fprintf(stderr, "quant_bench: --tokens and --channels must be positive\n");
    return 2;
  }
  return slimkv::kernels::Run(tokens, channels, reps, with_ref);
}
