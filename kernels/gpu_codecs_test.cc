// GPU reconstruction (kernels/gpu.h DecodeSlim, DecodeLatent) against the CPU codecs
// (codecs.h DecodeSlim, DecodeLatentNative), which codecs_test checks against their float64
// references. Both sides compute in float32 from the same stored values, so they agree to float32
// rounding: relative Frobenius error ≤ 1e-5 into float32 outputs (bound until measured on a GPU),
// ≤ 4e-3 into bf16 (a rounding flip is one bf16 step). Token counts that are not a multiple of
// the 64-row tile, one token, none; stored dtypes fp32/fp16/bf16; skipped without a GPU.
#include <algorithm>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "absl/strings/str_cat.h"
#include "kernels/codecs.h"
#include "kernels/gpu.h"
#include "kernels/internal/test_matrices.h"
#include "kernels/layer_factors.h"

namespace slimkv::kernels {
namespace {

using namespace test;  // NOLINT: the shared test helpers

constexpr int kTokens[] = {0, 1, 13, 130};
constexpr DType kDTypes[] = {DType::kF32, DType::kF16, DType::kBF16};

class GpuDecode : public testing::Test {
 protected:
  void SetUp() override {
    if (!gpu::Device().usable) GTEST_SKIP() << "no usable GPU: " << gpu::Device().reason;
  }

  // Copies `bytes` of host data to a new device buffer.
  static gpu::DeviceBuffer Upload(const void* host, size_t bytes) {
    absl::StatusOr<gpu::DeviceBuffer> b = gpu::DeviceBuffer::Allocate(bytes);
    EXPECT_TRUE(b.ok()) << b.status();
    EXPECT_TRUE(b->Upload(host, bytes).ok());
    return *std::move(b);
  }

  // Runs `decode` on the device for stored rows `stored` (host), returns K and V as doubles.
  template <class Decode>
  static std::pair<Mat, Mat> OnDevice(const Buf& stored, int64_t tokens, int32_t first,
                                      size_t nk, size_t nv, DType out, Decode decode) {
    gpu::DeviceBuffer page = Upload(stored.bytes.data(), stored.bytes.size());
    absl::StatusOr<gpu::DeviceBuffer> k = gpu::DeviceBuffer::Allocate(nk * DTypeSize(out));
    absl::StatusOr<gpu::DeviceBuffer> v = gpu::DeviceBuffer::Allocate(nv * DTypeSize(out));
    EXPECT_TRUE(k.ok() && v.ok());
    const absl::Status s = decode(gpu::DevicePage{page.data(), stored.dtype, tokens, first},
                                  k->data(), v->data());
    EXPECT_TRUE(s.ok()) << s;
    Buf kh(out, nk), vh(out, nv);
    EXPECT_TRUE(k->Download(kh.bytes.data(), kh.bytes.size()).ok());
    EXPECT_TRUE(v->Download(vh.bytes.data(), vh.bytes.size()).ok());
    return {kh.values(), vh.values()};
  }

