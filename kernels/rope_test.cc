// RoPE (rope.h): the fast path against the reference, the documented pairings and the scaling
// schedules.
#include <cmath>
#include <numbers>
#include <random>
#include <vector>

#include <gtest/gtest.h>

#include "kernels/internal/test_matrices.h"
#include "kernels/rope.h"

namespace slimkv::kernels {
namespace {

using namespace test;  // NOLINT: the shared test helpers

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
  base.fp32_angles = false;  // the float64 schedule; Float32ScheduleFollowsIt checks the other
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

// With fp32_angles (the default) the frequencies are float32 numbers, as HF transformers forms
// them in float32 (clients/python/tests/test_hf_reference.py compares them bit for bit with
// its inv_freq buffers): each within a few float32 ulps (llama3 blends in float32 too) of the
// float64 schedule.
TEST(Rope, Float32ScheduleFollowsIt) {
  for (RopeScalingType type : {RopeScalingType::kNone, RopeScalingType::kLinear,
                               RopeScalingType::kDynamicNtk, RopeScalingType::kYarn,
                               RopeScalingType::kLlama3}) {
    RopeParams p;
    p.head_dim = p.rotary_dim = 96;
    p.theta = 10000;
    p.scaling = {.type = type, .factor = 4, .original_max_position_embeddings = 4096};
    const std::vector<double> f32 = RopeInvFreq(p);
    p.fp32_angles = false;
    const std::vector<double> f64 = RopeInvFreq(p);
    ASSERT_EQ(f32.size(), f64.size());
    for (size_t j = 0; j < f32.size(); ++j) {
      EXPECT_EQ(static_cast<double>(static_cast<float>(f32[j])), f32[j]) << j;
      EXPECT_NEAR(f32[j], f64[j], 1e-6 * f64[j]) << static_cast<int>(type) << " " << j;
    }
  }
}

}  // namespace
}  // namespace slimkv::kernels
