// GPU decode-attention benchmark (needs a GPU; prints why not and exits 0 without one).
//
// For each geometry and context length: one decode step's attention of one sequence, through
// the kernels/gpu.h ops as the daemon calls them (q in, o and lse out, pages already in device
// memory in bf16), median of 20 timed calls after 3 warm-ups, host clock around each call.
// Figures are ratios to what this same run measures: the device-to-device copy bandwidth (bytes
// read + written by cudaMemcpy of 2 GiB) and, for slim and latent, full attention on the
// engine's K and V of the same tokens. PyTorch's scaled_dot_product_attention on those K, V is
// timed by ops/gpu_sdpa_bench.py in the same device call (ops/gpu-check.sh).
//
// Then reconstruction (Get): slim K, V of Llama-2-7B-like pages and MLA K, V of DeepSeek-like
// pages into bf16, page by page (256 tokens), with the GEMMs' FLOP/s and the bytes moved against
// the copy bandwidth; ops/gpu_sdpa_bench.py times cuBLAS (torch.matmul, float32 and bf16) plus a
// separate RoPE on the same shapes.
//
// Usage: gpu_bench [tokens...]   (default 4096 32768 131072)
#include <cuda_runtime.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "kernels/gpu.h"
#include "kernels/rope.h"

namespace slimkv::kernels::gpu {
namespace {

constexpr int kPageTokens = 256;

template <class F>
double MedianSeconds(F call) {
  for (int i = 0; i < 3; ++i) call();
  std::vector<double> t;
  for (int i = 0; i < 20; ++i) {
    const auto a = std::chrono::steady_clock::now();
    call();
    t.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - a).count());
  }
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

// Bytes per second of a 2 GiB device-to-device copy, counting bytes read plus written.
double CopyBandwidth() {
  const size_t bytes = size_t{2} << 30;
  void *a = nullptr, *b = nullptr;
  if (cudaMalloc(&a, bytes) != cudaSuccess || cudaMalloc(&b, bytes) != cudaSuccess) return 0;
  cudaMemset(a, 1, bytes);
  const double s = MedianSeconds([&] {
    cudaMemcpy(b, a, bytes, cudaMemcpyDeviceToDevice);
    cudaDeviceSynchronize();
  });
  cudaFree(a);
  cudaFree(b);
  return 2.0 * bytes / s;
}

// bf16 pages of `cols` columns covering `tokens` tokens, in device memory: one page of random
// values uploaded into every page's own buffer (what is read differs in place, not in value).
struct Pages {
  std::vector<DeviceBuffer> buffers;
  std::vector<DevicePage> pages;
  Pages(int64_t tokens, int64_t cols) {
    std::mt19937 rng(1);
    std::normal_distribution<float> n(0.0f, 1.0f);
    std::vector<uint16_t> host(size_t{kPageTokens} * cols);
    for (uint16_t& h : host) {
      const float v = n(rng);
      uint32_t bits;
      std::memcpy(&bits, &v, 4);
      h = static_cast<uint16_t>(bits >> 16);
    }
    for (int64_t at = 0; at < tokens; at += kPageTokens) {
      absl::StatusOr<DeviceBuffer> b = DeviceBuffer::Allocate(2 * host.size());
      if (!b.ok() || !b->Upload(host.data(), 2 * host.size()).ok()) std::abort();
      pages.push_back({b->data(), DType::kBF16, kPageTokens, static_cast<int32_t>(at)});
      buffers.push_back(*std::move(b));
    }
  }
};

std::vector<float> Random(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> d(0.0f, 0.05f);
  std::vector<float> v(n);
  for (float& x : v) x = d(rng);
  return v;
}

void Check(const absl::Status& s, const char* what) {
  if (s.ok()) return;
  std::fprintf(stderr, "%s: %s\n", what, std::string(s.message()).c_str());
  std::exit(1);
}

void Row(const char* name, int64_t tokens, double seconds, double bytes, double copy_bw,
         double full_seconds) {
  char vs_full[16] = "—";
  if (full_seconds > 0) std::snprintf(vs_full, sizeof vs_full, "%.2f", full_seconds / seconds);
  std::printf("| %-34s | %7lld | %9.1f | %8.1f | %5.2f | %s |\n", name,
              static_cast<long long>(tokens), seconds * 1e6, bytes / seconds / 1e9,
              bytes / seconds / copy_bw, vs_full);
}

// A Llama-2-7B-like slim layer (32 heads × 128, MHA, e = 4096; random W_KV) with its device
// copy, RoPE covering `positions`.
struct LlamaSlim {
  static constexpr int kHeads = 32, kHeadDim = 128, kE = kHeads * kHeadDim;
  RopeTable rope;
  std::vector<float> w_kv = Random(size_t{kE} * kE, 3), w = Random(size_t{kE} * kE, 4);
  KvCodecLayer l;
  std::unique_ptr<DeviceLayer> device;

