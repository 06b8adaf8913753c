// Conformance of the KV codecs: every codec × dtype × geometry against the scalar reference
// and against direct recomputation from x (K = R_p·(x·W_K + b_K), V = x·W_V + b_V), and what
// ill-conditioned weights do to them. The factorizations and RoPE have their own files.
#include <cmath>
#include <functional>
#include <numbers>
#include <random>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "kernels/codecs.h"
#include "kernels/codecs_ref.h"
#include "kernels/internal/test_matrices.h"
#include "kernels/layer_factors.h"
#include "kernels/rope.h"
#include "kernels/rope_retention.h"

namespace slimkv::kernels {
namespace {

using namespace test;  // NOLINT: the shared test helpers

constexpr DType kDTypes[] = {DType::kF32, DType::kF16, DType::kBF16};

// ---- MHA / GQA / wide conformance ----

struct Geometry {
  std::string name;
  int d, h_kv, d_h, rotary_dim;
  RopePairing pairing;
  bool bias;
  RopeScalingType scaling;
};

void PrintTo(const Geometry& g, std::ostream* os) { *os << g.name; }

RopeParams MakeRope(const Geometry& g) {
  return TestRope(g.d_h, g.rotary_dim, g.pairing, g.scaling);
}

class CodecConformance : public testing::TestWithParam<Geometry> {
 protected:
  static constexpr int kTokens = 7;

  void SetUp() override {
    const Geometry& g = GetParam();
    std::mt19937_64 rng(std::hash<std::string>()(g.name));
    e_ = g.h_kv * g.d_h;
    w_k_ = Conditioned(rng, g.d, e_, 8.0);
    w_v_ = Conditioned(rng, g.d, e_, 8.0);
    if (g.bias) {
      b_k_ = ToF(Gaussian(rng, e_));
      b_v_ = ToF(Gaussian(rng, e_));
    }
    proj_ = {g.d, g.h_kv, g.d_h, w_k_.data(), w_v_.data(), g.bias ? b_k_.data() : nullptr,
             g.bias ? b_v_.data() : nullptr};
    absl::StatusOr<RopeTable> rope = RopeTable::Create(MakeRope(g));
    ASSERT_TRUE(rope.ok()) << rope.status();
    rope_ = *rope;
    std::uniform_int_distribution<int32_t> pos(0, 8000);
    for (int t = 0; t < kTokens; ++t) positions_.push_back(pos(rng));
    x_ = Gaussian(rng, static_cast<size_t>(kTokens) * g.d);
    layer_.proj = proj_;
    layer_.rope = &rope_;
  }

  // Truth from x (already in the engine's dtype), in double.
  void Truth(const Mat& x, Mat* k, Mat* v) const {
    const Geometry& g = GetParam();
    *k = MatMul(x, w_k_.data(), kTokens, g.d, e_, proj_.b_k);
    ApplyRopeRef(rope_.params(), k->data(), kTokens, g.h_kv, positions_.data(), false);
    *v = MatMul(x, w_v_.data(), kTokens, g.d, e_, proj_.b_v);
  }

  using Encode = std::function<absl::Status(ConstTensor, ConstTensor, MutableTensor)>;
  using Decode = std::function<absl::Status(ConstTensor, MutableTensor, MutableTensor)>;

