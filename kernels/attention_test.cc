// Conformance of decode attention on the cache (kernels/attention.h): every mode × geometry ×
// stored dtype × page layout against the float64 reference (attention_ref.h) run on K and V
// reconstructed page by page by the codec references (codecs_ref.h) — an oracle that shares
// none of the fast path's algebra (no absorption, no online softmax, no BLAS). Then: the exact
// (o, lse) merge, logits far beyond float's exp range, softcapping, and bad input.
//
// Tolerances: relative Frobenius error of o over all heads, and |lse − lse_ref| / max(1, |lse_ref|)
// (lse grows with the logits, and float32 logits carry a relative rounding): float32 arithmetic
// against float64. Measured worst case over the table ≤ 9e-7 for o and ≤ 6e-7 for lse;
// bounds:   full 5e-6 / 5e-6;   slim, xcache, projected, latent 1e-5 / 5e-6.
// They do not depend on the stored dtype: both sides read the same stored values.
//
// Every test runs on each backend present: the CPU always, the GPU (kernels/gpu.h: full, slim,
// native latent; pages uploaded to device memory) where Device().usable, else skipped with the
// reason. The GPU bounds are the CPU's until measured on a GPU (float32 arithmetic too, in
// another order).
#include "kernels/attention.h"

#include <cmath>
#include <cstring>
#include <limits>
#include <numeric>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "absl/strings/str_cat.h"
#include "kernels/attention_ref.h"
#include "kernels/codecs_ref.h"
#include "kernels/gpu.h"
#include "kernels/quant.h"
#include "kernels/internal/codec_util.h"
#include "kernels/internal/test_matrices.h"
#include "kernels/layer_factors.h"
#include "kernels/rope_retention.h"

namespace slimkv::kernels {
namespace {

using namespace test;  // NOLINT: the shared test helpers

constexpr DType kDTypes[] = {DType::kF32, DType::kF16, DType::kBF16};

enum class Mode { kFull, kSlim, kXcache, kProjected, kProjectedKept, kLatent };

const char* ModeName(Mode m) {
  switch (m) {
    case Mode::kFull: return "full";
    case Mode::kSlim: return "slim";
    case Mode::kXcache: return "xcache";
    case Mode::kProjected: return "projected";
    case Mode::kProjectedKept: return "projected_kept_half_rank";
    case Mode::kLatent: return "latent";
  }
  return "?";
}

struct Tolerance {
  double o, lse;
};
Tolerance TolFor(Mode m) {
  switch (m) {
    case Mode::kFull: return {5e-6, 5e-6};
    default: return {1e-5, 5e-6};
  }
}

// A page layout: tokens and first position of each page.
struct Layout {
  std::string name;
  std::vector<std::pair<int, int32_t>> pages;
};

std::vector<Layout> Layouts() {
  return {
      {"one_token", {{1, 0}}},
      {"seven_tokens", {{7, 100}}},
      {"one_page", {{16, 0}}},
      {"three_pages", {{16, 0}, {16, 16}, {16, 32}}},
      {"not_multiple_of_16", {{13, 200}, {13, 213}, {13, 226}}},
      {"ragged_with_empty", {{3, 5}, {0, 8}, {16, 500}, {1, 9000}}},
  };
}

struct Geometry {
  std::string name;
  bool mla;
  int h_q;
  // MHA / GQA / wide
  int d, h_kv, d_h, rotary_dim;  // rotary_dim 0: no RoPE (t5)
  RopePairing pairing;
  bool bias;
  RopeScalingType scaling;
  // MLA
  bool deepseek;
};

void PrintTo(const Geometry& g, std::ostream* os) { *os << g.name; }

enum class Backend { kCpu, kGpu };

class AttentionConformance : public testing::TestWithParam<std::tuple<Geometry, Backend>> {
 protected:
  const Geometry& geometry() const { return std::get<0>(GetParam()); }
  bool gpu() const { return std::get<1>(GetParam()) == Backend::kGpu; }

  void SetUp() override {
    if (gpu() && !gpu::Device().usable) GTEST_SKIP() << "no usable GPU: " << gpu::Device().reason;
    const Geometry& g = geometry();
    rng_.seed(std::hash<std::string>()(g.name));
    if (g.mla) {
      SetUpLatent(g);
    } else {
      SetUpKv(g);
    }
  }