  explicit LlamaSlim(int64_t positions) : rope(MakeRope()) {
    l.proj = {kE, kHeads, kHeadDim, w.data(), w.data(), nullptr, nullptr};
    l.rope = &rope;
    l.w_kv = w_kv.data();
    absl::StatusOr<std::unique_ptr<DeviceLayer>> d =
        DeviceLayer::ForSlim(l, static_cast<int32_t>(positions));
    Check(d.status(), "slim layer");
    device = *std::move(d);
  }
  static RopeTable MakeRope() {
    RopeParams rp;
    rp.head_dim = kHeadDim;
    rp.rotary_dim = kHeadDim;
    absl::StatusOr<RopeTable> r = RopeTable::Create(rp);
    Check(r.status(), "rope");
    return *std::move(r);
  }
};

// A DeepSeek-V2/V3-like MLA layer: 128 heads, latent 512 + shared rope 64, k_head_dim 192,
// v_head_dim 128 (random W_UK, W_UV), with its device copy.
struct DeepSeekLatent {
  std::vector<float> w_uk = Random(size_t{512} * 128 * 128, 5);
  std::vector<float> w_uv = Random(size_t{512} * 128 * 128, 6);
  LatentLayout l;
  std::unique_ptr<DeviceLayer> device;

  DeepSeekLatent() {
    l.heads = 128;
    l.d_c = 512;
    l.k_head_dim = 192;
    l.v_head_dim = 128;
    l.rope_dim = 64;
    l.shared_rope = true;
    l.w_uk = w_uk.data();
    l.w_uv = w_uv.data();
    absl::StatusOr<std::unique_ptr<DeviceLayer>> d = DeviceLayer::ForLatent(l);
    Check(d.status(), "latent layer");
    device = *std::move(d);
  }
};

// Llama-2-7B-like: 32 heads × 128, MHA; slim stores K_raw only (e = 4096).
void Llama(int64_t tokens, double copy_bw) {
  const int h = 32, dh = 128, e = h * dh;
  const AttentionParams p{h, 1.0 / std::sqrt(128.0), 0.0};
  const std::vector<float> q = Random(size_t{h} * dh, 2);
  std::vector<float> o(size_t{h} * dh), lse(h);
  Pages full(tokens, 2 * e);
  const double t_full = MedianSeconds([&] {
    Check(AttendFull({h, dh, dh}, full.pages, q.data(), p, {o.data(), lse.data()}), "full");
  });
  Row("llama2-7b full (K+V bf16)", tokens, t_full, 2.0 * tokens * 2 * e, copy_bw, 0);
  full = Pages(0, 0);

  const LlamaSlim slim_layer(tokens);
  Pages slim(tokens, e);
  const double t_slim = MedianSeconds([&] {
    Check(AttendSlim(slim_layer.l, *slim_layer.device, slim.pages, q.data(), p,
                     {o.data(), lse.data()}),
          "slim");
  });
  Row("llama2-7b slim (K_raw bf16)", tokens, t_slim, 2.0 * tokens * e, copy_bw, t_full);
}

// DeepSeek-V2/V3-like: 128 heads, latent 512 + shared rope 64, k_head_dim 192, v_head_dim 128.
void DeepSeek(int64_t tokens, double copy_bw) {
  const DeepSeekLatent m;
  const AttentionParams p{128, 1.0 / std::sqrt(192.0), 0.0};
  const std::vector<float> q = Random(size_t{128} * 192, 7);
  std::vector<float> o(size_t{128} * 128), lse(128);
  Pages latent(tokens, m.l.stored_elems());
  const double t_latent = MedianSeconds([&] {
    Check(AttendLatent(m.l, *m.device, latent.pages, q.data(), p, {o.data(), lse.data()}),
          "latent");
  });
  latent = Pages(0, 0);
  // The same attention on reconstructed K [T, 128, 192] and V [T, 128, 128] (full mode).
  Pages full(tokens, 128 * (192 + 128));
  const double t_full = MedianSeconds([&] {
    Check(AttendFull({128, 192, 128}, full.pages, q.data(), p, {o.data(), lse.data()}), "full");
  });
  Row("deepseek full (K 192 + V 128, bf16)", tokens, t_full, 2.0 * tokens * 128 * 320, copy_bw, 0);
  Row("deepseek latent (576 bf16)", tokens, t_latent, 2.0 * tokens * 576, copy_bw, t_full);
}

// Reconstruction (Get) of one page of `tokens` tokens into bf16 K and V: FLOP/s of its GEMMs
// and bytes moved (stored rows read, K and V written) against the copy bandwidth.
void RecRow(const char* name, int64_t tokens, double seconds, double flop, double bytes,
            double copy_bw) {
  std::printf("| %-34s | %7lld | %9.1f | %8.1f | %8.1f | %5.2f |\n", name,
              static_cast<long long>(tokens), seconds * 1e6, flop / seconds / 1e12,
              bytes / seconds / 1e9, bytes / seconds / copy_bw);
}

void ReconstructLlama(int64_t tokens, double copy_bw) {
  const int e = LlamaSlim::kE;
  const LlamaSlim m(tokens);
  Pages in(tokens, e);
  absl::StatusOr<DeviceBuffer> k = DeviceBuffer::Allocate(size_t{2} * tokens * e);
  absl::StatusOr<DeviceBuffer> v = DeviceBuffer::Allocate(size_t{2} * tokens * e);
  Check(k.status(), "k");
  Check(v.status(), "v");
  const double t = MedianSeconds([&] {
    for (const DevicePage& page : in.pages) {
      const size_t at = size_t{2} * page.first_position * e;
      Check(DecodeSlim(m.l, *m.device, page, DType::kBF16, static_cast<char*>(k->data()) + at,
                       static_cast<char*>(v->data()) + at),
            "slim decode");
    }
  });
  RecRow("recon llama2-7b slim (bf16→bf16)", tokens, t, 2.0 * tokens * e * e,
         2.0 * tokens * e * 3, copy_bw);
}

void ReconstructDeepSeek(int64_t tokens, double copy_bw) {
  const DeepSeekLatent m;
  Pages in(tokens, m.l.stored_elems());
  const size_t nk = size_t{128} * 192, nv = size_t{128} * 128;  // per token
  absl::StatusOr<DeviceBuffer> k = DeviceBuffer::Allocate(2 * nk * tokens);
  absl::StatusOr<DeviceBuffer> v = DeviceBuffer::Allocate(2 * nv * tokens);
  Check(k.status(), "k");
  Check(v.status(), "v");
  const double t = MedianSeconds([&] {
    for (const DevicePage& page : in.pages) {
      Check(DecodeLatent(m.l, *m.device, page, DType::kBF16,
                         static_cast<char*>(k->data()) + 2 * nk * page.first_position,
                         static_cast<char*>(v->data()) + 2 * nv * page.first_position),
            "latent decode");
    }
  });
  RecRow("recon deepseek latent (bf16→bf16)", tokens, t, 2.0 * tokens * 512 * 128 * 256,
         2.0 * tokens * (576 + nk + nv), copy_bw);
}

}  // namespace
}  // namespace slimkv::kernels::gpu