  // Runs fast and reference encode/decode for one codec and checks them against each other
  // and against the truth. stored_elems: per token. tol_truth: relative Frobenius bound.
  void Check(const char* codec, DType t, int64_t stored_elems, Encode enc, Encode enc_ref,
             Decode dec, Decode dec_ref, double tol_truth) {
    SCOPED_TRACE(std::string(codec) + " " + DTypeName(t));
    const Mat x = RoundTo(x_, t);
    Mat k_true, v_true;
    Truth(x, &k_true, &v_true);
    const Buf k_in = Buf::From(k_true, t), v_in = Buf::From(v_true, t);
    const size_t n_stored = kTokens * stored_elems, n_kv = kTokens * e_;
    Buf stored(t, n_stored), stored_ref(t, n_stored);
    ASSERT_TRUE(enc(k_in.in(), v_in.in(), stored.out()).ok());
    ASSERT_TRUE(enc_ref(k_in.in(), v_in.in(), stored_ref.out()).ok());
    // Fast and reference may differ by one rounding of the dtype in places.
    const double u = UnitRoundoff(t);
    const double tol_ref = t == DType::kF32 ? 1e-5 : 2 * u;
    EXPECT_LE(RelFro(stored.values(), stored_ref.values()), tol_ref);

    Buf k(t, n_kv), v(t, n_kv), k_ref(t, n_kv), v_ref(t, n_kv);
    ASSERT_TRUE(dec(stored_ref.in(), k.out(), v.out()).ok());
    ASSERT_TRUE(dec_ref(stored_ref.in(), k_ref.out(), v_ref.out()).ok());
    EXPECT_LE(RelFro(k.values(), k_ref.values()), tol_ref);
    EXPECT_LE(RelFro(v.values(), v_ref.values()), tol_ref);

    // End to end through the fast path.
    ASSERT_TRUE(dec(stored.in(), k.out(), v.out()).ok());
    EXPECT_LE(RelFro(k.values(), k_true), tol_truth);
    EXPECT_LE(RelFro(v.values(), v_true), tol_truth);
  }

  // Adapters from a codec function to the Encode / Decode shapes Check() takes.
  template <class F>
  Encode EncodeKv(F fn) {
    return [this, fn](ConstTensor k, ConstTensor v, MutableTensor s) {
      return fn(layer_, kTokens, positions_.data(), k, v, s);
    };
  }
  template <class F>
  Decode DecodeWith(F fn) {
    return [this, fn](ConstTensor s, MutableTensor k, MutableTensor v) {
      return fn(layer_, kTokens, positions_.data(), s, k, v);
    };
  }

  // Tolerance against the truth: 1e-5 in fp32; otherwise the engine's own rounding (u) plus
  // the predicted amplification of it, with a safety factor of 4.
  double TruthTol(DType t, double predicted) const {
    return t == DType::kF32 ? 1e-5 : 4 * (UnitRoundoff(t) + predicted);
  }

