// Conformance of the KV codecs: every codec × dtype × geometry against the scalar reference
// and against direct recomputation from x (K = R_p·(x·W_K + b_K), V = x·W_V + b_V), plus the
// factorizations (Eckart–Young, conditioning) and RoPE schedules.
#include <cmath>
#include <functional>
#include <numbers>
#include <random>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "kernels/codecs.h"
#include "kernels/codecs_ref.h"
#include "kernels/layer_factors.h"
#include "kernels/rope.h"
#include "kernels/rope_retention.h"

namespace slimkv::kernels {
namespace {

using Mat = std::vector<double>;  // row-major, shape implied

// ---- synthetic data ----

Mat Gaussian(std::mt19937_64& rng, size_t n) {
  std::normal_distribution<double> g;
  Mat m(n);
  for (double& v : m) v = g(rng);
  return m;
}

// Random orthogonal n×n (Gram–Schmidt, twice for accuracy).
Mat Orthogonal(std::mt19937_64& rng, int n) {
  Mat q = Gaussian(rng, static_cast<size_t>(n) * n);  // columns are the vectors
  for (int j = 0; j < n; ++j) {
    for (int pass = 0; pass < 2; ++pass) {
      for (int i = 0; i < j; ++i) {
        double dot = 0;
        for (int r = 0; r < n; ++r) dot += q[r * n + i] * q[r * n + j];
        for (int r = 0; r < n; ++r) q[r * n + j] -= dot * q[r * n + i];
      }
    }
    double norm = 0;
    for (int r = 0; r < n; ++r) norm += q[r * n + j] * q[r * n + j];
    for (int r = 0; r < n; ++r) q[r * n + j] /= std::sqrt(norm);
  }
  return q;
}

// rows×cols = U·diag(σ)·Vᵀ with σ log-spaced from 1 down to 1/kappa.
std::vector<float> Conditioned(std::mt19937_64& rng, int rows, int cols, double kappa) {
  const int m = std::min(rows, cols);
  const Mat u = Orthogonal(rng, rows), v = Orthogonal(rng, cols);
  std::vector<float> w(static_cast<size_t>(rows) * cols);
  for (int r = 0; r < rows; ++r) {
    for (int c = 0; c < cols; ++c) {
      double acc = 0;
      for (int i = 0; i < m; ++i) {
        const double s = m == 1 ? 1.0 : std::pow(kappa, -static_cast<double>(i) / (m - 1));
        acc += u[r * rows + i] * s * v[c * cols + i];
      }
      w[static_cast<size_t>(r) * cols + c] = static_cast<float>(acc);
    }
  }
  return w;
}

std::vector<float> ToF(const Mat& m) { return std::vector<float>(m.begin(), m.end()); }

// Values as the engine holds them in `t`, widened back to double.
Mat RoundTo(const Mat& m, DType t) {
  std::vector<float> f = ToF(m);
  std::vector<uint16_t> h(f.size());
  if (t == DType::kF32) return Mat(f.begin(), f.end());
  ConvertDType(f.data(), DType::kF32, h.data(), t, f.size());
  ConvertDType(h.data(), t, f.data(), DType::kF32, f.size());
  return Mat(f.begin(), f.end());
}

// A buffer of n elements of dtype t.
struct Buf {
  Buf(DType t, size_t n) : dtype(t), bytes(n * DTypeSize(t)), n(n) {}
  static Buf From(const Mat& m, DType t) {
    Buf b(t, m.size());
    const std::vector<float> f = ToF(m);
    ConvertDType(f.data(), DType::kF32, b.bytes.data(), t, m.size());
    return b;
  }
  ConstTensor in() const { return {bytes.data(), dtype}; }
  MutableTensor out() { return {bytes.data(), dtype}; }
  Mat values() const {
    std::vector<float> f(n);
    ConvertDType(bytes.data(), dtype, f.data(), DType::kF32, n);
    return Mat(f.begin(), f.end());
  }
  DType dtype;
  std::vector<unsigned char> bytes;
  size_t n;
};

double RelFro(const Mat& got, const Mat& want) {
  double num = 0, den = 0;
  for (size_t i = 0; i < want.size(); ++i) {
    num += (got[i] - want[i]) * (got[i] - want[i]);
    den += want[i] * want[i];
  }
  return std::sqrt(num / den);
}

// out[rows, n] = a[rows, k]·b[k, n] + bias.
Mat MatMul(const Mat& a, const float* b, int rows, int k, int n, const float* bias = nullptr) {
  Mat out(static_cast<size_t>(rows) * n);
  for (int r = 0; r < rows; ++r) {
    for (int j = 0; j < n; ++j) {
      double acc = bias ? bias[j] : 0.0;
      for (int i = 0; i < k; ++i) acc += a[r * k + i] * b[static_cast<size_t>(i) * n + j];
      out[static_cast<size_t>(r) * n + j] = acc;
    }
  }
  return out;
}

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
  RopeParams p;
  p.theta = 10000;
  p.head_dim = g.d_h;
  p.rotary_dim = g.rotary_dim;
  p.pairing = g.pairing;
  p.scaling.type = g.scaling;
  p.scaling.factor = 4.0;
  p.scaling.original_max_position_embeddings = 512;
  p.scaling.dynamic_seq_len = 2048;
  return p;
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

// ---- RoPE ----

TEST(Rope, FastMatchesReferenceAndRoundTrips) {
  std::mt19937_64 rng(9);
  for (RopePairing pairing : {RopePairing::kHalfSplit, RopePairing::kInterleaved}) {
    RopeParams p;
    p.head_dim = 16;
    p.rotary_dim = 12;
    p.pairing = pairing;
    p.scaling.type = RopeScalingType::kYarn;
    p.scaling.factor = 8;
    p.scaling.original_max_position_embeddings = 4096;
    absl::StatusOr<RopeTable> table = RopeTable::Create(p);
    ASSERT_TRUE(table.ok());
    const std::vector<int32_t> pos = {0, 1, 4095, 32767};
    const Mat x = Gaussian(rng, pos.size() * 3 * 16);
    Mat ref = x;
    ApplyRopeRef(p, ref.data(), pos.size(), 3, pos.data(), false);
    std::vector<float> fast = ToF(x);
    table->Apply(fast.data(), pos.size(), 3, pos.data(), false);
    EXPECT_LE(RelFro(Mat(fast.begin(), fast.end()), ref), 1e-6);
    // Dims past rotary_dim pass through; the pair norms scale by the attention factor.
    const double a = RopeAttentionFactor(p);
    EXPECT_NEAR(a, 0.1 * std::log(8.0) + 1.0, 1e-12);
    EXPECT_EQ(ref[12], x[12]);
    ApplyRopeRef(p, ref.data(), pos.size(), 3, pos.data(), true);
    EXPECT_LE(RelFro(ref, x), 1e-14);
    table->Apply(fast.data(), pos.size(), 3, pos.data(), true);
    EXPECT_LE(RelFro(Mat(fast.begin(), fast.end()), x), 1e-6);
  }
}

TEST(Rope, PairingRotatesTheDocumentedDims) {
  // Position 1, frequency j = 0 has inv_freq 1: dims (0, half) or (0, 1) turn by 1 radian.
  for (RopePairing pairing : {RopePairing::kHalfSplit, RopePairing::kInterleaved}) {
    RopeParams p;
    p.head_dim = p.rotary_dim = 4;
    p.pairing = pairing;
    const int partner = pairing == RopePairing::kHalfSplit ? 2 : 1;
    Mat x(4, 0.0);
    x[0] = 1.0;
    const int32_t pos = 1;
    ApplyRopeRef(p, x.data(), 1, 1, &pos, false);
    EXPECT_NEAR(x[0], std::cos(1.0), 1e-7);
    EXPECT_NEAR(x[partner], std::sin(1.0), 1e-7);
  }
}

TEST(Rope, ScalingSchedules) {
  RopeParams base;
  base.head_dim = base.rotary_dim = 128;
  base.theta = 500000;
  const std::vector<double> plain = RopeInvFreq(base);
  EXPECT_DOUBLE_EQ(plain[0], 1.0);
  EXPECT_NEAR(plain[1], std::pow(500000.0, -2.0 / 128), 1e-15);

  RopeParams lin = base;
  lin.scaling = {.type = RopeScalingType::kLinear, .factor = 4};
  EXPECT_DOUBLE_EQ(RopeInvFreq(lin)[5], plain[5] / 4);

  // llama3 (Llama 3.1: factor 8, 1, 4, 8192): short wavelengths kept, long ones divided.
  RopeParams l3 = base;
  l3.scaling = {.type = RopeScalingType::kLlama3, .factor = 8, .original_max_position_embeddings = 8192};
  const std::vector<double> f3 = RopeInvFreq(l3);
  EXPECT_DOUBLE_EQ(f3[0], plain[0]);
  EXPECT_DOUBLE_EQ(f3[63], plain[63] / 8);
  for (int j = 1; j < 64; ++j) EXPECT_LE(f3[j], plain[j]);

  // YaRN: high frequencies extrapolate (unchanged), low ones interpolate (divided).
  RopeParams yarn = base;
  yarn.scaling = {.type = RopeScalingType::kYarn, .factor = 4, .original_max_position_embeddings = 8192};
  const std::vector<double> fy = RopeInvFreq(yarn);
  EXPECT_DOUBLE_EQ(fy[0], plain[0]);
  EXPECT_DOUBLE_EQ(fy[63], plain[63] / 4);
  yarn.scaling.mscale = yarn.scaling.mscale_all_dim = 0.707;
  EXPECT_DOUBLE_EQ(RopeAttentionFactor(yarn), 1.0);  // DeepSeek V2's setting

  // Dynamic NTK: unchanged up to the original length, a larger base beyond it.
  RopeParams dyn = base;
  dyn.scaling = {.type = RopeScalingType::kDynamicNtk, .factor = 2, .original_max_position_embeddings = 4096};
  dyn.scaling.dynamic_seq_len = 4096;
  EXPECT_DOUBLE_EQ(RopeInvFreq(dyn)[10], plain[10]);
  dyn.scaling.dynamic_seq_len = 8192;
  const double new_base = 500000 * std::pow(2.0 * 8192 / 4096 - 1, 128.0 / 126);
  EXPECT_NEAR(RopeInvFreq(dyn)[10], std::pow(new_base, -20.0 / 128), 1e-15);

  RopeParams bad = base;
  bad.rotary_dim = 7;
  EXPECT_EQ(ValidateRopeParams(bad).code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace slimkv::kernels
