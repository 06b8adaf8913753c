// Scalar reference quantizers: written to be read, not to be fast. The spec of the formats
// together with kernels/quant_format.h; the oracle of quant_test.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "kernels/quant.h"
#include "kernels/quant_internal.h"

namespace slimkv::kernels {

using quant_internal::DecodeElem;
using quant_internal::EncodeElem;
using quant_internal::GetF32;
using quant_internal::GetU16;
using quant_internal::GroupScale;
using quant_internal::PutF32;
using quant_internal::PutU16;
using quant_internal::Range;

uint8_t FloatToE4M3(float x) {
  uint32_t u;
  std::memcpy(&u, &x, 4);
  const uint8_t sign = static_cast<uint8_t>((u >> 24) & 0x80);
  if (std::isnan(x)) return sign | kFp8E4M3NaN;
  const float a = std::min(std::fabs(x), kFp8E4M3Max);  // saturate: E4M3FN has no infinity
  if (a < 0x1p-6f) {
    // Subnormal range: multiples of 2^-9 (8 of them reach the smallest normal, code 0x08).
    return sign | static_cast<uint8_t>(std::nearbyint(a * 512.0f));
  }
  // Normal: round the 23-bit mantissa to 3 bits, nearest even; a carry bumps the exponent.
  uint32_t ua;
  std::memcpy(&ua, &a, 4);
  ua += 0x7ffffu + ((ua >> 20) & 1);
  return sign | static_cast<uint8_t>((ua >> 20) - ((127u - 7u) << 3));
}

float E4M3ToFloat(uint8_t code) {
  const bool negative = code & 0x80;
  const int exponent = (code >> 3) & 0xf;
  const int mantissa = code & 0x7;
  if ((code & 0x7f) == kFp8E4M3NaN) {
    const uint32_t bits = (negative ? 0x80000000u : 0u) | 0x7fc00000u;
    float nan;
    std::memcpy(&nan, &bits, 4);
    return nan;
  }
  const float v = exponent == 0 ? static_cast<float>(mantissa) * 0x1p-9f
                                : std::ldexp(1.0f + static_cast<float>(mantissa) / 8.0f,
                                             exponent - 7);
  return negative ? -v : v;
}

namespace {

Range FiniteRange(const float* x, uint64_t n, uint64_t stride) {
  Range r;
  bool any = false;
  for (uint64_t i = 0; i < n; ++i) {
    const float v = x[i * stride];
    if (!std::isfinite(v)) continue;
    r.amax = std::max(r.amax, std::fabs(v));
    r.lo = any ? std::min(r.lo, v) : v;
    r.hi = any ? std::max(r.hi, v) : v;
    any = true;
  }
  return r;
}

// Which group of a block holds channel c: per channel, its own; per token, c / group size.
struct GroupGeometry {
  bool per_channel;
  uint64_t group_size;
  uint64_t Group(uint64_t c) const { return per_channel ? c : c / group_size; }
};

}  // namespace

void QuantEncodeRef(const QuantParams& p, const void* src, DType src_type, uint64_t rows,
                    uint64_t cols, uint8_t* dst) {
  const uint64_t block_rows = QuantBlockRows(p);
  const uint64_t cq = cols - p.keep_cols;
  const GroupGeometry geo{block_rows > 1, QuantGroupSize(p.kind)};
  std::vector<float> x(block_rows * cols);
  std::vector<uint8_t> codes(block_rows * cq);

  for (uint64_t r0 = 0; r0 < rows; r0 += block_rows) {
    const uint64_t b = std::min(block_rows, rows - r0);
    const QuantBlockLayout l = QuantLayout(p, b, cols);
    uint8_t* block = dst + QuantBytes(p, r0, cols);  // every earlier block is full
    ConvertDType(static_cast<const uint8_t*>(src) + r0 * cols * DTypeSize(src_type), src_type,
                 x.data(), DType::kF32, b * cols);

    // 1. One scale (and zero) per group, then the code of every quantized value.
    for (uint64_t k = 0; k < l.num_groups; ++k) {
      const uint64_t first_c = geo.per_channel ? k : k * geo.group_size;
      const uint64_t n = geo.per_channel ? b : std::min(geo.group_size, cq - first_c);
      const uint64_t stride = geo.per_channel ? cols : 1;
      const GroupScale s = quant_internal::ScaleFor(p.kind, FiniteRange(&x[first_c], n, stride));
      PutF32(block + l.scales_offset + 4 * k, s.scale);
      if (p.kind == QuantKind::kInt4) PutF32(block + l.zeros_offset + 4 * k, s.zero);
      for (uint64_t i = 0; i < n; ++i) {
        const uint64_t r = geo.per_channel ? i : 0;
        const uint64_t c = geo.per_channel ? k : first_c + i;
        codes[r * cq + c] = EncodeElem(p.kind, x[r * cols + c], s);
      }
    }

    // 2. Codes row by row: a byte each, or two nibbles per byte (even channel low).
    for (uint64_t r = 0; r < b; ++r) {
      uint8_t* row = block + r * l.code_bytes_per_row;
      std::memset(row, 0, l.code_bytes_per_row);
      for (uint64_t c = 0; c < cq; ++c) {
        if (p.kind == QuantKind::kInt4) {
          row[c / 2] |= static_cast<uint8_t>(codes[r * cq + c] << (4 * (c % 2)));
        } else {
          row[c] = codes[r * cq + c];
        }
      }
    }

    // 3. Kept channels in bf16.
    for (uint64_t r = 0; r < b; ++r) {
      for (uint64_t j = 0; j < p.keep_cols; ++j) {
        PutU16(block + l.tail_offset + 2 * (r * p.keep_cols + j),
               FloatToBF16(x[r * cols + cq + j]));
      }
    }
  }
}

void QuantDecodeRef(const QuantParams& p, const uint8_t* src, uint64_t rows, uint64_t cols,
                    void* dst, DType dst_type) {
  const uint64_t block_rows = QuantBlockRows(p);
  const uint64_t cq = cols - p.keep_cols;
  const GroupGeometry geo{block_rows > 1, QuantGroupSize(p.kind)};
  std::vector<float> y(block_rows * cols);

  for (uint64_t r0 = 0; r0 < rows; r0 += block_rows) {
    const uint64_t b = std::min(block_rows, rows - r0);
    const QuantBlockLayout l = QuantLayout(p, b, cols);
    const uint8_t* block = src + QuantBytes(p, r0, cols);
    for (uint64_t r = 0; r < b; ++r) {
      const uint8_t* row = block + r * l.code_bytes_per_row;
      for (uint64_t c = 0; c < cq; ++c) {
        const uint64_t k = geo.Group(c);
        const float scale = GetF32(block + l.scales_offset + 4 * k);
        const float zero = p.kind == QuantKind::kInt4 ? GetF32(block + l.zeros_offset + 4 * k) : 0;
        const uint8_t code =
            p.kind == QuantKind::kInt4 ? (row[c / 2] >> (4 * (c % 2))) & 0xf : row[c];
        y[r * cols + c] = DecodeElem(p.kind, code, scale, zero);
      }
      for (uint64_t j = 0; j < p.keep_cols; ++j) {
        y[r * cols + cq + j] =
            BF16ToFloat(GetU16(block + l.tail_offset + 2 * (r * p.keep_cols + j)));
      }
    }
    ConvertDType(y.data(), DType::kF32,
                 static_cast<uint8_t*>(dst) + r0 * cols * DTypeSize(dst_type), dst_type, b * cols);
  }
}

}  // namespace slimkv::kernels