  int e_ = 0;
  std::vector<float> w_k_, w_v_, b_k_, b_v_;
  KvProjection proj_;
  RopeTable rope_;
  std::vector<int32_t> positions_;
  Mat x_;
  KvCodecLayer layer_;
};

TEST_P(CodecConformance, Full) {
  for (DType t : kDTypes) {
    auto enc = [&](auto fn) {
      return [&, fn](ConstTensor k, ConstTensor v, MutableTensor s) {
        return fn(proj_, kTokens, k, v, s);
      };
    };
    auto dec = [&](auto fn) {
      return [&, fn](ConstTensor s, MutableTensor k, MutableTensor v) {
        return fn(proj_, kTokens, s, k, v);
      };
    };
    Check("full", t, FullStoredElems(proj_), enc(EncodeFull), enc(EncodeFullRef), dec(DecodeFull),
          dec(DecodeFullRef), TruthTol(t, 0));
  }
}

TEST_P(CodecConformance, Slim) {
  const Geometry& g = GetParam();
  absl::StatusOr<std::vector<float>> w_kv = ComputeSlimMatrix(proj_);
  if (e_ < g.d) {
    EXPECT_EQ(w_kv.status().code(), absl::StatusCode::kFailedPrecondition);
    Buf k(DType::kF32, kTokens * e_), s(DType::kF32, kTokens * e_);
    EXPECT_EQ(EncodeSlim(layer_, kTokens, positions_.data(), k.in(), s.out()).code(),
              absl::StatusCode::kFailedPrecondition);
    return;
  }
  ASSERT_TRUE(w_kv.ok()) << w_kv.status();
  layer_.w_kv = w_kv->data();
  absl::StatusOr<Conditioning> cond = AnalyzeConditioning(proj_);
  ASSERT_TRUE(cond.ok());
  for (DType t : kDTypes) {
    auto enc = [&](auto fn) {
      return [&, fn](ConstTensor k, ConstTensor, MutableTensor s) {
        return fn(layer_, kTokens, positions_.data(), k, s);
      };
    };
    Check("slim", t, SlimStoredElems(proj_), enc(EncodeSlim), enc(EncodeSlimRef),
          DecodeWith(DecodeSlim), DecodeWith(DecodeSlimRef), TruthTol(t, PredictedRelError(*cond, proj_, PredictedMode::kSlim, t)));
  }
}

TEST_P(CodecConformance, XcacheFromX) {
  for (DType t : kDTypes) {
    // The engine's x (rounded to t) is what gets stored.
    const Buf x = Buf::From(RoundTo(x_, t), t);
    auto enc = [&](auto fn) {
      return [&, fn](ConstTensor, ConstTensor, MutableTensor s) {
        return fn(layer_, kTokens, x.in(), s);
      };
    };
    Check("xcache(x)", t, XcacheStoredElems(proj_), enc(EncodeXcacheFromX),
          enc(EncodeXcacheFromXRef), DecodeWith(DecodeXcache), DecodeWith(DecodeXcacheRef),
          TruthTol(t, 0));
  }
}

TEST_P(CodecConformance, XcacheFromKv) {
  absl::StatusOr<JointSvd> svd = ComputeJointSvd(proj_);
  ASSERT_TRUE(svd.ok()) << svd.status();
  absl::StatusOr<std::vector<float>> pinv = JointPinv(*svd);
  ASSERT_TRUE(pinv.ok()) << pinv.status();  // every geometry here has 2e ≥ d
  layer_.pinv = pinv->data();
  absl::StatusOr<Conditioning> cond = AnalyzeConditioning(proj_);
  ASSERT_TRUE(cond.ok());
  for (DType t : kDTypes) {
    Check("xcache(kv)", t, XcacheStoredElems(proj_), EncodeKv(EncodeXcacheFromKv),
          EncodeKv(EncodeXcacheFromKvRef), DecodeWith(DecodeXcache), DecodeWith(DecodeXcacheRef),
          TruthTol(t, PredictedRelError(*cond, proj_, PredictedMode::kXcacheFromKv, t)));
  }
}

// Projected latent at full rank is exact; below it, the weights obey Eckart–Young and the
// kept rope columns come back exactly.
TEST_P(CodecConformance, Projected) {
  const Geometry& g = GetParam();
  // Keep the two highest-scoring rope pairs of every head (scores from K itself).
  Mat k_true, v_true;
  Truth(x_, &k_true, &v_true);
  const std::vector<float> kf = ToF(k_true);
  const std::vector<double> scores = RopePairScores(rope_.params(), g.h_kv, kTokens, kf.data(),
                                                    nullptr, 0);
  const std::vector<int> kept = SelectRopeColumns(rope_.params(), g.h_kv, scores, 2);
  ASSERT_EQ(kept.size(), static_cast<size_t>(g.h_kv * 4));
  for (bool with_kept : {false, true}) {
    const std::vector<int> k_cols = with_kept ? ComplementColumns(kept, e_) : std::vector<int>{};
    absl::StatusOr<JointSvd> svd = ComputeJointSvd(proj_, k_cols);
    ASSERT_TRUE(svd.ok()) << svd.status();
    const int full_rank = static_cast<int>(svd->sigma.size());
    for (int R : {full_rank, full_rank / 2}) {
      SCOPED_TRACE("R=" + std::to_string(R) + (with_kept ? " kept" : ""));
      const std::vector<float> basis = JointBasis(*svd, R);
      // Eckart–Young: ‖A − A·B·Bᵀ‖_F = √Σ_{i≥R} σ_i².
      const int n = svd->n;
      Mat a(static_cast<size_t>(g.d) * n);
      for (int r = 0; r < g.d; ++r) {
        for (int c = 0; c < n; ++c) {
          const int nk = n - e_;
          a[r * n + c] = c < nk ? w_k_[r * e_ + svd->k_cols[c]] : w_v_[r * e_ + c - nk];
        }
      }
      const Mat ab = MatMul(a, basis.data(), g.d, n, R);
      double resid = 0, total = 0;
      for (int r = 0; r < g.d; ++r) {
        for (int c = 0; c < n; ++c) {
          double proj = 0;
          for (int i = 0; i < R; ++i) proj += ab[r * R + i] * basis[static_cast<size_t>(c) * R + i];
          resid += (a[r * n + c] - proj) * (a[r * n + c] - proj);
          total += a[r * n + c] * a[r * n + c];
        }
      }
      EXPECT_NEAR(std::sqrt(resid), TailNorm(svd->sigma, R), 1e-5 * std::sqrt(total));

      layer_.basis = basis.data();
      layer_.rank = R;
      layer_.kept_k_cols = with_kept ? kept.data() : nullptr;
      layer_.n_kept = with_kept ? static_cast<int>(kept.size()) : 0;
      const bool exact = R == full_rank && n >= g.d;
      for (DType t : kDTypes) {
        Check("projected", t, ProjectedStoredElems(layer_), EncodeKv(EncodeProjected),
              EncodeKv(EncodeProjectedRef), DecodeWith(DecodeProjected),
              DecodeWith(DecodeProjectedRef),
              exact ? TruthTol(t, 0) : 1.0);
      }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(
    Geometries, CodecConformance,
    testing::Values(
        Geometry{"mha_half", 32, 4, 8, 8, RopePairing::kHalfSplit, false, RopeScalingType::kNone},
        Geometry{"mha_interleaved_bias", 32, 4, 8, 8, RopePairing::kInterleaved, true,
                 RopeScalingType::kLinear},
        Geometry{"mha_partial_yarn_bias", 32, 4, 8, 4, RopePairing::kHalfSplit, true,
                 RopeScalingType::kYarn},
        Geometry{"gqa_llama3", 32, 2, 8, 8, RopePairing::kHalfSplit, false,
                 RopeScalingType::kLlama3},
        Geometry{"gqa_interleaved_bias", 32, 2, 8, 8, RopePairing::kInterleaved, true,
                 RopeScalingType::kNone},
        Geometry{"wide_bias", 24, 4, 8, 8, RopePairing::kInterleaved, true,
                 RopeScalingType::kDynamicNtk},
        Geometry{"wide_partial", 24, 4, 8, 6, RopePairing::kHalfSplit, false,
                 RopeScalingType::kNone}),
    [](const testing::TestParamInfo<Geometry>& info) { return info.param.name; });

// ---- native MLA ----

struct MlaCase {
  std::string name;
  bool deepseek;  // else MHA2MLA
};

void PrintTo(const MlaCase& c, std::ostream* os) { *os << c.name; }

class LatentNative : public testing::TestWithParam<MlaCase> {};

TEST_P(LatentNative, MatchesRecomputationAndReference) {
  const bool deepseek = GetParam().deepseek;
  std::mt19937_64 rng(deepseek ? 7 : 11);
  constexpr int kTokens = 5, d = 24, heads = 4, d_c = 16, dv = 8;
  const int dk = deepseek ? 12 : 8;       // DeepSeek: 8 nope + 4 rope; MHA2MLA: d_h = 8
  const int rope_dim = 4;                 // DeepSeek d_r; MHA2MLA r per head (2 pairs)
  const int dn = dk - rope_dim;
  const std::vector<float> w_dkv = Conditioned(rng, d, d_c, 4.0);
  const std::vector<float> w_uk = ToF(Gaussian(rng, static_cast<size_t>(d_c) * heads * dn));
  const std::vector<float> w_uv = ToF(Gaussian(rng, static_cast<size_t>(d_c) * heads * dv));
  std::vector<int32_t> positions;
  for (int t = 0; t < kTokens; ++t) positions.push_back(100 * t + 3);
  const Mat x = Gaussian(rng, kTokens * d);
  const Mat c = MatMul(x, w_dkv.data(), kTokens, d, d_c);

  LatentLayout l;
  l.heads = heads;
  l.d_c = d_c;
  l.k_head_dim = dk;
  l.v_head_dim = dv;
  l.rope_dim = rope_dim;
  l.shared_rope = deepseek;
  l.w_uk = w_uk.data();
  l.w_uv = w_uv.data();
  // Engine rope part, rotated: DeepSeek one interleaved k_rope of x·W_KR; MHA2MLA the kept
  // half-split pairs of each head of the original R_p·x·W_K.
  Mat rope_part;
  std::vector<int> rope_cols;
  if (deepseek) {
    const std::vector<float> w_kr = Conditioned(rng, d, rope_dim, 4.0);
    rope_part = MatMul(x, w_kr.data(), kTokens, d, rope_dim);
    RopeParams rp;
    rp.head_dim = rp.rotary_dim = rope_dim;
    rp.pairing = RopePairing::kInterleaved;
    ApplyRopeRef(rp, rope_part.data(), kTokens, 1, positions.data(), false);
  } else {
    const std::vector<float> w_k = Conditioned(rng, d, heads * dk, 4.0);
    Mat k = MatMul(x, w_k.data(), kTokens, d, heads * dk);
    RopeParams rp;
    rp.head_dim = rp.rotary_dim = dk;
    ApplyRopeRef(rp, k.data(), kTokens, heads, positions.data(), false);
    for (int h = 0; h < heads; ++h) {
      const int p0 = h % 4, p1 = (h + 1) % 4;  // pairs (p, p + 4)
      std::vector<int> cols = {p0, p1, p0 + 4, p1 + 4};
      std::sort(cols.begin(), cols.end());
      rope_cols.insert(rope_cols.end(), cols.begin(), cols.end());
    }
    l.rope_cols = rope_cols.data();
    for (int t = 0; t < kTokens; ++t) {
      for (int h = 0; h < heads; ++h) {
        for (int j = 0; j < rope_dim; ++j) {
          rope_part.push_back(k[(t * heads + h) * dk + rope_cols[h * rope_dim + j]]);
        }
      }
    }
  }
  ASSERT_TRUE(ValidateLatentLayout(l).ok());
  const int width = l.stored_elems(), re = l.rope_elems();
  Mat latent(kTokens * width);
  for (int t = 0; t < kTokens; ++t) {
    for (int i = 0; i < d_c; ++i) latent[t * width + i] = c[t * d_c + i];
    for (int i = 0; i < re; ++i) latent[t * width + d_c + i] = rope_part[t * re + i];
  }

  for (DType t : kDTypes) {
    SCOPED_TRACE(DTypeName(t));
    const Mat engine_latent = RoundTo(latent, t);
    // Truth: K_nope,h = c·W_UK,h, rope dims from the rope part, V_h = c·W_UV,h.
    Mat k_true(kTokens * heads * dk), v_true(kTokens * heads * dv);
    for (int tok = 0; tok < kTokens; ++tok) {
      const double* ct = &engine_latent[tok * width];
      for (int h = 0; h < heads; ++h) {
        int nope = 0;
        for (int i = 0; i < dk; ++i) {
          double* out = &k_true[(tok * heads + h) * dk + i];
          const int* cols = deepseek ? nullptr : &rope_cols[h * rope_dim];
          int rope_j = -1;
          for (int j = 0; j < rope_dim; ++j) {
            if ((cols ? cols[j] : dn + j) == i) rope_j = j;
          }
          if (rope_j >= 0) {
            *out = ct[d_c + (deepseek ? 0 : h * rope_dim) + rope_j];
          } else {
            double acc = 0;
            for (int r = 0; r < d_c; ++r) acc += ct[r] * w_uk[r * heads * dn + h * dn + nope];
            *out = acc;
            ++nope;
          }
        }
        for (int j = 0; j < dv; ++j) {
          double acc = 0;
          for (int r = 0; r < d_c; ++r) acc += ct[r] * w_uv[r * heads * dv + h * dv + j];
          v_true[(tok * heads + h) * dv + j] = acc;
        }
      }
    }
    const Buf in = Buf::From(engine_latent, t);
    Buf stored(t, kTokens * width), stored_ref(t, kTokens * width);
    ASSERT_TRUE(EncodeLatentNative(l, kTokens, in.in(), stored.out()).ok());
    ASSERT_TRUE(EncodeLatentNativeRef(l, kTokens, in.in(), stored_ref.out()).ok());
    EXPECT_EQ(stored.bytes, stored_ref.bytes);
    Buf k(t, k_true.size()), v(t, v_true.size()), k_ref(t, k_true.size()), v_ref(t, v_true.size());
    ASSERT_TRUE(DecodeLatentNative(l, kTokens, stored.in(), k.out(), v.out()).ok());
    ASSERT_TRUE(DecodeLatentNativeRef(l, kTokens, stored.in(), k_ref.out(), v_ref.out()).ok());
    const double tol = t == DType::kF32 ? 1e-5 : 2 * UnitRoundoff(t);
    EXPECT_LE(RelFro(k.values(), k_ref.values()), tol);
    EXPECT_LE(RelFro(v.values(), v_ref.values()), tol);
    EXPECT_LE(RelFro(k.values(), k_true), tol);
    EXPECT_LE(RelFro(v.values(), v_true), tol);
  }
}

INSTANTIATE_TEST_SUITE_P(Layouts, LatentNative,
                         testing::Values(MlaCase{"deepseek", true}, MlaCase{"mha2mla", false}),
                         [](const testing::TestParamInfo<MlaCase>& info) {
                           return info.param.name;
                         });

// ---- conditioning ----

TEST(Conditioning, IllConditionedWeightsPredictLargeErrorAndSlimShowsIt) {
  std::mt19937_64 rng(3);
  constexpr int d = 32, h_kv = 4, d_h = 8, e = 32, kTokens = 16;
  const double kappa = 1e6;
  const std::vector<float> w_k = Conditioned(rng, d, e, kappa);
  const std::vector<float> w_v = Conditioned(rng, d, e, 4.0);
  const KvProjection proj{d, h_kv, d_h, w_k.data(), w_v.data(), nullptr, nullptr};
  absl::StatusOr<Conditioning> cond = AnalyzeConditioning(proj);
  ASSERT_TRUE(cond.ok());
  EXPECT_GT(cond->kappa_k, 0.5 * kappa);
  EXPECT_LT(cond->kappa_k, 2 * kappa);
  EXPECT_LT(cond->kappa_v, 8.0);
  const double pred_bf16 = PredictedRelError(*cond, proj, PredictedMode::kSlim, DType::kBF16);
  const double pred_f32 = PredictedRelError(*cond, proj, PredictedMode::kSlim, DType::kF32);
  EXPECT_GT(pred_bf16, 1e-2);  // over the default tolerance: the policy falls back
  EXPECT_EQ(PredictedRelError(*cond, proj, PredictedMode::kXcacheGivenX, DType::kBF16), 0.0);

  absl::StatusOr<std::vector<float>> w_kv = ComputeSlimMatrix(proj);
  ASSERT_TRUE(w_kv.ok()) << w_kv.status();
  RopeParams rp;
  rp.head_dim = rp.rotary_dim = d_h;
  absl::StatusOr<RopeTable> rope = RopeTable::Create(rp);
  ASSERT_TRUE(rope.ok());
  KvCodecLayer layer;
  layer.proj = proj;
  layer.rope = &*rope;
  layer.w_kv = w_kv->data();
  std::vector<int32_t> positions(kTokens);
  for (int t = 0; t < kTokens; ++t) positions[t] = t;
  for (DType t : {DType::kF32, DType::kBF16}) {
    SCOPED_TRACE(DTypeName(t));
    const Mat x = RoundTo(Gaussian(rng, kTokens * d), t);
    Mat k = MatMul(x, w_k.data(), kTokens, d, e);
    ApplyRopeRef(rp, k.data(), kTokens, h_kv, positions.data(), false);
    const Mat v = MatMul(x, w_v.data(), kTokens, d, e);
    const Buf k_in = Buf::From(k, t);
    Buf stored(t, kTokens * e), k_out(t, kTokens * e), v_out(t, kTokens * e);
    ASSERT_TRUE(EncodeSlim(layer, kTokens, positions.data(), k_in.in(), stored.out()).ok());
    ASSERT_TRUE(DecodeSlim(layer, kTokens, positions.data(), stored.in(), k_out.out(), v_out.out()).ok());
    const double err = RelFro(v_out.values(), v);
    const double pred = t == DType::kF32 ? pred_f32 : pred_bf16;
    EXPECT_LE(err, 2 * pred);
    if (t == DType::kBF16) {
      EXPECT_GT(err, 1e-2);  // the failure the prediction warned of
    }
  }
}

}  // namespace
}  // namespace slimkv::kernels