  void SetUpKv(const Geometry& g) {
    e_ = g.h_kv * g.d_h;
    w_k_ = Conditioned(rng_, g.d, e_, 8.0);
    w_v_ = Conditioned(rng_, g.d, e_, 8.0);
    if (g.bias) {
      b_k_ = ToF(Gaussian(rng_, e_));
      b_v_ = ToF(Gaussian(rng_, e_));
    }
    layer_.proj = {g.d,         g.h_kv,      g.d_h, w_k_.data(), w_v_.data(),
                   g.bias ? b_k_.data() : nullptr, g.bias ? b_v_.data() : nullptr};
    if (g.rotary_dim > 0) {
      absl::StatusOr<RopeTable> rope =
          RopeTable::Create(TestRope(g.d_h, g.rotary_dim, g.pairing, g.scaling));
      ASSERT_TRUE(rope.ok()) << rope.status();
      rope_ = *std::move(rope);
      layer_.rope = &*rope_;
    }
    if (e_ >= g.d) {
      absl::StatusOr<std::vector<float>> w_kv = ComputeSlimMatrix(layer_.proj);
      ASSERT_TRUE(w_kv.ok()) << w_kv.status();
      w_kv_ = *std::move(w_kv);
      layer_.w_kv = w_kv_.data();
    }
    heads_ = {g.h_kv, g.d_h, g.d_h};
  }

  void SetUpLatent(const Geometry& g) {
    const int heads = 4, d_c = 16, dv = 8, rope_dim = 4;
    const int dk = g.deepseek ? 12 : 8;  // DeepSeek: 8 nope + 4 rope; MHA2MLA: d_h 8
    latent_.heads = heads;
    latent_.d_c = d_c;
    latent_.k_head_dim = dk;
    latent_.v_head_dim = dv;
    latent_.rope_dim = rope_dim;
    latent_.shared_rope = g.deepseek;
    w_uk_ = ToF(Gaussian(rng_, static_cast<size_t>(d_c) * heads * (dk - rope_dim)));
    w_uv_ = ToF(Gaussian(rng_, static_cast<size_t>(d_c) * heads * dv));
    latent_.w_uk = w_uk_.data();
    latent_.w_uv = w_uv_.data();
    if (!g.deepseek) {  // MHA2MLA keeps different half-split pairs per head: (p, p + 4)
      for (int h = 0; h < heads; ++h) {
        std::vector<int> cols = {h % 4, (h + 1) % 4, h % 4 + 4, (h + 1) % 4 + 4};
        std::sort(cols.begin(), cols.end());
        rope_cols_.insert(rope_cols_.end(), cols.begin(), cols.end());
      }
      latent_.rope_cols = rope_cols_.data();
    }
    ASSERT_TRUE(ValidateLatentLayout(latent_).ok());
    heads_ = {heads, dk, dv};
  }

  // Prepares a projected layer: full rank, or half rank with two rope pairs kept per head.
  void SetUpProjected(bool kept) {
    const Geometry& g = geometry();
    kept_.clear();
    if (kept) {
      for (int h = 0; h < g.h_kv; ++h) {
        for (int c : {0, 1}) kept_.push_back(h * g.d_h + c);
      }
    }
    const std::vector<int> k_cols = kept ? ComplementColumns(kept_, e_) : std::vector<int>{};
    absl::StatusOr<JointSvd> svd = ComputeJointSvd(layer_.proj, k_cols);
    ASSERT_TRUE(svd.ok()) << svd.status();
    const int full_rank = static_cast<int>(svd->sigma.size());
    const int rank = kept ? full_rank / 2 : full_rank;
    basis_ = JointBasis(*svd, rank);
    layer_.basis = basis_.data();
    layer_.rank = rank;
    layer_.kept_k_cols = kept ? kept_.data() : nullptr;
    layer_.n_kept = static_cast<int>(kept_.size());
  }

  int64_t StoredCols(Mode m) const {
    switch (m) {
      case Mode::kFull: return int64_t{heads_.h_kv} * (heads_.d_k + heads_.d_v);
      case Mode::kSlim: return SlimStoredElems(layer_.proj);
      case Mode::kXcache: return XcacheStoredElems(layer_.proj);
      case Mode::kProjected:
      case Mode::kProjectedKept: return ProjectedStoredElems(layer_);
      case Mode::kLatent: return latent_.stored_elems();
    }
    return 0;
  }

