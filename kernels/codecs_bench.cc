// codecs_bench: CPU throughput of the codec fast paths on one Llama-2-7B layer
// (d = 4096, 32 KV heads × 128, one 256-token page), in fp32 and bf16, against memcpy of the
// same logical bytes and against the bare OpenBLAS sgemm(s) each op is built on, all timed in
// the same run; then the per-layer factorizations ([W_K W_V] SVD, W_KV solve).
//
// Usage: codecs_bench [--tokens N] [--rank R] [--reps N] [--no-factor]
// Weights are synthetic (Gaussian / √d): speed does not depend on their values.
#include <cblas.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "kernels/codecs.h"
#include "kernels/layer_factors.h"

namespace slimkv::kernels {
namespace {

using Clock = std::chrono::steady_clock;

// Best of `reps` runs after one warm-up, in seconds.
double Time(int reps, const std::function<void()>& fn) {
  fn();
  double best = 1e30;
  for (int i = 0; i < reps; ++i) {
    const auto t0 = Clock::now();
    fn();
    best = std::min(best, std::chrono::duration<double>(Clock::now() - t0).count());
  }
  return best;
}

double TimeOnce(const std::function<void()>& fn) {
  const auto t0 = Clock::now();
  fn();
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

std::vector<float> Gaussian(std::mt19937_64& rng, size_t n, double scale) {
  std::normal_distribution<float> g(0.0f, static_cast<float>(scale));
  std::vector<float> v(n);
  for (float& x : v) x = g(rng);
  return v;
}

struct Gemm {
  int m, n, k;
};

void Check(const absl::Status& s, const char* what) {
  if (!s.ok()) {
    std::fprintf(stderr, "%s: %s\n", what, s.ToString().c_str());
    std::exit(1);
  }
}

int Main(int argc, char** argv) {
  int tokens = 256, rank = 1024, reps = 5;
  bool factor = true, exact = false;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--tokens" && i + 1 < argc) tokens = std::atoi(argv[++i]);
    else if (a == "--rank" && i + 1 < argc) rank = std::atoi(argv[++i]);
    else if (a == "--reps" && i + 1 < argc) reps = std::atoi(argv[++i]);
    else if (a == "--no-factor") factor = false;
    else if (a == "--exact") exact = true;
    else {
      std::fprintf(stderr, "usage: codecs_bench [--tokens N] [--rank R] [--reps N] [--no-factor] [--exact]\n"
                           "  --exact: also time the dgesdd reference factorizations (minutes)\n");
      return 2;
    }
  }
  constexpr int d = 4096, h_kv = 32, d_h = 128, e = h_kv * d_h;
  std::mt19937_64 rng(1);
  const std::vector<float> w_k = Gaussian(rng, size_t{d} * e, 1.0 / 64);
  const std::vector<float> w_v = Gaussian(rng, size_t{d} * e, 1.0 / 64);
  const KvProjection proj{d, h_kv, d_h, w_k.data(), w_v.data(), nullptr, nullptr};
  RopeParams rp;
  rp.theta = 10000;
  rp.head_dim = rp.rotary_dim = d_h;
  absl::StatusOr<RopeTable> rope = RopeTable::Create(rp);
  Check(rope.status(), "rope");

  std::printf("layer d=%d, %d KV heads x %d, page %d tokens, projected rank %d\n", d, h_kv, d_h,
              tokens, rank);
  KvCodecLayer layer;
  layer.proj = proj;
  layer.rope = &*rope;

  // Factorizations (float64, LAPACK), timed once each: they run at model registration.
  absl::StatusOr<std::vector<float>> w_kv;
  const double t_solve = TimeOnce([&] { w_kv = ComputeSlimMatrix(proj); });
  Check(w_kv.status(), "W_KV");
  layer.w_kv = w_kv->data();
  std::vector<float> pinv, basis;
  if (factor) {
    absl::StatusOr<JointSvd> svd;
    const double t_svd = TimeOnce([&] { svd = ComputeJointSvd(proj); });
    Check(svd.status(), "svd");
    absl::StatusOr<std::vector<float>> p;
    const double t_pinv = TimeOnce([&] { p = JointPinv(*svd); });
    Check(p.status(), "pinv");
    absl::StatusOr<Conditioning> cond;
    const double t_cond = TimeOnce([&] { cond = AnalyzeConditioning(proj); });
    Check(cond.status(), "conditioning");
    // What registration runs: κ with the joint SVD out of the same eigensolve.
    JointSvd joint;
    absl::StatusOr<Conditioning> cond_joint;
    const double t_cond_joint =
        TimeOnce([&] { cond_joint = AnalyzeConditioning(proj, SvdMethod::kAuto, &joint); });
    Check(cond_joint.status(), "conditioning + joint svd");
    pinv = std::move(*p);
    basis = JointBasis(*svd, rank);
    std::printf("\nfactorization (float64)\n");
    std::printf("  W_KV = W_K^-1 W_V   (LU, %dx%d, %d rhs)          %8.2f s\n", d, d, e, t_solve);
    std::printf("  SVD [W_K W_V]       (Gram dsyrk+dsyevd, %dx%d)   %8.2f s\n", d, 2 * e, t_svd);
    std::printf("  pinv from SVD       (%dx%d)                      %8.2f s\n", 2 * e, d, t_pinv);
    std::printf("  kappa K, V, [K V]   (Gram + 2-stage dsyevd, values) %8.2f s  (%.3g %.3g %.3g)\n",
                t_cond, cond->kappa_k, cond->kappa_v, cond->kappa_kv);
    std::printf("  kappa + SVD at once (G_K+G_V dsyevd with vectors)  %8.2f s  (%s; separately %.2f s)\n",
                t_cond_joint, joint.sigma.empty() ? "no SVD: out of the Gram range" : "SVD too",
                t_cond + t_svd);
    std::printf("  registration, per layer (LU + kappa/SVD + pinv)    %8.2f s\n",
                t_solve + t_cond_joint + t_pinv);
    if (exact) {
      absl::StatusOr<JointSvd> svd_x;
      const double t_svd_x = TimeOnce([&] { svd_x = ComputeJointSvd(proj, {}, SvdMethod::kExact); });
      Check(svd_x.status(), "svd exact");
      absl::StatusOr<Conditioning> cond_x;
      const double t_cond_x =
          TimeOnce([&] { cond_x = AnalyzeConditioning(proj, SvdMethod::kExact); });
      Check(cond_x.status(), "conditioning exact");
      double dsig = 0;
      for (size_t i = 0; i < svd->sigma.size(); ++i) {
        dsig = std::max(dsig, std::abs(svd->sigma[i] - svd_x->sigma[i]) / svd_x->sigma[0]);
      }
      std::printf("  SVD [W_K W_V]       (dgesdd, reference)            %8.2f s  max |dsigma|/sigma_max %.2g\n",
                  t_svd_x, dsig);
      std::printf("  kappa K, V, [K V]   (dgesdd values, reference)     %8.2f s  (%.3g %.3g %.3g)\n",
                  t_cond_x, cond_x->kappa_k, cond_x->kappa_v, cond_x->kappa_kv);
    }
  } else {
    // Any orthonormal-shaped matrices time the same; skip the SVD.
    pinv = Gaussian(rng, size_t{2} * e * d, 1.0 / 64);
    basis = Gaussian(rng, size_t{2} * e * rank, 1.0 / 64);
    std::printf("  W_KV solve %.2f s (SVD skipped: --no-factor)\n", t_solve);
  }
  layer.pinv = pinv.data();
  layer.basis = basis.data();
  layer.rank = rank;

  std::vector<int32_t> positions(tokens);
  for (int t = 0; t < tokens; ++t) positions[t] = 1000 + t;

  std::printf("\n%-18s %-5s %9s %9s %10s %10s\n", "op", "dtype", "ms", "GB/s", "x memcpy",
              "x sgemm");
  for (DType dt : {DType::kF32, DType::kBF16}) {
    const size_t es = DTypeSize(dt);
    const size_t n_kv = static_cast<size_t>(tokens) * e;
    const size_t logical = 2 * n_kv * es;  // K and V of the page in engine form
    std::vector<unsigned char> k(n_kv * es), v(n_kv * es), k2(n_kv * es), v2(n_kv * es);
    std::vector<unsigned char> stored(static_cast<size_t>(tokens) * 2 * e * es);
    const std::vector<float> kf = Gaussian(rng, n_kv, 1.0), vf = Gaussian(rng, n_kv, 1.0);
    ConvertDType(kf.data(), DType::kF32, k.data(), dt, n_kv);
    ConvertDType(vf.data(), DType::kF32, v.data(), dt, n_kv);
    const ConstTensor kin{k.data(), dt}, vin{v.data(), dt}, stin{stored.data(), dt};
    const MutableTensor kout{k2.data(), dt}, vout{v2.data(), dt}, sout{stored.data(), dt};

    std::vector<unsigned char> copy(logical);
    const double t_memcpy = Time(reps, [&] {
      std::memcpy(copy.data(), k.data(), n_kv * es);
      std::memcpy(copy.data() + n_kv * es, v.data(), n_kv * es);
    });
    std::vector<float> ga(static_cast<size_t>(tokens) * 2 * e, 0.5f), gb(size_t{2} * e * std::max(d, e), 0.5f),
        gc(static_cast<size_t>(tokens) * 2 * e);
    auto sgemm_time = [&](const std::vector<Gemm>& shapes) {
      return Time(reps, [&] {
        for (const Gemm& g : shapes) {
          cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, g.m, g.n, g.k, 1.0f, ga.data(),
                      g.k, gb.data(), g.n, 0.0f, gc.data(), g.n);
        }
      });
    };
    auto row = [&](const char* name, const std::vector<Gemm>& shapes,
                   const std::function<absl::Status()>& op) {
      Check(op(), name);
      const double t = Time(reps, [&] { Check(op(), name); });
      const double t_gemm = shapes.empty() ? 0.0 : sgemm_time(shapes);
      std::printf("%-18s %-5s %9.3f %9.2f %10.2f", name, DTypeName(dt), t * 1e3,
                  logical / t / 1e9, t / t_memcpy);
      if (t_gemm > 0) {
        std::printf(" %10.2f\n", t / t_gemm);
      } else {
        std::printf(" %10s\n", "-");
      }
    };
    const int T = tokens;
    std::printf("%-18s %-5s %9.3f %9.2f %10.2f %10s\n", "memcpy", DTypeName(dt), t_memcpy * 1e3,
                logical / t_memcpy / 1e9, 1.0, "-");
    row("full encode", {}, [&] { return EncodeFull(proj, T, kin, vin, sout); });
    row("full decode", {}, [&] { return DecodeFull(proj, T, stin, kout, vout); });
    row("slim encode", {}, [&] { return EncodeSlim(layer, T, positions.data(), kin, sout); });
    row("slim decode", {{T, e, e}},
        [&] { return DecodeSlim(layer, T, positions.data(), stin, kout, vout); });
    row("xcache enc(K,V)", {{T, d, e}, {T, d, e}},
        [&] { return EncodeXcacheFromKv(layer, T, positions.data(), kin, vin, sout); });
    row("xcache decode", {{T, e, d}, {T, e, d}},
        [&] { return DecodeXcache(layer, T, positions.data(), stin, kout, vout); });
    row("latent-proj enc", {{T, rank, e}, {T, rank, e}},
        [&] { return EncodeProjected(layer, T, positions.data(), kin, vin, sout); });
    row("latent-proj dec", {{T, e, rank}, {T, e, rank}},
        [&] { return DecodeProjected(layer, T, positions.data(), stin, kout, vout); });
  }
  std::printf("\nGB/s: logical bytes (K and V of the page in engine form, in the dtype) per second.\n"
              "x memcpy / x sgemm: op time over memcpy of those bytes / over the bare sgemm(s) of\n"
              "the op's shapes (fp32 operands), same run. Best of %d.\n", reps);
  return 0;
}

}  // namespace
}  // namespace slimkv::kernels

int main(int argc, char** argv) { return slimkv::kernels::Main(argc, argv); }
