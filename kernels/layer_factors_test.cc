// The per-layer factorizations (layer_factors.h): refusals, the Gram route against dgesdd, and
// rank selection.
#include <cmath>
#include <random>
#include <vector>

#include <gtest/gtest.h>

#include "kernels/internal/test_matrices.h"
#include "kernels/layer_factors.h"

namespace slimkv::kernels {
namespace {

using namespace test;  // NOLINT: the shared test helpers

TEST(Factors, SlimRefusesNarrowAndRecoveryRefusesTooNarrow) {
  std::mt19937_64 rng(5);
  // e = 8 < d = 32 and 2e = 16 < d: neither W_KV nor x recovery exists.
  const std::vector<float> w_k = Conditioned(rng, 32, 8, 2.0), w_v = Conditioned(rng, 32, 8, 2.0);
  const KvProjection proj{32, 1, 8, w_k.data(), w_v.data(), nullptr, nullptr};
  EXPECT_EQ(ComputeSlimMatrix(proj).status().code(), absl::StatusCode::kFailedPrecondition);
  absl::StatusOr<JointSvd> svd = ComputeJointSvd(proj);
  ASSERT_TRUE(svd.ok());
  EXPECT_EQ(JointPinv(*svd).status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_TRUE(std::isinf(PredictedRelError({1, 1, 1, {}}, proj, PredictedMode::kSlim, DType::kF32)));
}

// The fast Gram route (default) agrees with dgesdd where it is used, and hands over to
// dgesdd where it would not resolve the small singular values.
TEST(Factors, GramRouteAgreesWithDgesdd) {
  std::mt19937_64 rng(11);
  struct Shape { int d, h_kv, d_h; double kappa_k; };
  // square, wide (d < e), narrow (2e < d: Gram on the Aᵀ·A side); κ in and beyond range.
  for (const Shape& g : {Shape{64, 4, 16, 10}, Shape{48, 4, 16, 1e4}, Shape{40, 1, 8, 30},
                         Shape{64, 4, 16, 1e8}}) {
    SCOPED_TRACE(testing::Message() << "d=" << g.d << " e=" << g.h_kv * g.d_h << " kappa=" << g.kappa_k);
    const int e = g.h_kv * g.d_h;
    const std::vector<float> w_k = Conditioned(rng, g.d, e, g.kappa_k);
    const std::vector<float> w_v = Conditioned(rng, g.d, e, 3.0);
    const KvProjection proj{g.d, g.h_kv, g.d_h, w_k.data(), w_v.data(), nullptr, nullptr};
    absl::StatusOr<Conditioning> fast = AnalyzeConditioning(proj);
    absl::StatusOr<Conditioning> exact = AnalyzeConditioning(proj, SvdMethod::kExact);
    ASSERT_TRUE(fast.ok() && exact.ok());
    EXPECT_NEAR(fast->kappa_k / exact->kappa_k, 1.0, 1e-6);
    EXPECT_NEAR(fast->kappa_v / exact->kappa_v, 1.0, 1e-9);
    EXPECT_NEAR(fast->kappa_kv / exact->kappa_kv, 1.0, 1e-6);
    if (g.kappa_k >= 1e8) {
      EXPECT_GT(fast->kappa_k, 1e7);  // detected, not saturated at √(1/ε)
    }
    ASSERT_EQ(fast->sigma_kv.size(), exact->sigma_kv.size());
    for (size_t i = 0; i < fast->sigma_kv.size(); ++i) {
      EXPECT_NEAR(fast->sigma_kv[i], exact->sigma_kv[i], 1e-10 * exact->sigma_kv[0]);
    }

    absl::StatusOr<JointSvd> a = ComputeJointSvd(proj);
    absl::StatusOr<JointSvd> b = ComputeJointSvd(proj, {}, SvdMethod::kExact);
    ASSERT_TRUE(a.ok() && b.ok());
    const int k = static_cast<int>(b->sigma.size()), n = b->n;
    // Singular vectors are unique up to sign (the spectra here are distinct): compare the
    // projectors onto the top R right and left vectors.
    for (int R : {k / 2, k}) {
      double dv = 0, du = 0;
      for (int i = 0; i < n; ++i) {
        for (int j = 0; j < n; ++j) {
          double pa = 0, pb = 0;
          for (int l = 0; l < R; ++l) {
            pa += a->vt[l * n + i] * a->vt[l * n + j];
            pb += b->vt[l * n + i] * b->vt[l * n + j];
          }
          dv = std::max(dv, std::abs(pa - pb));
        }
      }
      for (int i = 0; i < g.d; ++i) {
        for (int j = 0; j < g.d; ++j) {
          double pa = 0, pb = 0;
          for (int l = 0; l < R; ++l) {
            pa += a->u[i * k + l] * a->u[j * k + l];
            pb += b->u[i * k + l] * b->u[j * k + l];
          }
          du = std::max(du, std::abs(pa - pb));
        }
      }
      EXPECT_LT(dv, 1e-7) << "R=" << R;
      EXPECT_LT(du, 1e-7) << "R=" << R;
    }
    if (2 * e >= g.d) {
      absl::StatusOr<std::vector<float>> pa = JointPinv(*a), pb = JointPinv(*b);
      ASSERT_TRUE(pa.ok() && pb.ok());
      EXPECT_LE(RelFro(Mat(pa->begin(), pa->end()), Mat(pb->begin(), pb->end())), 1e-6);
    }
  }
}

// The joint SVD that AnalyzeConditioning hands over from its own eigensolve of G_K + G_V is
// the SVD (projectors and pinv against dgesdd), with the same κ; it is withheld where the Gram
// route cannot give vectors (d > e: no shared Gram matrix; κ_KV > kGramMaxKappaVectors).
TEST(Factors, ConditioningHandsOverTheJointSvdOfItsEigensolve) {
  std::mt19937_64 rng(12);
  struct Shape { int d, h_kv, d_h; double kappa_k, kappa_v; };
  for (const Shape& g : {Shape{64, 4, 16, 10, 3}, Shape{48, 4, 16, 1e4, 3}, Shape{40, 1, 8, 30, 3},
                         Shape{64, 4, 16, 1e7, 1e7}}) {
    SCOPED_TRACE(testing::Message() << "d=" << g.d << " e=" << g.h_kv * g.d_h << " kappa=" << g.kappa_k);
    const int e = g.h_kv * g.d_h;
    const std::vector<float> w_k = Conditioned(rng, g.d, e, g.kappa_k);
    const std::vector<float> w_v = Conditioned(rng, g.d, e, g.kappa_v);
    const KvProjection proj{g.d, g.h_kv, g.d_h, w_k.data(), w_v.data(), nullptr, nullptr};
    JointSvd joint;
    absl::StatusOr<Conditioning> with = AnalyzeConditioning(proj, SvdMethod::kAuto, &joint);
    absl::StatusOr<Conditioning> exact = AnalyzeConditioning(proj, SvdMethod::kExact);
    ASSERT_TRUE(with.ok() && exact.ok());
    EXPECT_NEAR(with->kappa_kv / exact->kappa_kv, 1.0, 1e-6);
    const bool expect_svd = g.d <= e && exact->kappa_kv <= kGramMaxKappaVectors;
    ASSERT_EQ(!joint.sigma.empty(), expect_svd) << "kappa_kv " << exact->kappa_kv;
    if (!expect_svd) continue;
    EXPECT_EQ(with->sigma_kv, joint.sigma);
    absl::StatusOr<JointSvd> b = ComputeJointSvd(proj, {}, SvdMethod::kExact);
    ASSERT_TRUE(b.ok());
    ASSERT_EQ(joint.n, b->n);
    ASSERT_EQ(joint.k_cols, b->k_cols);
    const int k = static_cast<int>(b->sigma.size()), n = b->n;
    double dv = 0;
    for (int i = 0; i < n; ++i) {
      for (int j = 0; j < n; ++j) {
        double pa = 0, pb = 0;
        for (int l = 0; l < k / 2; ++l) {
          pa += joint.vt[l * n + i] * joint.vt[l * n + j];
          pb += b->vt[l * n + i] * b->vt[l * n + j];
        }
        dv = std::max(dv, std::abs(pa - pb));
      }
    }
    EXPECT_LT(dv, 1e-7);
    absl::StatusOr<std::vector<float>> pa = JointPinv(joint), pb = JointPinv(*b);
    ASSERT_TRUE(pa.ok() && pb.ok());
    EXPECT_LE(RelFro(Mat(pa->begin(), pa->end()), Mat(pb->begin(), pb->end())), 1e-6);
  }
}

TEST(Factors, RankByEnergy) {
  const std::vector<double> sigma = {3, 2, 1, 0.5};  // energies 9, 4, 1, 0.25 of 14.25
  EXPECT_EQ(*SelectRank(sigma, {.energy = 9 / 14.25}), 1);
  EXPECT_EQ(*SelectRank(sigma, {.energy = 0.9}), 2);
  EXPECT_EQ(*SelectRank(sigma, {.energy = 1.0}), 4);
  EXPECT_EQ(*SelectRank(sigma, {.fixed_rank = 9}), 4);
  EXPECT_EQ(SelectRank(sigma, {}).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(SelectRank(sigma, {.energy = 1.5}).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_DOUBLE_EQ(TailNorm(sigma, 2), std::sqrt(1.25));
}

}  // namespace
}  // namespace slimkv::kernels