  // K [T, h_kv, d_k], V [T, h_kv, d_v] of one stored page, by the codec references.
  void Reconstruct(Mode m, const Buf& stored, int T, int32_t first, Mat* k, Mat* v) {
    std::vector<int32_t> pos(T);
    std::iota(pos.begin(), pos.end(), first);
    const size_t nk = size_t{1} * T * heads_.h_kv * heads_.d_k;
    const size_t nv = size_t{1} * T * heads_.h_kv * heads_.d_v;
    Buf kb(DType::kF32, nk), vb(DType::kF32, nv);
    absl::Status s;
    switch (m) {
      case Mode::kFull: {
        const Mat all = stored.values();
        *k = Mat(all.begin(), all.begin() + nk);
        *v = Mat(all.begin() + nk, all.end());
        return;
      }
      case Mode::kSlim:
        s = DecodeSlimRef(layer_, T, pos.data(), stored.in(), kb.out(), vb.out());
        break;
      case Mode::kXcache:
        s = DecodeXcacheRef(layer_, T, pos.data(), stored.in(), kb.out(), vb.out());
        break;
      case Mode::kProjected:
      case Mode::kProjectedKept:
        s = DecodeProjectedRef(layer_, T, pos.data(), stored.in(), kb.out(), vb.out());
        break;
      case Mode::kLatent:
        s = DecodeLatentNativeRef(latent_, T, stored.in(), kb.out(), vb.out());
        break;
    }
    ASSERT_TRUE(s.ok()) << s;
    *k = kb.values();
    *v = vb.values();
  }

  absl::Status Attend(Mode m, std::span<const StoredPage> pages, const float* q,
                      const AttentionParams& p, AttentionOut out) {
    if (gpu()) return AttendOnGpu(m, pages, q, p, out);
    switch (m) {
      case Mode::kFull: return AttendFull(heads_, pages, q, p, out);
      case Mode::kSlim: return AttendSlim(layer_, pages, q, p, out);
      case Mode::kXcache: return AttendXcache(layer_, pages, q, p, out);
      case Mode::kProjected:
      case Mode::kProjectedKept: return AttendProjected(layer_, pages, q, p, out);
      case Mode::kLatent: return AttendLatent(latent_, pages, q, p, out);
    }
    return absl::InternalError("mode");
  }

  // The same call on the GPU: pages copied to device memory, the layer's matrices once.
  absl::Status AttendOnGpu(Mode m, std::span<const StoredPage> pages, const float* q,
                           const AttentionParams& p, AttentionOut out) {
    std::vector<gpu::DeviceBuffer> buffers;
    std::vector<gpu::DevicePage> device_pages;
    for (const StoredPage& page : pages) {
      const size_t bytes = page.tokens * StoredCols(m) * DTypeSize(page.data.dtype);
      absl::StatusOr<gpu::DeviceBuffer> b = gpu::DeviceBuffer::Allocate(bytes);
      if (!b.ok()) return b.status();
      if (absl::Status s = b->Upload(page.data.data, bytes); !s.ok()) return s;
      device_pages.push_back({b->data(), page.data.dtype, page.tokens, page.first_position});
      buffers.push_back(*std::move(b));
    }
    switch (m) {
      case Mode::kFull: return gpu::AttendFull(heads_, device_pages, q, p, out);
      case Mode::kSlim: {
        if (slim_layer_ == nullptr) {
          absl::StatusOr<std::unique_ptr<gpu::DeviceLayer>> l =
              gpu::DeviceLayer::ForSlim(layer_, kMaxPosition);
          if (!l.ok()) return l.status();
          slim_layer_ = *std::move(l);
        }
        return gpu::AttendSlim(layer_, *slim_layer_, device_pages, q, p, out);
      }
      case Mode::kLatent: {
        if (latent_layer_ == nullptr) {
          absl::StatusOr<std::unique_ptr<gpu::DeviceLayer>> l = gpu::DeviceLayer::ForLatent(latent_);
          if (!l.ok()) return l.status();
          latent_layer_ = *std::move(l);
        }
        return gpu::AttendLatent(latent_, *latent_layer_, device_pages, q, p, out);
      }
      default: return absl::UnimplementedError("not a GPU mode");
    }
  }

  // Modes of this geometry on this backend (the GPU has no xcache or projected latent).
  std::vector<Mode> Modes() const {
    if (geometry().mla) return {Mode::kFull, Mode::kLatent};
    std::vector<Mode> m = {Mode::kFull};
    if (!gpu()) m.insert(m.end(), {Mode::kXcache, Mode::kProjected, Mode::kProjectedKept});
    if (e_ >= geometry().d) m.push_back(Mode::kSlim);
    return m;
  }