  static double Tolerance(DType out) { return out == DType::kF32 ? 1e-5 : 4e-3; }
};

TEST_F(GpuDecode, SlimMatchesTheCpuCodec) {
  std::mt19937_64 rng(91);
  for (RopePairing pairing : {RopePairing::kHalfSplit, RopePairing::kInterleaved}) {
    const int d = 96, h_kv = 6, d_h = 16, e = h_kv * d_h;  // e = 96: not a multiple of 64
    const std::vector<float> w_k = Conditioned(rng, d, e, 8.0), w_v = Conditioned(rng, d, e, 8.0);
    const std::vector<float> b_k = ToF(Gaussian(rng, e)), b_v = ToF(Gaussian(rng, e));
    KvCodecLayer l;
    l.proj = {d, h_kv, d_h, w_k.data(), w_v.data(), b_k.data(), b_v.data()};
    absl::StatusOr<RopeTable> rope =
        RopeTable::Create(TestRope(d_h, d_h / 2, pairing, RopeScalingType::kYarn));
    ASSERT_TRUE(rope.ok()) << rope.status();
    l.rope = &*rope;
    absl::StatusOr<std::vector<float>> w_kv = ComputeSlimMatrix(l.proj);
    ASSERT_TRUE(w_kv.ok()) << w_kv.status();
    l.w_kv = w_kv->data();
    absl::StatusOr<std::unique_ptr<gpu::DeviceLayer>> layer = gpu::DeviceLayer::ForSlim(l, 1024);
    ASSERT_TRUE(layer.ok()) << layer.status();
    for (int tokens : kTokens) {
      for (DType in : kDTypes) {
        for (DType out : {DType::kF32, DType::kBF16}) {
          SCOPED_TRACE(absl::StrCat(static_cast<int>(pairing), " T=", tokens, " ",
                                    DTypeName(in), "→", DTypeName(out)));
          const int32_t first = 300;
          const Buf stored = Buf::From(Gaussian(rng, size_t{1} * tokens * e), in);
          std::vector<int32_t> pos(tokens);
          std::iota(pos.begin(), pos.end(), first);
          Buf k(out, size_t{1} * tokens * e), v(out, size_t{1} * tokens * e);
          ASSERT_TRUE(DecodeSlim(l, tokens, pos.data(), stored.in(), k.out(), v.out()).ok());
          const auto [kg, vg] = OnDevice(stored, tokens, first, k.n, v.n, out,
                                         [&](const gpu::DevicePage& p, void* kd, void* vd) {
                                           return gpu::DecodeSlim(l, **layer, p, out, kd, vd);
                                         });
          if (tokens == 0) continue;
          EXPECT_LE(RelFro(kg, k.values()), Tolerance(out));
          EXPECT_LE(RelFro(vg, v.values()), Tolerance(out));
        }
      }
    }
  }
}

TEST_F(GpuDecode, LatentMatchesTheCpuCodec) {
  std::mt19937_64 rng(92);
  for (bool deepseek : {true, false}) {
    LatentLayout l;
    l.heads = 4;
    l.d_c = 80;  // not a multiple of the 16-wide k slice
    l.k_head_dim = deepseek ? 12 : 8;
    l.v_head_dim = 8;
    l.rope_dim = 4;
    l.shared_rope = deepseek;
    std::vector<int> rope_cols;
    if (!deepseek) {  // MHA2MLA: per-head rope places
      for (int h = 0; h < l.heads; ++h) {
        std::vector<int> cols = {h % 4, (h + 1) % 4, h % 4 + 4, (h + 1) % 4 + 4};
        std::sort(cols.begin(), cols.end());
        rope_cols.insert(rope_cols.end(), cols.begin(), cols.end());
      }
      l.rope_cols = rope_cols.data();
    }
    const std::vector<float> w_uk = ToF(Gaussian(rng, size_t{1} * l.d_c * l.heads * l.d_nope()));
    const std::vector<float> w_uv =
        ToF(Gaussian(rng, size_t{1} * l.d_c * l.heads * l.v_head_dim));
    l.w_uk = w_uk.data();
    l.w_uv = w_uv.data();
    ASSERT_TRUE(ValidateLatentLayout(l).ok());
    absl::StatusOr<std::unique_ptr<gpu::DeviceLayer>> layer = gpu::DeviceLayer::ForLatent(l);
    ASSERT_TRUE(layer.ok()) << layer.status();
    for (int tokens : kTokens) {
      for (DType in : kDTypes) {
        for (DType out : {DType::kF32, DType::kBF16}) {
          SCOPED_TRACE(absl::StrCat(deepseek ? "deepseek" : "mha2mla", " T=", tokens, " ",
                                    DTypeName(in), "→", DTypeName(out)));
          const Buf stored = Buf::From(Gaussian(rng, size_t{1} * tokens * l.stored_elems()), in);
          Buf k(out, size_t{1} * tokens * l.heads * l.k_head_dim);
          Buf v(out, size_t{1} * tokens * l.heads * l.v_head_dim);
          ASSERT_TRUE(DecodeLatentNative(l, tokens, stored.in(), k.out(), v.out()).ok());
          const auto [kg, vg] = OnDevice(stored, tokens, 0, k.n, v.n, out,
                                         [&](const gpu::DevicePage& p, void* kd, void* vd) {
                                           return gpu::DecodeLatent(l, **layer, p, out, kd, vd);
                                         });
          if (tokens == 0) continue;
          EXPECT_LE(RelFro(kg, k.values()), Tolerance(out));
          EXPECT_LE(RelFro(vg, v.values()), Tolerance(out));
        }
      }
    }
  }
}

}  // namespace
}  // namespace slimkv::kernels
