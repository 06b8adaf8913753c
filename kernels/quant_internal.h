// Scalar pieces of the quantizers shared by the reference (quant_ref.cc) and the fast path
// (quant_avx2.cc), so both compute scales and codes with the same float operations. Private to
// kernels/quant*.cc.
//
// Thread-safety: stateless.
#pragma once

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstdint>
#include <cstring>

#include "kernels/dtype.h"
#include "kernels/quant.h"

namespace slimkv::kernels::quant_internal {

inline void PutF32(uint8_t* p, float v) { std::memcpy(p, &v, 4); }
inline float GetF32(const uint8_t* p) {
  float v;
  std::memcpy(&v, p, 4);
  return v;
}
inline void PutU16(uint8_t* p, uint16_t v) { std::memcpy(p, &v, 2); }
inline uint16_t GetU16(const uint8_t* p) {
  uint16_t v;
  std::memcpy(&v, p, 2);
  return v;
}

// Largest magnitude, smallest and largest value over the finite members of one group; all 0
// when it has none.
struct Range {
  float amax = 0.0f;
  float lo = 0.0f;
  float hi = 0.0f;
};

struct GroupScale {
  float scale = 0.0f;
  float zero = 0.0f;  // int4 only
  float inv = 0.0f;   // what encode multiplies by
};

inline float InvScale(float scale) { return scale >= FLT_MIN ? 1.0f / scale : 0.0f; }

inline GroupScale ScaleFor(QuantKind kind, const Range& r) {
  GroupScale s;
  switch (kind) {
    case QuantKind::kFp8E4M3: s.scale = r.amax / kFp8E4M3Max; break;
    case QuantKind::kInt8: s.scale = r.amax / 127.0f; break;
    case QuantKind::kInt4:
      // Divided before subtracting so that max - min cannot overflow. "+ 0.0f" turns -0 into
      // +0, making the stored bytes independent of the order min/max met signed zeros.
      s.scale = (r.hi / 15.0f - r.lo / 15.0f) + 0.0f;
      s.zero = r.lo + 0.0f;
      break;
  }
  s.inv = InvScale(s.scale);
  return s;
}

// The code of one value (int8 codes as their two's complement byte).
inline uint8_t EncodeElem(QuantKind kind, float x, const GroupScale& s) {
  switch (kind) {
    case QuantKind::kFp8E4M3:
      return FloatToE4M3(std::isfinite(x) ? x * s.inv : x);
    case QuantKind::kInt8: {
      float y = std::isnan(x) ? 0.0f : std::isinf(x) ? x : x * s.inv;
      y = std::min(std::max(y, -127.0f), 127.0f);
      return static_cast<uint8_t>(static_cast<int8_t>(std::nearbyint(y)));
    }
    case QuantKind::kInt4: {
      float y = std::isinf(x) ? x : ((std::isnan(x) ? 0.0f : x) - s.zero) * s.inv;
      y = std::min(std::max(y, 0.0f), 15.0f);
      return static_cast<uint8_t>(std::nearbyint(y));
    }
  }
  return 0;
}

inline float DecodeElem(QuantKind kind, uint8_t code, float scale, float zero) {
  switch (kind) {
    case QuantKind::kFp8E4M3: return E4M3ToFloat(code) * scale;
    case QuantKind::kInt8: return static_cast<float>(static_cast<int8_t>(code)) * scale;
    case QuantKind::kInt4: return zero + static_cast<float>(code) * scale;
  }
  return 0.0f;
}

// True when the fast path exists and this CPU runs it.
bool Avx2Supported();
// Same contracts as QuantEncode / QuantDecode. REQUIRES: Avx2Supported().
void QuantEncodeAvx2(const QuantParams& p, const void* src, DType src_type, uint64_t rows,
                     uint64_t cols, uint8_t* dst);
void QuantDecodeAvx2(const QuantParams& p, const uint8_t* src, uint64_t rows, uint64_t cols,
                     void* dst, DType dst_type);

}  // namespace slimkv::kernels::quant_internal