  // One case: random stored pages of `layout` in dtype t, queries scaled by q_scale; fast path
  // against the reference. Returns the errors: o relative Frobenius; lse absolute, relative
  // past 1.
  std::pair<double, double> RunCase(Mode m, DType t, const Layout& layout, double q_scale,
                                    double softcap) {
    const int h_q = geometry().h_q;
    const int64_t cols = StoredCols(m);
    std::vector<Buf> bufs;
    std::vector<StoredPage> pages;
    Mat k_all, v_all;
    for (const auto& [tokens, first] : layout.pages) {
      bufs.push_back(Buf::From(Gaussian(rng_, tokens * cols), t));
    }
    for (size_t i = 0; i < bufs.size(); ++i) {
      const auto [tokens, first] = layout.pages[i];
      pages.push_back({bufs[i].in(), tokens, first});
      if (tokens == 0) continue;
      Mat k, v;
      Reconstruct(m, bufs[i], tokens, first, &k, &v);
      k_all.insert(k_all.end(), k.begin(), k.end());
      v_all.insert(v_all.end(), v.begin(), v.end());
    }
    const int64_t total = static_cast<int64_t>(k_all.size()) / (heads_.h_kv * heads_.d_k);
    Mat q = Gaussian(rng_, static_cast<size_t>(h_q) * heads_.d_k);
    for (double& x : q) x *= q_scale;
    const std::vector<float> qf = ToF(q);
    const Mat qd(qf.begin(), qf.end());  // the reference sees exactly the float queries
    const AttentionParams p{h_q, 1.0 / std::sqrt(double(heads_.d_k)), softcap};

    Mat o_ref(static_cast<size_t>(h_q) * heads_.d_v), lse_ref(h_q);
    EXPECT_TRUE(AttendRef(heads_, total, k_all.data(), v_all.data(), qd.data(), p, o_ref.data(),
                          lse_ref.data())
                    .ok());
    std::vector<float> o(o_ref.size()), lse(h_q);
    const absl::Status s = Attend(m, pages, qf.data(), p, {o.data(), lse.data()});
    EXPECT_TRUE(s.ok()) << s;
    double lse_err = 0;
    for (int i = 0; i < h_q; ++i) {
      EXPECT_TRUE(std::isfinite(lse[i])) << "head " << i;
      lse_err = std::max(lse_err,
                         std::abs(lse[i] - lse_ref[i]) / std::max(1.0, std::abs(lse_ref[i])));
    }
    for (float x : o) EXPECT_TRUE(std::isfinite(x));
    return {RelFro(Mat(o.begin(), o.end()), o_ref), lse_err};
  }

