// quant_bench: encode and decode throughput of every quantizer on one page (256 tokens × 4096
// channels), fp32 and bf16, as a ratio to memcpy of the same uncompressed bytes in the same run.
//
//   quant_bench [--tokens N] [--channels N] [--pages N] [--reps N] [--best] [--cpu] [--ref]
//
// GB/s counts the uncompressed page (tokens × channels × dtype size) per second, for encode and
// decode alike. Each figure is the median of --reps timed runs after warm-up (--best: the
// fastest run, for a machine shared with other work, where the median measures the neighbours
// as much as the code; memcpy is timed the same way, so ratios stay like for like; --cpu: time
// on this thread's CPU clock, which leaves out the time the scheduler gave other processes,
// though not their use of the shared caches); --ref adds the
// scalar reference for comparison. --pages N (default 1) cycles through N distinct pages so that
// with N large the pages come from DRAM rather than cache, for memcpy and the quantizers alike.
// Single-threaded.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "kernels/dtype.h"
#include "kernels/quant.h"

namespace slimkv::kernels {
namespace {

bool g_best = false;
bool g_cpu_clock = false;

double Now() {
  if (g_cpu_clock) {
    timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return static_cast<double>(ts.tv_sec) + 1e-9 * static_cast<double>(ts.tv_nsec);
  }
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

double MedianSeconds(int reps, uint64_t pages, const std::function<void(uint64_t)>& op) {
  for (uint64_t i = 0; i < std::min<uint64_t>(pages, 3); ++i) op(i);
  std::vector<double> t(reps);
  for (int i = 0; i < reps; ++i) {
    const double start = Now();
    op(i % pages);
    t[i] = Now() - start;
  }
  if (g_best) return *std::min_element(t.begin(), t.end());
  std::nth_element(t.begin(), t.begin() + reps / 2, t.end());
  return t[reps / 2];
}

struct Format {
  const char* name;
  QuantParams params;
};

int Run(uint64_t tokens, uint64_t channels, uint64_t pages, int reps, bool with_ref) {
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

  std::printf("page %llu tokens x %llu channels, %llu distinct page(s), fast path: %s, %s of %d runs%s\n",
              static_cast<unsigned long long>(tokens), static_cast<unsigned long long>(channels),
              static_cast<unsigned long long>(pages), QuantCpuPath(), g_best ? "best" : "median", reps,
              g_cpu_clock ? ", thread CPU time" : "");
  std::printf("| format | input | B/token | encode GB/s | x memcpy | decode GB/s | x memcpy |\n");
  std::printf("|---|---|---|---|---|---|---|\n");
  for (DType t : {DType::kF32, DType::kBF16}) {
    const uint64_t bytes = n * DTypeSize(t);
    std::vector<uint8_t> src(bytes * pages), out(bytes * pages);
    for (uint64_t i = 0; i < pages; ++i) ConvertDType(page.data(), DType::kF32, &src[i * bytes], t, n);
    const double memcpy_s = MedianSeconds(
        reps, pages, [&](uint64_t i) { std::memcpy(&out[i * bytes], &src[i * bytes], bytes); });
    const double memcpy_gbs = bytes / memcpy_s / 1e9;
    std::printf("| memcpy | %s | %llu | %.2f | 1.00 | %.2f | 1.00 |\n", DTypeName(t),
                static_cast<unsigned long long>(channels * DTypeSize(t)), memcpy_gbs, memcpy_gbs);
    for (const Format& f : formats) {
      const uint64_t enc_bytes = QuantBytes(f.params, tokens, channels);
      std::vector<uint8_t> enc(enc_bytes * pages);
      for (bool ref : {false, true}) {
        if (ref && !with_ref) continue;
        const auto encode = ref ? QuantEncodeRef : QuantEncode;
        const auto decode = ref ? QuantDecodeRef : QuantDecode;
        const double enc_s = MedianSeconds(reps, pages, [&](uint64_t i) {
          encode(f.params, &src[i * bytes], t, tokens, channels, &enc[i * enc_bytes]);
        });
        const double dec_s = MedianSeconds(reps, pages, [&](uint64_t i) {
          decode(f.params, &enc[i * enc_bytes], tokens, channels, &out[i * bytes], t);
        });
        std::printf("| %s%s | %s | %.1f | %.2f | %.2f | %.2f | %.2f |\n", f.name,
                    ref ? " (ref)" : "", DTypeName(t),
                    static_cast<double>(enc_bytes) / static_cast<double>(tokens),
                    bytes / enc_s / 1e9, memcpy_s / enc_s, bytes / dec_s / 1e9, memcpy_s / dec_s);
      }
    }
  }
  return 0;
}

}  // namespace
}  // namespace slimkv::kernels

int main(int argc, char** argv) {
  uint64_t tokens = 256, channels = 4096, pages = 1;
  int reps = 51;
  bool with_ref = false;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    const bool has_value = i + 1 < argc;
    if (a == "--tokens" && has_value) {
      tokens = std::strtoull(argv[++i], nullptr, 10);
    } else if (a == "--channels" && has_value) {
      channels = std::strtoull(argv[++i], nullptr, 10);
    } else if (a == "--pages" && has_value) {
      pages = std::strtoull(argv[++i], nullptr, 10);
    } else if (a == "--reps" && has_value) {
      reps = std::max(1, std::atoi(argv[++i]));
    } else if (a == "--cpu") {
      slimkv::kernels::g_cpu_clock = true;
    } else if (a == "--best") {
      slimkv::kernels::g_best = true;
    } else if (a == "--ref") {
      with_ref = true;
    } else {
      std::fprintf(stderr, "usage: quant_bench [--tokens N] [--channels N] [--pages N] [--reps N] [--best] [--cpu] [--ref]\n");
      return 2;
    }
  }
  if (tokens == 0 || channels == 0 || pages == 0) {
    std::fprintf(stderr, "quant_bench: --tokens, --channels and --pages must be positive\n");
    return 2;
  }
  return slimkv::kernels::Run(tokens, channels, pages, reps, with_ref);
}