int main(int argc, char** argv) {
  using namespace slimkv::kernels::gpu;
  const DeviceInfo& d = Device();
  if (!d.usable) {
    std::printf("gpu_bench: no usable GPU (%s); nothing measured\n", d.reason.c_str());
    return 0;
  }
  if (absl::Status s = SelfTest(); !s.ok()) {
    std::printf("gpu_bench: self-test failed: %s\n", std::string(s.message()).c_str());
    return 1;
  }
  std::vector<int64_t> tokens;
  for (int i = 1; i < argc; ++i) tokens.push_back(std::atoll(argv[i]));
  if (tokens.empty()) tokens = {4096, 32768, 131072};
  const double copy_bw = CopyBandwidth();
  std::printf("%s, %d SMs; device-to-device copy %.0f GB/s (read + write)\n\n", d.name.c_str(),
              d.sm_count, copy_bw / 1e9);
  std::printf("| %-34s | %7s | %9s | %8s | %5s | %s |\n", "one decode step, one sequence", "tokens",
              "µs", "GB/s", "×copy", "×full");
  std::printf("|---|---|---|---|---|---|\n");
  for (int64_t t : tokens) {
    Llama(t, copy_bw);
    DeepSeek(t, copy_bw);
  }
  std::printf("\n| %-34s | %7s | %9s | %8s | %8s | %5s |\n", "reconstruction, pages of 256",
              "tokens", "µs", "TFLOP/s", "GB/s", "×copy");
  std::printf("|---|---|---|---|---|---|\n");
  for (int64_t t : tokens) {
    ReconstructLlama(t, copy_bw);
    ReconstructDeepSeek(t, copy_bw);
  }
  return 0;
}
