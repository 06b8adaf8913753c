#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "kernels/dtype.h"
#include "kernels/quant.h"
#include "kernels/quant_format.h"

namespace slimkv::kernels {
namespace {

constexpr float kInf = std::numeric_limits<float>::infinity();
constexpr QuantParams kFp8{QuantKind::kFp8E4M3, QuantAxis::kPerToken, 0};
constexpr QuantParams kInt8{QuantKind::kInt8, QuantAxis::kPerToken, 0};
constexpr QuantParams kInt4Token{QuantKind::kInt4, QuantAxis::kPerToken, 0};
constexpr QuantParams kInt4Channel{QuantKind::kInt4, QuantAxis::kPerChannel, 0};
constexpr QuantParams kAllFormats[] = {kFp8, kInt8, kInt4Token, kInt4Channel};
constexpr DType kAllDTypes[] = {DType::kF32, DType::kF16, DType::kBF16};

QuantParams WithKeep(QuantParams p, uint32_t keep) {
  p.keep_cols = keep;
  return p;
}

std::string Name(const QuantParams& p, uint64_t rows, uint64_t cols) {
  const char* kind = p.kind == QuantKind::kFp8E4M3 ? "fp8" : p.kind == QuantKind::kInt8 ? "int8" : "int4";
  return std::string(kind) + (p.axis == QuantAxis::kPerChannel ? "/channel" : "/token") +
         " keep=" + std::to_string(p.keep_cols) + " " + std::to_string(rows) + "x" +
         std::to_string(cols);
}

// KV-like data: per-channel offsets and spreads (what makes keys want per-channel groups), a
// few outliers, and an occasional exact zero.
std::vector<float> KvLike(uint64_t rows, uint64_t cols, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::uniform_real_distribution<float> uniform(0.0f, 1.0f);
  std::vector<float> offset(cols), spread(cols);
  for (uint64_t c = 0; c < cols; ++c) {
    offset[c] = 3.0f * normal(rng);
    spread[c] = 0.05f + 2.0f * uniform(rng);
  }
  std::vector<float> x(rows * cols);
  for (uint64_t r = 0; r < rows; ++r) {
    for (uint64_t c = 0; c < cols; ++c) {
      float v = offset[c] + spread[c] * normal(rng);
      const float u = uniform(rng);
      if (u < 0.003f) v *= 40.0f;
      if (u > 0.997f) v = 0.0f;
      x[r * cols + c] = v;
    }
  }
  return x;
}

std::vector<uint8_t> As(const std::vector<float>& x, DType t) {
  std::vector<uint8_t> out(x.size() * DTypeSize(t));
  ConvertDType(x.data(), DType::kF32, out.data(), t, x.size());
  return out;
}

std::vector<float> ToF32(const std::vector<uint8_t>& bytes, DType t) {
  std::vector<float> out(bytes.size() / DTypeSize(t));
  ConvertDType(bytes.data(), t, out.data(), DType::kF32, out.size());
  return out;
}

using EncodeFn = void (*)(const QuantParams&, const void*, DType, uint64_t, uint64_t, uint8_t*);
using DecodeFn = void (*)(const QuantParams&, const uint8_t*, uint64_t, uint64_t, void*, DType);

// Encodes into a buffer with guard bytes on both sides and checks they survive.
std::vector<uint8_t> Encode(EncodeFn fn, const QuantParams& p, const std::vector<uint8_t>& src,
                            DType t, uint64_t rows, uint64_t cols) {
  constexpr size_t kGuard = 64;
  const uint64_t n = QuantBytes(p, rows, cols);
  std::vector<uint8_t> buf(n + 2 * kGuard, 0xa5);
  fn(p, src.data(), t, rows, cols, buf.data() + kGuard);
  for (size_t i = 0; i < kGuard; ++i) {
    EXPECT_EQ(buf[i], 0xa5) << "wrote before the buffer";
    EXPECT_EQ(buf[kGuard + n + i], 0xa5) << "wrote past QuantBytes";
  }
  return std::vector<uint8_t>(buf.begin() + kGuard, buf.begin() + kGuard + n);
}

std::vector<uint8_t> Decode(DecodeFn fn, const QuantParams& p, const std::vector<uint8_t>& enc,
                            uint64_t rows, uint64_t cols, DType t) {
  std::vector<uint8_t> out(rows * cols * DTypeSize(t));
  fn(p, enc.data(), rows, cols, out.data(), t);
  return out;
}

// Reads a group's scale and zero straight from the documented layout.
struct Group {
  float scale;
  float zero;
};
Group GroupOf(const QuantParams& p, const std::vector<uint8_t>& enc, uint64_t rows,
              uint64_t cols, uint64_t r, uint64_t c) {
  const uint64_t br = QuantBlockRows(p);
  const uint64_t r0 = r - r % br;
  const uint64_t block_start = QuantBytes(p, r0, cols);
  const QuantBlockLayout l = QuantLayout(p, std::min(br, rows - r0), cols);
  const uint64_t k = br == 1 ? c / QuantGroupSize(p.kind) : c;
  Group g{};
  std::memcpy(&g.scale, enc.data() + block_start + l.scales_offset + 4 * k, 4);
  if (p.kind == QuantKind::kInt4) {
    std::memcpy(&g.zero, enc.data() + block_start + l.zeros_offset + 4 * k, 4);
  }
  return g;
}

// The stated error bound of one decoded element.
float Bound(const QuantParams& p, float x, const Group& g) {
  switch (p.kind) {
    case QuantKind::kFp8E4M3:
      return std::max(0x1p-4f * std::fabs(x), 0x1p-10f * g.scale) * (1.0f + 0x1p-16f);
    case QuantKind::kInt8:
      return g.scale * (0.5f + 1e-4f);
    case QuantKind::kInt4:
      // Plus float rounding of zero + code * scale, relative to the group's magnitude.
      return g.scale * (0.5f + 1e-4f) +
             0x1p-20f * std::max(std::fabs(g.zero), std::fabs(g.zero + 15 * g.scale));
  }
  return 0;
}

// ---- layout and byte counts ----

TEST(QuantFormat, FlashMlaFp8TokenIs656Bytes) {
  const QuantParams p = WithKeep(kFp8, 64);
  EXPECT_EQ(QuantBytes(p, 1, 576), 656u);
  EXPECT_EQ(QuantBytes(p, 64, 576), 64u * 656u);
  EXPECT_EQ(sizeof(Fp8MlaTokenRecord), 656u);

  // The encoded token reads back through the FlashMLA struct.
  const std::vector<float> x = KvLike(1, 576, 7);
  const std::vector<uint8_t> enc = Encode(QuantEncode, p, As(x, DType::kF32), DType::kF32, 1, 576);
  Fp8MlaTokenRecord rec;
  std::memcpy(&rec, enc.data(), sizeof rec);
  for (int g = 0; g < 4; ++g) {
    float amax = 0;
    for (int i = 0; i < 128; ++i) amax = std::max(amax, std::fabs(x[g * 128 + i]));
    EXPECT_EQ(rec.nope_scale[g], amax / 448.0f);
  }
  for (int j = 0; j < 64; ++j) EXPECT_EQ(rec.rope_bf16[j], FloatToBF16(x[512 + j]));
  for (int i = 0; i < 512; ++i) EXPECT_EQ(rec.nope_e4m3[i], enc[i]);
}

TEST(QuantFormat, BytesEqualFormulaWithoutPadding) {
  auto ceil_div = [](uint64_t a, uint64_t b) { return (a + b - 1) / b; };
  for (uint64_t rows : {1u, 2u, 31u, 32u, 33u, 256u}) {
    for (uint64_t cols : {1u, 7u, 32u, 33u, 64u, 100u, 128u, 129u, 576u, 4096u}) {
      for (uint32_t keep : {0u, 1u, 64u}) {
        if (keep > cols) continue;
        const uint64_t cq = cols - keep, tail = 2 * keep;
        EXPECT_EQ(QuantBytes(WithKeep(kFp8, keep), rows, cols),
                  rows * (cq + 4 * ceil_div(cq, 128) + tail));
        EXPECT_EQ(QuantBytes(WithKeep(kInt8, keep), rows, cols),
                  rows * (cq + 4 * ceil_div(cq, 64) + tail));
        EXPECT_EQ(QuantBytes(WithKeep(kInt4Token, keep), rows, cols),
                  rows * (ceil_div(cq, 2) + 8 * ceil_div(cq, 32) + tail));
        EXPECT_EQ(QuantBytes(WithKeep(kInt4Channel, keep), rows, cols),
                  rows * (ceil_div(cq, 2) + tail) + ceil_div(rows, 32) * 8 * cq);
      }
    }
  }
  // A 4096-channel token: int8 4096 + 64 scales × 4; int4 per token 2048 + 128 × 8;
  // int4 per channel over 256 tokens: 2048 + 4096 × 8 / 32 per token.
  EXPECT_EQ(QuantBytes(kInt8, 256, 4096), 256u * 4352u);
  EXPECT_EQ(QuantBytes(kInt4Token, 256, 4096), 256u * 3072u);
  EXPECT_EQ(QuantBytes(kInt4Channel, 256, 4096), 256u * 3072u);
  EXPECT_EQ(QuantBytes(kFp8, 256, 4096), 256u * 4224u);
}

TEST(QuantFormat, ParamsValidation) {
  EXPECT_EQ(QuantParamsError(kInt8, 4, 64), nullptr);
  EXPECT_EQ(QuantParamsError(kInt4Channel, 4, 64), nullptr);
  EXPECT_NE(QuantParamsError(QuantParams{QuantKind::kInt8, QuantAxis::kPerChannel, 0}, 4, 64),
            nullptr);
  EXPECT_NE(QuantParamsError(QuantParams{static_cast<QuantKind>(9), QuantAxis::kPerToken, 0}, 4, 64),
            nullptr);
  EXPECT_NE(QuantParamsError(QuantParams{QuantKind::kInt4, static_cast<QuantAxis>(2), 0}, 4, 64),
            nullptr);
  EXPECT_NE(QuantParamsError(WithKeep(kFp8, 65), 4, 64), nullptr);
  EXPECT_NE(QuantParamsError(kFp8, uint64_t{1} << 32, uint64_t{1} << 20), nullptr);
}

// ---- e4m3 ----

TEST(QuantE4M3, EveryCodeRoundTrips) {
  int nans = 0;
  for (int c = 0; c < 256; ++c) {
    const uint8_t code = static_cast<uint8_t>(c);
    const float v = E4M3ToFloat(code);
    if ((code & 0x7f) == 0x7f) {
      EXPECT_TRUE(std::isnan(v));
      EXPECT_EQ(std::signbit(v), (code & 0x80) != 0);
      ++nans;
    }
    EXPECT_EQ(FloatToE4M3(v), code) << "code " << c << " value " << v;
  }
  EXPECT_EQ(nans, 2);
}

TEST(QuantE4M3, KnownValuesAndRounding) {
  EXPECT_EQ(E4M3ToFloat(0x7e), 448.0f);
  EXPECT_EQ(E4M3ToFloat(0x38), 1.0f);
  EXPECT_EQ(E4M3ToFloat(0x01), 0x1p-9f);
  EXPECT_EQ(E4M3ToFloat(0x08), 0x1p-6f);
  EXPECT_EQ(FloatToE4M3(1.0625f), 0x38);         // tie between 1 and 1.125: even
  EXPECT_EQ(FloatToE4M3(1.1875f), 0x3a);         // tie between 1.125 and 1.25: even
  EXPECT_EQ(FloatToE4M3(0x1p-10f), 0x00);        // half the smallest subnormal: even
  EXPECT_EQ(FloatToE4M3(3 * 0x1p-10f), 0x02);
  EXPECT_EQ(FloatToE4M3(0x1p-6f - 0x1p-11f), 0x08);  // rounds up into the normals
  EXPECT_EQ(FloatToE4M3(460.0f), 0x7e);          // saturates, never NaN
  EXPECT_EQ(FloatToE4M3(1e30f), 0x7e);
  EXPECT_EQ(FloatToE4M3(-kInf), 0xfe);
  EXPECT_EQ(FloatToE4M3(-0.0f), 0x80);
  EXPECT_EQ(FloatToE4M3(std::nanf("")), 0x7f);
}

// With amax = 448 the scale is 1, so every representable value survives a group exactly.
TEST(QuantE4M3, RepresentableValuesSurviveTheQuantizer) {
  std::vector<float> x(256);
  for (int c = 0; c < 256; ++c) {
    x[c] = (c & 0x7f) == 0x7f ? 0.0f : E4M3ToFloat(static_cast<uint8_t>(c));
  }
  for (EncodeFn enc_fn : {QuantEncodeRef, QuantEncode}) {
    const std::vector<uint8_t> enc = Encode(enc_fn, kFp8, As(x, DType::kF32), DType::kF32, 1, 256);
    const std::vector<float> y = ToF32(Decode(QuantDecode, kFp8, enc, 1, 256, DType::kF32), DType::kF32);
    for (int c = 0; c < 256; ++c) EXPECT_EQ(y[c], x[c]) << "code " << c;
  }
}

// ---- accuracy ----

struct Shape {
  uint64_t rows, cols;
  uint32_t keep;
};
constexpr Shape kShapes[] = {{1, 1, 0},   {1, 7, 0},    {3, 33, 0},  {2, 100, 0}, {5, 129, 1},
                             {1, 576, 64}, {33, 65, 0},  {70, 48, 3}, {32, 256, 0},
                             {64, 130, 2}};

TEST(QuantAccuracy, RoundTripWithinStatedBound) {
  uint32_t seed = 1;
  for (const QuantParams& base : kAllFormats) {
    for (const Shape& s : kShapes) {
      const QuantParams p = WithKeep(base, s.keep);
      for (DType t : kAllDTypes) {
        SCOPED_TRACE(Name(p, s.rows, s.cols) + " " + DTypeName(t));
        const std::vector<uint8_t> src = As(KvLike(s.rows, s.cols, seed++), t);
        const std::vector<float> x = ToF32(src, t);  // what the quantizer saw
        const std::vector<uint8_t> enc = Encode(QuantEncode, p, src, t, s.rows, s.cols);
        const std::vector<float> y =
            ToF32(Decode(QuantDecode, p, enc, s.rows, s.cols, DType::kF32), DType::kF32);
        const uint64_t cq = s.cols - s.keep;
        int failures = 0;
        for (uint64_t r = 0; r < s.rows && failures < 5; ++r) {
          for (uint64_t c = 0; c < s.cols; ++c) {
            const float xv = x[r * s.cols + c], yv = y[r * s.cols + c];
            if (c >= cq) {  // kept channel: bf16 rounding only
              ASSERT_EQ(yv, BF16ToFloat(FloatToBF16(xv)));
              continue;
            }
            const Group g = GroupOf(p, enc, s.rows, s.cols, r, c);
            if (!(std::fabs(yv - xv) <= Bound(p, xv, g))) {
              ADD_FAILURE() << "r=" << r << " c=" << c << " x=" << xv << " y=" << yv
                            << " scale=" << g.scale << " zero=" << g.zero;
              ++failures;
            }
          }
        }
      }
    }
  }
}

TEST(QuantAccuracy, GroupScalesAreTheDocumentedOnes) {
  const uint64_t rows = 40, cols = 70;  // partial last group on both axes
  const std::vector<float> x = KvLike(rows, cols, 99);
  for (const QuantParams& p : kAllFormats) {
    SCOPED_TRACE(Name(p, rows, cols));
    const std::vector<uint8_t> enc = Encode(QuantEncode, p, As(x, DType::kF32), DType::kF32, rows, cols);
    for (uint64_t r = 0; r < rows; ++r) {
      for (uint64_t c = 0; c < cols; ++c) {
        // Members of (r, c)'s group, by the documented rule.
        float amax = 0, lo = kInf, hi = -kInf;
        const uint64_t g = QuantGroupSize(p.kind);
        const bool per_channel = p.axis == QuantAxis::kPerChannel;
        const uint64_t r0 = per_channel ? r - r % g : r, r1 = per_channel ? std::min(r0 + g, rows) : r + 1;
        const uint64_t c0 = per_channel ? c : c - c % g, c1 = per_channel ? c + 1 : std::min(c0 + g, cols);
        for (uint64_t i = r0; i < r1; ++i) {
          for (uint64_t j = c0; j < c1; ++j) {
            const float v = x[i * cols + j];
            amax = std::max(amax, std::fabs(v));
            lo = std::min(lo, v);
            hi = std::max(hi, v);
          }
        }
        const Group got = GroupOf(p, enc, rows, cols, r, c);
        switch (p.kind) {
          case QuantKind::kFp8E4M3: ASSERT_EQ(got.scale, amax / 448.0f); break;
          case QuantKind::kInt8: ASSERT_EQ(got.scale, amax / 127.0f); break;
          case QuantKind::kInt4:
            ASSERT_EQ(got.scale, hi / 15.0f - lo / 15.0f);
            ASSERT_EQ(got.zero, lo);
            break;
        }
      }
    }
  }
}

TEST(QuantAccuracy, Int8TiesRoundToEven) {
  // amax 127 gives scale 1: 0.5 -> 0, 1.5 -> 2, 2.5 -> 2, -2.5 -> -2.
  std::vector<float> x = {127.0f, 0.5f, 1.5f, 2.5f, -2.5f, -127.0f};
  for (EncodeFn fn : {QuantEncodeRef, QuantEncode}) {
    const std::vector<uint8_t> enc = Encode(fn, kInt8, As(x, DType::kF32), DType::kF32, 1, x.size());
    EXPECT_EQ(static_cast<int8_t>(enc[1]), 0);
    EXPECT_EQ(static_cast<int8_t>(enc[2]), 2);
    EXPECT_EQ(static_cast<int8_t>(enc[3]), 2);
    EXPECT_EQ(static_cast<int8_t>(enc[4]), -2);
    EXPECT_EQ(static_cast<int8_t>(enc[5]), -127);
  }
}

TEST(QuantAccuracy, Int4NibbleOrderLowFirst) {
  // Group {0, 15, 1, 14}: min 0, max 15, scale 1; bytes 0xF0, 0xE1.
  const std::vector<float> x = {0.0f, 15.0f, 1.0f, 14.0f, 2.0f};
  for (EncodeFn fn : {QuantEncodeRef, QuantEncode}) {
    const std::vector<uint8_t> enc = Encode(fn, kInt4Token, As(x, DType::kF32), DType::kF32, 1, 5);
    ASSERT_EQ(enc.size(), 3u + 8u);
    EXPECT_EQ(enc[0], 0xf0);
    EXPECT_EQ(enc[1], 0xe1);
    EXPECT_EQ(enc[2], 0x02);  // odd count: high nibble zero
  }
}

// ---- edge values ----

TEST(QuantEdge, AllZeroGroupsDecodeToZero) {
  const uint64_t rows = 33, cols = 200;
  std::vector<float> x(rows * cols, 0.0f);
  for (uint64_t i = 0; i < x.size(); i += 3) x[i] = -0.0f;
  for (uint64_t c = 150; c < cols; ++c) x[5 * cols + c] = 1.0f + c;  // a nonzero neighbour
  for (const QuantParams& p : kAllFormats) {
    for (EncodeFn fn : {QuantEncodeRef, QuantEncode}) {
      SCOPED_TRACE(Name(p, rows, cols));
      const std::vector<uint8_t> enc = Encode(fn, p, As(x, DType::kF32), DType::kF32, rows, cols);
      const std::vector<float> y = ToF32(Decode(QuantDecode, p, enc, rows, cols, DType::kF32), DType::kF32);
      for (uint64_t i = 0; i < x.size(); ++i) {
        ASSERT_FALSE(std::isnan(y[i])) << i;
        if (x[i] == 0.0f) {
          ASSERT_EQ(y[i], 0.0f) << i;
        }
      }
      EXPECT_EQ(GroupOf(p, enc, rows, cols, 0, 0).scale, 0.0f);
    }
  }
}

TEST(QuantEdge, NonFiniteInputsFollowTheDocumentedRule) {
  const float nan = std::nanf("");
  const uint64_t cols = 40;
  std::vector<float> x = KvLike(1, cols, 5);
  for (float& v : x) v = std::fabs(v) + 0.5f;  // positive, so 0 is below the int4 range
  x[3] = nan;
  x[5] = kInf;
  x[7] = -kInf;
  float amax = 0, lo = kInf, hi = -kInf;
  for (float v : x) {
    if (!std::isfinite(v)) continue;
    amax = std::max(amax, std::fabs(v));
    lo = std::min(lo, v);
    hi = std::max(hi, v);
  }
  for (EncodeFn fn : {QuantEncodeRef, QuantEncode}) {
    for (const QuantParams& p : {kFp8, kInt8, kInt4Token}) {
      SCOPED_TRACE(Name(p, 1, cols));
      const std::vector<uint8_t> enc = Encode(fn, p, As(x, DType::kF32), DType::kF32, 1, cols);
      const std::vector<float> y = ToF32(Decode(QuantDecode, p, enc, 1, cols, DType::kF32), DType::kF32);
      const Group g = GroupOf(p, enc, 1, cols, 0, 0);
      switch (p.kind) {
        case QuantKind::kFp8E4M3:
          EXPECT_EQ(g.scale, amax / 448.0f);
          EXPECT_TRUE(std::isnan(y[3]));
          EXPECT_EQ(y[5], 448.0f * g.scale);
          EXPECT_EQ(y[7], -448.0f * g.scale);
          break;
        case QuantKind::kInt8:
          EXPECT_EQ(g.scale, amax / 127.0f);
          EXPECT_EQ(y[3], 0.0f);
          EXPECT_EQ(y[5], 127.0f * g.scale);
          EXPECT_EQ(y[7], -127.0f * g.scale);
          break;
        case QuantKind::kInt4:
          EXPECT_EQ(g.zero, lo);
          EXPECT_EQ(g.scale, hi / 15.0f - lo / 15.0f);
          EXPECT_EQ(y[3], lo);  // NaN codes as 0.0, clamped to the bottom of the range
          EXPECT_EQ(y[5], lo + 15.0f * g.scale);
          EXPECT_EQ(y[7], lo);
          break;
      }
      for (uint64_t c = 0; c < cols; ++c) {
        if (std::isfinite(x[c])) {
          EXPECT_LE(std::fabs(y[c] - x[c]), Bound(p, x[c], g)) << c;
        }
      }
    }
  }
}

TEST(QuantEdge, NonFiniteAlongAChannel) {
  const uint64_t rows = 32, cols = 20;
  std::vector<float> x = KvLike(rows, cols, 11);
  x[4 * cols + 2] = kInf;
  x[9 * cols + 2] = std::nanf("");
  for (EncodeFn fn : {QuantEncodeRef, QuantEncode}) {
    const std::vector<uint8_t> enc = Encode(fn, kInt4Channel, As(x, DType::kF32), DType::kF32, rows, cols);
    const std::vector<float> y =
        ToF32(Decode(QuantDecode, kInt4Channel, enc, rows, cols, DType::kF32), DType::kF32);
    const Group g = GroupOf(kInt4Channel, enc, rows, cols, 0, 2);
    EXPECT_TRUE(std::isfinite(g.scale));
    EXPECT_EQ(y[4 * cols + 2], g.zero + 15.0f * g.scale);
    for (float v : y) EXPECT_TRUE(std::isfinite(v));
  }
}

TEST(QuantEdge, GroupWithoutFiniteValues) {
  const std::vector<float> x(64, std::nanf(""));
  for (const QuantParams& p : {kFp8, kInt8, kInt4Token}) {
    const std::vector<uint8_t> enc = Encode(QuantEncode, p, As(x, DType::kF32), DType::kF32, 1, 64);
    const std::vector<float> y = ToF32(Decode(QuantDecode, p, enc, 1, 64, DType::kF32), DType::kF32);
    EXPECT_EQ(GroupOf(p, enc, 1, 64, 0, 0).scale, 0.0f);
    for (float v : y) {
      if (p.kind == QuantKind::kFp8E4M3) {
        EXPECT_TRUE(std::isnan(v));
      } else {
        EXPECT_EQ(v, 0.0f);
      }
    }
  }
}

// ---- dtypes ----

TEST(QuantDTypes, NarrowInputEncodesLikeItsFp32Widening) {
  const uint64_t rows = 33, cols = 150;
  for (const QuantParams& p : kAllFormats) {
    for (DType t : {DType::kF16, DType::kBF16}) {
      SCOPED_TRACE(Name(p, rows, cols) + " " + DTypeName(t));
      const std::vector<uint8_t> narrow = As(KvLike(rows, cols, 21), t);
      const std::vector<uint8_t> wide = As(ToF32(narrow, t), DType::kF32);
      EXPECT_EQ(Encode(QuantEncode, p, narrow, t, rows, cols),
                Encode(QuantEncode, p, wide, DType::kF32, rows, cols));
    }
  }
}

TEST(QuantDTypes, NarrowOutputIsTheRoundedFp32Output) {
  const uint64_t rows = 33, cols = 150;
  for (const QuantParams& base : kAllFormats) {
    const QuantParams p = WithKeep(base, 6);
    const std::vector<uint8_t> enc =
        Encode(QuantEncode, p, As(KvLike(rows, cols, 23), DType::kF32), DType::kF32, rows, cols);
    const std::vector<float> y32 = ToF32(Decode(QuantDecode, p, enc, rows, cols, DType::kF32), DType::kF32);
    for (DType t : {DType::kF16, DType::kBF16}) {
      SCOPED_TRACE(Name(p, rows, cols) + " " + DTypeName(t));
      EXPECT_EQ(Decode(QuantDecode, p, enc, rows, cols, t), As(y32, t));
    }
  }
}

TEST(QuantDTypes, KeptChannelsOfBf16InputAreExact) {
  const std::vector<uint8_t> src = As(KvLike(4, 576, 31), DType::kBF16);
  const QuantParams p = WithKeep(kFp8, 64);
  const std::vector<uint8_t> enc = Encode(QuantEncode, p, src, DType::kBF16, 4, 576);
  const std::vector<uint8_t> out = Decode(QuantDecode, p, enc, 4, 576, DType::kBF16);
  for (uint64_t r = 0; r < 4; ++r) {
    EXPECT_EQ(0, std::memcmp(&out[2 * (r * 576 + 512)], &src[2 * (r * 576 + 512)], 128)) << r;
  }
}

// ---- the fast path is the reference ----

TEST(QuantFastPath, BitIdenticalToReference) {
  if (std::string(QuantCpuPath()) == "reference") GTEST_SKIP() << "no fast path on this CPU";
  const Shape shapes[] = {{1, 1, 0},    {1, 15, 0},   {3, 33, 0},   {2, 100, 0},  {5, 129, 1},
                          {1, 576, 64}, {33, 65, 0},  {70, 48, 3},  {32, 256, 0}, {64, 130, 9},
                          {40, 4096, 0}, {7, 31, 31}, {2, 17, 17}};
  uint32_t seed = 1000;
  for (const QuantParams& base : kAllFormats) {
    for (const Shape& s : shapes) {
      const QuantParams p = WithKeep(base, s.keep);
      for (DType t : kAllDTypes) {
        for (int poison = 0; poison < 2; ++poison) {
          SCOPED_TRACE(Name(p, s.rows, s.cols) + " " + DTypeName(t) + (poison ? " non-finite" : ""));
          std::vector<float> x = KvLike(s.rows, s.cols, seed++);
          if (poison) {  // a few NaN / inf spread over rows and groups, tail included
            std::mt19937 rng(seed);
            for (int i = 0; i < 4; ++i) {
              x[rng() % x.size()] = (i % 2) ? std::nanf("") : (i % 4 == 0 ? kInf : -kInf);
            }
            x.back() = -kInf;
          }
          const std::vector<uint8_t> src = As(x, t);
          const std::vector<uint8_t> ref = Encode(QuantEncodeRef, p, src, t, s.rows, s.cols);
          const std::vector<uint8_t> fast = Encode(QuantEncode, p, src, t, s.rows, s.cols);
          ASSERT_EQ(ref, fast);
          for (DType out : kAllDTypes) {
            ASSERT_EQ(Decode(QuantDecodeRef, p, ref, s.rows, s.cols, out),
                      Decode(QuantDecode, p, ref, s.rows, s.cols, out))
                << "decode to " << DTypeName(out);
          }
        }
      }
    }
  }
}

// Rows from regimes that KvLike never reaches: arbitrary finite bit patterns (every exponent in
// one group), groups near FLT_MAX and near the smallest usable scale, subnormals, int4 ranges
// whose min and max nearly cancel, and values on the e4m3 grid (exact ties after scaling).
std::vector<float> Extreme(uint64_t rows, uint64_t cols, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> uniform(-1.0f, 1.0f);
  std::vector<float> x(rows * cols);
  for (uint64_t r = 0; r < rows; ++r) {
    const uint32_t regime = rng() % 6;
    for (uint64_t c = 0; c < cols; ++c) {
      float v = 0.0f;
      switch (regime) {
        case 0: {  // any finite float
          uint32_t u = rng();
          if (((u >> 23) & 0xff) == 0xff) u &= 0xbfffffffu;
          std::memcpy(&v, &u, 4);
          break;
        }
        case 1: v = std::numeric_limits<float>::max() * uniform(rng); break;
        case 2: v = std::ldexp(uniform(rng), -120 - static_cast<int>(rng() % 30)); break;
        case 3: v = 1000.0f + std::ldexp(static_cast<float>(rng() % 8), -14); break;
        case 4: v = std::ldexp(E4M3ToFloat(static_cast<uint8_t>(rng() % 0x7f) | (rng() & 0x80)),
                               static_cast<int>(rng() % 5) - 2);
                break;
        case 5: v = (static_cast<float>(rng() % 255) - 127.0f) * 0.5f; break;  // int8 ties
      }
      x[r * cols + c] = v;
    }
  }
  return x;
}

TEST(QuantFastPath, BitIdenticalOnExtremeValues) {
  if (std::string(QuantCpuPath()) == "reference") GTEST_SKIP() << "no fast path on this CPU";
  const Shape shapes[] = {{48, 4096, 0}, {40, 96, 0}, {33, 200, 7}, {64, 130, 0}, {6, 576, 64}};
  uint32_t seed = 5000;
  for (const QuantParams& base : kAllFormats) {
    for (const Shape& s : shapes) {
      const QuantParams p = WithKeep(base, s.keep);
      for (DType t : kAllDTypes) {
        SCOPED_TRACE(Name(p, s.rows, s.cols) + " " + DTypeName(t));
        const std::vector<uint8_t> src = As(Extreme(s.rows, s.cols, seed++), t);
        const std::vector<uint8_t> ref = Encode(QuantEncodeRef, p, src, t, s.rows, s.cols);
        ASSERT_EQ(ref, Encode(QuantEncode, p, src, t, s.rows, s.cols));
        for (DType out : kAllDTypes) {
          ASSERT_EQ(Decode(QuantDecodeRef, p, ref, s.rows, s.cols, out),
                    Decode(QuantDecode, p, ref, s.rows, s.cols, out))
              << "decode to " << DTypeName(out);
        }
      }
    }
  }
}

TEST(QuantFastPath, DecodesArbitraryBytesLikeTheReference) {
  if (std::string(QuantCpuPath()) == "reference") GTEST_SKIP() << "no fast path on this CPU";
  // Pages from disk are checksummed, but decode must still agree on any byte pattern
  // (NaN codes, int8 -128, odd scales).
  std::mt19937 rng(77);
  const uint64_t rows = 35, cols = 300;
  for (const QuantParams& base : kAllFormats) {
    const QuantParams p = WithKeep(base, 20);
    std::vector<uint8_t> enc(QuantBytes(p, rows, cols));
    for (uint8_t& b : enc) b = static_cast<uint8_t>(rng());
    for (DType out : kAllDTypes) {
      SCOPED_TRACE(Name(p, rows, cols) + " " + DTypeName(out));
      ASSERT_EQ(Decode(QuantDecodeRef, p, enc, rows, cols, out),
                Decode(QuantDecode, p, enc, rows, cols, out));
    }
  }
}

}  // namespace
}  // namespace slimkv::kernels
