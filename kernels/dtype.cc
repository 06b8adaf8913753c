#include "kernels/dtype.h"

#include <cstring>

namespace slimkv::kernels {

const char* DTypeName(DType t) {
  switch (t) {
    case DType::kF32: return "fp32";
    case DType::kF16: return "fp16";
    case DType::kBF16: return "bf16";
  }
  return "invalid";
}

namespace {
uint32_t Bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}
float FromBits(uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
}  // namespace

float BF16ToFloat(uint16_t b) { return FromBits(uint32_t{b} << 16); }

uint16_t FloatToBF16(float f) {
  uint32_t u = Bits(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((u >> 16) | 0x40);  // quiet NaN
  u += 0x7fffu + ((u >> 16) & 1);  // round to nearest even
  return static_cast<uint16_t>(u >> 16);
}

float HalfToFloat(uint16_t h) {
  const uint32_t sign = uint32_t{h & 0x8000u} << 16;
  const uint32_t exp = (h >> 10) & 0x1f;
  uint32_t mant = h & 0x3ffu;
  if (exp == 0x1f) return FromBits(sign | 0x7f800000u | (mant << 13));  // inf, NaN
  if (exp != 0) return FromBits(sign | ((exp + 112) << 23) | (mant << 13));
  if (mant == 0) return FromBits(sign);
  // Subnormal: value = mant * 2^-24, exact in binary32.
  const float v = static_cast<float>(mant) * 0x1p-24f;
  return sign ? -v : v;
}

uint16_t FloatToHalf(float f) {
  const uint32_t u = Bits(f);
  const uint16_t sign = static_cast<uint16_t>((u >> 16) & 0x8000u);
  const uint32_t a = u & 0x7fffffffu;
  if (a > 0x7f800000u) return sign | 0x7e00u;     // NaN
  if (a >= 0x477ff000u) return sign | 0x7c00u;    // rounds to >= 65520: infinity
  if (a < 0x38800000u) {                          // below 2^-14: subnormal or zero
    // Adding 0.5 makes the FPU round the mantissa to nearest even at 2^-24 granularity.
    const float v = FromBits(a) + 0.5f;
    return sign | static_cast<uint16_t>(Bits(v) - Bits(0.5f));
  }
  uint32_t r = a + 0xfffu + ((a >> 13) & 1);      // round to nearest even at bit 13
  return sign | static_cast<uint16_t>(((r >> 13) - (112u << 10)) & 0x7fffu);
}

void ConvertDType(const void* src, DType from, void* dst, DType to, size_t n) {
  if (from == to) {
    std::memcpy(dst, src, n * DTypeSize(from));
    return;
  }
  // Through fp32: exact for widening; one rounding for narrowing.
  auto load = [&](size_t i) -> float {
    switch (from) {
      case DType::kF32: return static_cast<const float*>(src)[i];
      case DType::kF16: return HalfToFloat(static_cast<const uint16_t*>(src)[i]);
      case DType::kBF16: return BF16ToFloat(static_cast<const uint16_t*>(src)[i]);
    }
    return 0.0f;
  };
  switch (to) {
    case DType::kF32:
      for (size_t i = 0; i < n; ++i) static_cast<float*>(dst)[i] = load(i);
      break;
    case DType::kF16:
      for (size_t i = 0; i < n; ++i) static_cast<uint16_t*>(dst)[i] = FloatToHalf(load(i));
      break;
    case DType::kBF16:
      for (size_t i = 0; i < n; ++i) static_cast<uint16_t*>(dst)[i] = FloatToBF16(load(i));
      break;
  }
}

}  // namespace slimkv::kernels