  std::mt19937_64 rng_;
  int e_ = 0;
  std::vector<float> w_k_, w_v_, b_k_, b_v_, w_kv_, basis_, w_uk_, w_uv_;
  std::vector<int> kept_, rope_cols_;
  std::optional<RopeTable> rope_;
  KvCodecLayer layer_;
  LatentLayout latent_;
  KvHeads heads_;
  // GPU backend: the layer's matrices on the device, made on first use.
  static constexpr int32_t kMaxPosition = 10000;  // past every layout's last position
  std::unique_ptr<gpu::DeviceLayer> slim_layer_, latent_layer_;
};

TEST_P(AttentionConformance, EveryModeDtypeAndLayoutMatchesTheReference) {
  for (Mode m : Modes()) {
    if (m == Mode::kProjected || m == Mode::kProjectedKept) {
      SetUpProjected(m == Mode::kProjectedKept);
    }
    const Tolerance tol = TolFor(m);
    for (DType t : kDTypes) {
      for (const Layout& layout : Layouts()) {
        SCOPED_TRACE(absl::StrCat(ModeName(m), " ", DTypeName(t), " ", layout.name));
        // q scaled so that logits spread over several units: a softmax far from uniform.
        const auto [o_err, lse_err] = RunCase(m, t, layout, 4.0, 0.0);
        EXPECT_LE(o_err, tol.o);
        EXPECT_LE(lse_err, tol.lse);
      }
    }
  }
}

// Logits of ±thousands overflow exp in float without the running maximum; with it, the result
// matches the reference to float32 rounding of the logits (relative 1e-7 of ~1e3).
TEST_P(AttentionConformance, HugeLogitsStayFiniteAndExact) {
  for (Mode m : Modes()) {
    if (m == Mode::kProjected || m == Mode::kProjectedKept) SetUpProjected(false);
    SCOPED_TRACE(ModeName(m));
    const auto [o_err, lse_err] =
        RunCase(m, DType::kF32, Layouts()[3], /*q_scale=*/2000.0, /*softcap=*/0.0);
    EXPECT_LE(o_err, 2e-3);
    EXPECT_LE(lse_err, 1e-5);  // relative: lse is of order 1e3 here
  }
}

// gemma2's logit softcapping, with logits large enough for tanh to bend them.
TEST_P(AttentionConformance, SoftcapMatchesTheReference) {
  for (Mode m : Modes()) {
    if (m == Mode::kProjected || m == Mode::kProjectedKept) SetUpProjected(false);
    SCOPED_TRACE(ModeName(m));
    const auto [o_err, lse_err] = RunCase(m, DType::kBF16, Layouts()[4], 20.0, /*softcap=*/5.0);
    EXPECT_LE(o_err, TolFor(m).o);
    EXPECT_LE(lse_err, TolFor(m).lse);
  }
}

// Attention over the pages split in two sets, merged with MergeAttention, equals attention over
// all of them (and the reference); a side with no tokens is the merge's identity.
TEST_P(AttentionConformance, MergeOfTwoPageSetsEqualsAttentionOverAll) {
  const int h_q = geometry().h_q;
  for (Mode m : Modes()) {
    if (m == Mode::kProjected || m == Mode::kProjectedKept) SetUpProjected(false);
    SCOPED_TRACE(ModeName(m));
    const int64_t cols = StoredCols(m);
    const std::vector<std::pair<int, int32_t>> layout = {{16, 0}, {16, 16}, {5, 32}, {16, 37}};
    std::vector<Buf> bufs;
    std::vector<StoredPage> pages;
    for (const auto& [tokens, first] : layout) {
      bufs.push_back(Buf::From(Gaussian(rng_, tokens * cols), DType::kBF16));
    }
    for (size_t i = 0; i < bufs.size(); ++i) {
      pages.push_back({bufs[i].in(), layout[i].first, layout[i].second});
    }
    std::vector<float> q = ToF(Gaussian(rng_, static_cast<size_t>(h_q) * heads_.d_k));
    for (float& x : q) x *= 4;
    const AttentionParams p{h_q, 1.0 / std::sqrt(double(heads_.d_k)), 0.0};
    const size_t no = static_cast<size_t>(h_q) * heads_.d_v;
    std::vector<float> o_all(no), lse_all(h_q), o1(no), lse1(h_q), o2(no), lse2(h_q);
    const std::span<const StoredPage> all(pages);
    ASSERT_TRUE(Attend(m, all, q.data(), p, {o_all.data(), lse_all.data()}).ok());
    for (size_t split = 1; split < pages.size(); ++split) {
      ASSERT_TRUE(Attend(m, all.first(split), q.data(), p, {o1.data(), lse1.data()}).ok());
      ASSERT_TRUE(Attend(m, all.subspan(split), q.data(), p, {o2.data(), lse2.data()}).ok());
      std::vector<float> o(no), lse(h_q);
      MergeAttention(h_q, heads_.d_v, o1.data(), lse1.data(), o2.data(), lse2.data(), o.data(),
                     lse.data());
      EXPECT_LE(RelFro(Mat(o.begin(), o.end()), Mat(o_all.begin(), o_all.end())), 1e-6)
          << "split " << split;
      for (int i = 0; i < h_q; ++i) EXPECT_NEAR(lse[i], lse_all[i], 1e-5);
    }
    // No tokens: o = 0, lse = −inf, and merging it changes nothing.
    std::vector<float> o_none(no, 7.0f), lse_none(h_q, 7.0f);
    ASSERT_TRUE(Attend(m, all.first(0), q.data(), p, {o_none.data(), lse_none.data()}).ok());
    for (float x : o_none) EXPECT_EQ(x, 0.0f);
    for (float x : lse_none) EXPECT_EQ(x, -std::numeric_limits<float>::infinity());
    std::vector<float> o(no), lse(h_q);
    MergeAttention(h_q, heads_.d_v, o_all.data(), lse_all.data(), o_none.data(), lse_none.data(),
                   o.data(), lse.data());
    EXPECT_EQ(o, o_all);
    EXPECT_EQ(lse, lse_all);
  }
}

INSTANTIATE_TEST_SUITE_P(
    Geometries, AttentionConformance,
    testing::Combine(testing::Values(
        // name, mla, h_q, d, h_kv, d_h, rotary_dim, pairing, bias, scaling, deepseek
        Geometry{"mha_square", false, 4, 32, 4, 8, 8, RopePairing::kHalfSplit, false,
                 RopeScalingType::kNone, false},
        Geometry{"gqa", false, 8, 32, 2, 8, 8, RopePairing::kHalfSplit, false,
                 RopeScalingType::kLlama3, false},
        Geometry{"wide_t5", false, 4, 24, 4, 8, 0, RopePairing::kHalfSplit, false,
                 RopeScalingType::kNone, false},
        // MHA K/V heads with two q heads each: slim's W_KV column blocks per group.
        Geometry{"qwen2_biases", false, 8, 32, 4, 8, 8, RopePairing::kHalfSplit, true,
                 RopeScalingType::kNone, false},
        Geometry{"phi3_partial_rotary_yarn", false, 4, 32, 4, 8, 4, RopePairing::kHalfSplit,
                 false, RopeScalingType::kYarn, false},
        Geometry{"interleaved_bias_wide", false, 4, 24, 4, 8, 8, RopePairing::kInterleaved, true,
                 RopeScalingType::kDynamicNtk, false},
        Geometry{"deepseek_mla", true, 4, 0, 0, 0, 0, RopePairing::kInterleaved, false,
                 RopeScalingType::kNone, true},
        // Per-head rope dims and two q heads per latent head.
        Geometry{"mha2mla", true, 8, 0, 0, 0, 0, RopePairing::kHalfSplit, false,
                 RopeScalingType::kNone, false}),
                     testing::Values(Backend::kCpu, Backend::kGpu)),
    [](const testing::TestParamInfo<std::tuple<Geometry, Backend>>& info) {
      return absl::StrCat(std::get<0>(info.param).name,
                          std::get<1>(info.param) == Backend::kGpu ? "_gpu" : "_cpu");
    });

// ---- bad input: a clear status, nothing written ----

TEST(AttentionInput, BadShapesAreInvalidArgumentAndWriteNothing) {
  std::mt19937_64 rng(5);
  const std::vector<float> kv = ToF(Gaussian(rng, 2 * 4 * 32));
  const std::vector<float> q = ToF(Gaussian(rng, 8 * 8));
  std::vector<float> o(8 * 8, 7.0f), lse(8, 7.0f);
  const StoredPage page{{kv.data(), DType::kF32}, 4, 0};
  const KvHeads heads{4, 8, 8};
  auto untouched = [&] {
    for (float x : o) EXPECT_EQ(x, 7.0f);
    for (float x : lse) EXPECT_EQ(x, 7.0f);
  };
  // h_q = 6 is not a multiple of 4 KV heads.
  EXPECT_EQ(AttendFull(heads, {&page, 1}, q.data(), {6, 0.3, 0}, {o.data(), lse.data()}).code(),
            absl::StatusCode::kInvalidArgument);
  untouched();
  const StoredPage negative{{kv.data(), DType::kF32}, -1, 0};
  EXPECT_EQ(
      AttendFull(heads, {&negative, 1}, q.data(), {4, 0.3, 0}, {o.data(), lse.data()}).code(),
      absl::StatusCode::kInvalidArgument);
  const StoredPage no_data{{nullptr, DType::kF32}, 4, 0};
  EXPECT_EQ(
      AttendFull(heads, {&no_data, 1}, q.data(), {4, 0.3, 0}, {o.data(), lse.data()}).code(),
      absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(AttendFull(heads, {&page, 1}, nullptr, {4, 0.3, 0}, {o.data(), lse.data()}).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(AttendFull(heads, {&page, 1}, q.data(), {4, 0.3, -1}, {o.data(), lse.data()}).code(),
            absl::StatusCode::kInvalidArgument);
  untouched();
  EXPECT_EQ(AttendRef(heads, 4, nullptr, nullptr, nullptr, {4, 0.3, 0}, nullptr, nullptr).code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(AttentionInput, SlimWithoutItsMatrixIsFailedPrecondition) {
  std::mt19937_64 rng(6);
  const std::vector<float> w = Conditioned(rng, 32, 32, 4.0);
  KvCodecLayer l;
  l.proj = {32, 4, 8, w.data(), w.data(), nullptr, nullptr};
  const std::vector<float> kr = ToF(Gaussian(rng, 4 * 32));
  const std::vector<float> q = ToF(Gaussian(rng, 4 * 8));
  std::vector<float> o(4 * 8), lse(4);
  const StoredPage page{{kr.data(), DType::kF32}, 4, 0};
  EXPECT_EQ(AttendSlim(l, {&page, 1}, q.data(), {4, 0.3, 0}, {o.data(), lse.data()}).code(),
            absl::StatusCode::kFailedPrecondition);
}

// The device dequantizer is bit-identical to QuantDecodeRef on any bytes (NaN codes, int8 −128,
// odd scales), every format, kept bf16 columns or not, row counts that leave a partial int4
// per-channel block.
TEST(GpuBackend, DequantizeIsBitIdenticalToTheReference) {
  if (!gpu::Device().usable) GTEST_SKIP() << "no usable GPU: " << gpu::Device().reason;
  std::mt19937 rng(78);
  const uint64_t rows = 35, cols = 300;
  for (QuantKind kind : {QuantKind::kFp8E4M3, QuantKind::kInt8, QuantKind::kInt4}) {
    for (QuantAxis axis : {QuantAxis::kPerToken, QuantAxis::kPerChannel}) {
      if (axis == QuantAxis::kPerChannel && kind != QuantKind::kInt4) continue;
      for (uint32_t keep : {0u, 20u}) {
        const QuantParams p{kind, axis, keep};
        SCOPED_TRACE(absl::StrCat(static_cast<int>(kind), " axis ", static_cast<int>(axis),
                                  " keep ", keep));
        std::vector<uint8_t> enc(QuantBytes(p, rows, cols));
        for (uint8_t& b : enc) b = static_cast<uint8_t>(rng());
        std::vector<float> want(rows * cols), got(rows * cols);
        QuantDecodeRef(p, enc.data(), rows, cols, want.data(), DType::kF32);
        absl::StatusOr<gpu::DeviceBuffer> src = gpu::DeviceBuffer::Allocate(enc.size());
        absl::StatusOr<gpu::DeviceBuffer> dst = gpu::DeviceBuffer::Allocate(4 * got.size());
        ASSERT_TRUE(src.ok() && dst.ok());
        ASSERT_TRUE(src->Upload(enc.data(), enc.size()).ok());
        ASSERT_TRUE(gpu::Dequantize(p, src->data(), rows, cols, static_cast<float*>(dst->data())).ok());
        ASSERT_TRUE(dst->Download(got.data(), 4 * got.size()).ok());
        EXPECT_EQ(std::memcmp(want.data(), got.data(), 4 * got.size()), 0);
      }
    }
  }
}

// Without a usable GPU (no CUDA in the build, no driver, no device) the backend says why, and
// every op answers UNAVAILABLE and writes nothing, so callers fall back to the CPU.
TEST(GpuBackend, WithoutAGpuEveryOpIsUnavailableAndWritesNothing) {
  if (gpu::Device().usable) GTEST_SKIP() << "a GPU is present: " << gpu::Device().name;
  EXPECT_FALSE(gpu::Device().reason.empty());
  EXPECT_EQ(gpu::SelfTest().code(), absl::StatusCode::kUnavailable);
  const KvHeads heads{4, 8, 8};
  EXPECT_EQ(gpu::SupportsAttendFull(heads, 4).code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(gpu::DeviceBuffer::Allocate(64).status().code(), absl::StatusCode::kUnavailable);
  std::vector<float> kv(2 * 4 * 32, 1.0f), q(4 * 8, 1.0f), o(4 * 8, 7.0f), lse(4, 7.0f);
  const gpu::DevicePage page{kv.data(), DType::kF32, 4, 0};
  EXPECT_EQ(gpu::AttendFull(heads, {&page, 1}, q.data(), {4, 0.3, 0}, {o.data(), lse.data()}).code(),
            absl::StatusCode::kUnavailable);
  for (float x : o) EXPECT_EQ(x, 7.0f);
  for (float x : lse) EXPECT_EQ(x, 7.0f);
  EXPECT_EQ(gpu::DeviceBytesInUse(), 0);
}

}  // namespace
}  // namespace slimkv::kernels
