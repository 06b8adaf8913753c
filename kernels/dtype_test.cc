#include "kernels/dtype.h"

#include <bit>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include <gtest/gtest.h>

namespace slimkv::kernels {
namespace {

TEST(DType, HalfKnownValues) {
  EXPECT_EQ(FloatToHalf(1.0f), 0x3c00);
  EXPECT_EQ(FloatToHalf(-2.0f), 0xc000);
  EXPECT_EQ(FloatToHalf(65504.0f), 0x7bff);
  EXPECT_EQ(FloatToHalf(65520.0f), 0x7c00);  // rounds up to infinity
  EXPECT_EQ(FloatToHalf(0x1p-24f), 0x0001);  // smallest subnormal
  EXPECT_EQ(FloatToHalf(0x1p-25f), 0x0000);  // tie rounds to even (zero)
  EXPECT_EQ(FloatToHalf(3 * 0x1p-25f), 0x0002);
  EXPECT_EQ(FloatToHalf(1.0f + 0x1p-11f), 0x3c00);  // tie to even
  EXPECT_EQ(FloatToHalf(1.0f + 3 * 0x1p-11f), 0x3c02);
  EXPECT_EQ(FloatToHalf(std::numeric_limits<float>::infinity()), 0x7c00);
  EXPECT_TRUE(std::isnan(HalfToFloat(FloatToHalf(std::nanf("")))));
  EXPECT_EQ(HalfToFloat(0x0001), 0x1p-24f);
  EXPECT_EQ(HalfToFloat(0x8000), -0.0f);
  EXPECT_EQ(HalfToFloat(0x3555), 0.333251953125f);
}

// Every binary16 value survives fp16 -> fp32 -> fp16, and agrees with the compiler's _Float16.
TEST(DType, HalfRoundTripsAllValues) {
  for (uint32_t h = 0; h < 0x10000; ++h) {
    const float f = HalfToFloat(static_cast<uint16_t>(h));
    if (std::isnan(f)) continue;
    ASSERT_EQ(FloatToHalf(f), h) << std::hex << h;
#if defined(__FLT16_MAX__)
    ASSERT_EQ(f, static_cast<float>(std::bit_cast<_Float16>(static_cast<uint16_t>(h))));
#endif
  }
}

#if defined(__FLT16_MAX__)
// Narrowing matches the compiler's own conversion on a sweep of fp32 bit patterns.
TEST(DType, HalfNarrowingMatchesCompiler) {
  for (uint64_t u = 0; u < (1ull << 32); u += 0x1357) {
    float f;
    const uint32_t bits = static_cast<uint32_t>(u);
    std::memcpy(&f, &bits, 4);
    if (std::isnan(f)) continue;
    ASSERT_EQ(FloatToHalf(f), std::bit_cast<uint16_t>(static_cast<_Float16>(f))) << std::hex << bits;
  }
}
#endif

TEST(DType, BF16RoundsToNearestEven) {
  EXPECT_EQ(FloatToBF16(1.0f), 0x3f80);
  EXPECT_EQ(FloatToBF16(1.0f + 0x1p-8f), 0x3f80);       // tie to even
  EXPECT_EQ(FloatToBF16(1.0f + 3 * 0x1p-8f), 0x3f82);   // tie to even, up
  EXPECT_EQ(BF16ToFloat(0x4049), 3.140625f);
  EXPECT_TRUE(std::isnan(BF16ToFloat(FloatToBF16(std::nanf("")))));
}

TEST(DType, ConvertArraysWithinOneRounding) {
  std::vector<float> x(1000);
  for (size_t i = 0; i < x.size(); ++i) x[i] = std::sin(0.37f * i) * 100.0f;
  for (DType t : {DType::kF16, DType::kBF16}) {
    std::vector<uint16_t> narrow(x.size());
    std::vector<float> back(x.size());
    ConvertDType(x.data(), DType::kF32, narrow.data(), t, x.size());
    ConvertDType(narrow.data(), t, back.data(), DType::kF32, x.size());
    const float eps = t == DType::kF16 ? 0x1p-11f : 0x1p-8f;  // half an ulp, relative
    for (size_t i = 0; i < x.size(); ++i) EXPECT_LE(std::fabs(back[i] - x[i]), eps * std::fabs(x[i])) << i;
  }
}

}  // namespace
}  // namespace slimkv::kernels
