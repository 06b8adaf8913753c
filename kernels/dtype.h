// Element types of KV tensors and conversions between them.
//
// Thread-safety: stateless functions; safe to call concurrently on disjoint outputs.
#pragma once

#include <cstddef>
#include <cstdint>

namespace slimkv::kernels {

// Values match slimkv.v1.DType on the wire.
enum class DType : uint8_t {
  kF32 = 1,
  kF16 = 2,   // IEEE 754 binary16
  kBF16 = 3,  // bfloat16: the upper half of a binary32
};

constexpr size_t DTypeSize(DType t) { return t == DType::kF32 ? 4 : 2; }
const char* DTypeName(DType t);
// True for the three values above; used to validate untrusted input.
constexpr bool IsValidDType(int v) { return v >= 1 && v <= 3; }

// Scalar conversions, round to nearest even; NaN stays NaN, overflow becomes infinity.
float HalfToFloat(uint16_t h);
uint16_t FloatToHalf(float f);
float BF16ToFloat(uint16_t b);
uint16_t FloatToBF16(float f);

// Converts n elements from `src` (type `from`) to `dst` (type `to`). from == to copies.
// REQUIRES: src and dst do not overlap; dst holds n * DTypeSize(to) bytes.
void ConvertDType(const void* src, DType from, void* dst, DType to, size_t n);

}  // namespace slimkv::kernels
