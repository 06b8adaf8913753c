// Byte layouts of the quantized page formats (fp8 e4m3, int8, int4), defined once for host and
// device code. docs/quantizers.md describes them byte by byte.
//
// A quantizer stores a float matrix of `rows` tokens × `cols` channels. The last
// `keep_cols` channels of every row may be kept unquantized in bf16 (FlashMLA keeps the 64 rope
// dims of DeepSeek's 576-wide latent that way); the first `cq = cols - keep_cols` channels are
// quantized in groups:
//   fp8  e4m3, 128 consecutive channels of one row share one fp32 scale;
//   int8 symmetric, 64 consecutive channels of one row share one fp32 scale;
//   int4 asymmetric (fp32 scale and fp32 zero), 32 values per group, either along a row
//        (kPerToken: KIVI's values) or along a channel over 32 consecutive rows
//        (kPerChannel: KIVI's keys).
// A partial last group (cq not a multiple of the group, or fewer than 32 rows left for
// kPerChannel) has its own scale computed over the values it has.
//
// The matrix is stored as a sequence of blocks of QuantBlockRows() rows (1, or 32 for
// kPerChannel; the last block may be shorter). A block of b rows is, with no padding anywhere:
//   [codes: b × QuantCodeBytesPerRow]   row-major; int4 two codes per byte, see below
//   [scales: num_groups × fp32]
//   [zeros:  num_groups × fp32]          int4 only
//   [tail:   b × keep_cols × bf16]       row-major
// All multi-byte fields are little-endian and may be unaligned (read them with memcpy).
// int4 codes are unsigned 0..15; code of channel 2i is the low nibble (bits 0..3) of byte i and
// channel 2i+1 the high nibble; an odd cq leaves the last high nibble zero.
// int8 codes are two's complement in [-127, 127].
//
// This header is C++17 and free of Abseil so .cu files can include it.
//
// Thread-safety: immutable (constants and pure functions).
#pragma once

#include <cstddef>
#include <cstdint>

#if defined(__CUDACC__)
#define SLIMKV_QUANT_HD __host__ __device__
#else
#define SLIMKV_QUANT_HD
#endif

namespace slimkv::kernels {

// Values are stored in page headers; never renumber.
enum class QuantKind : uint8_t {
  kFp8E4M3 = 1,  // OCP FP8 E4M3FN: bias 7, max 448, no infinities, NaN = S.1111.111
  kInt8 = 2,
  kInt4 = 3,
};

// Which values share an int4 group. fp8 and int8 are always kPerToken.
enum class QuantAxis : uint8_t {
  kPerToken = 0,    // consecutive channels of one row
  kPerChannel = 1,  // one channel of consecutive rows
};

struct QuantParams {
  QuantKind kind = QuantKind::kInt8;
  QuantAxis axis = QuantAxis::kPerToken;
  // Trailing channels of each row stored as bf16 instead of quantized. REQUIRES <= cols.
  uint32_t keep_cols = 0;
};

inline constexpr uint32_t kFp8GroupSize = 128;
inline constexpr uint32_t kInt8GroupSize = 64;
inline constexpr uint32_t kInt4GroupSize = 32;
inline constexpr float kFp8E4M3Max = 448.0f;
inline constexpr uint8_t kFp8E4M3NaN = 0x7f;  // | 0x80 for the negative one

SLIMKV_QUANT_HD constexpr uint32_t QuantGroupSize(QuantKind k) {
  return k == QuantKind::kFp8E4M3 ? kFp8GroupSize
         : k == QuantKind::kInt8  ? kInt8GroupSize
                                  : kInt4GroupSize;
}

// Rows per block: 32 for int4 per-channel (one group along the token axis), else 1.
SLIMKV_QUANT_HD constexpr uint64_t QuantBlockRows(const QuantParams& p) {
  return (p.kind == QuantKind::kInt4 && p.axis == QuantAxis::kPerChannel) ? kInt4GroupSize : 1;
}

SLIMKV_QUANT_HD constexpr uint64_t QuantCodeBytesPerRow(QuantKind k, uint64_t cq) {
  return k == QuantKind::kInt4 ? (cq + 1) / 2 : cq;
}

// Offsets inside one block of `block_rows` rows, relative to the block's first byte.
struct QuantBlockLayout {
  uint64_t code_bytes_per_row = 0;
  uint64_t num_groups = 0;     // scales in the block (and zeros, for int4)
  uint64_t scales_offset = 0;  // == code bytes of the block
  uint64_t zeros_offset = 0;   // == tail_offset when the format has no zeros
  uint64_t tail_offset = 0;
  uint64_t bytes = 0;          // whole block
};

// REQUIRES: p.keep_cols <= cols, block_rows <= QuantBlockRows(p) unless QuantBlockRows(p) == 1.
SLIMKV_QUANT_HD constexpr QuantBlockLayout QuantLayout(const QuantParams& p, uint64_t block_rows,
                                                       uint64_t cols) {
  const uint64_t cq = cols - p.keep_cols;
  const uint64_t g = QuantGroupSize(p.kind);
  QuantBlockLayout l;
  l.code_bytes_per_row = QuantCodeBytesPerRow(p.kind, cq);
  l.num_groups = QuantBlockRows(p) == 1 ? (cq + g - 1) / g : cq;
  l.scales_offset = block_rows * l.code_bytes_per_row;
  l.zeros_offset = l.scales_offset + 4 * l.num_groups;
  l.tail_offset = l.zeros_offset + (p.kind == QuantKind::kInt4 ? 4 * l.num_groups : 0);
  l.bytes = l.tail_offset + 2 * block_rows * p.keep_cols;
  return l;
}

// Exact stored bytes of a rows × cols matrix: the whole format, no header.
// REQUIRES: p.keep_cols <= cols.
SLIMKV_QUANT_HD constexpr uint64_t QuantBytes(const QuantParams& p, uint64_t rows, uint64_t cols) {
  const uint64_t br = QuantBlockRows(p);
  const uint64_t full = rows / br, rest = rows % br;
  return full * QuantLayout(p, br, cols).bytes + (rest ? QuantLayout(p, rest, cols).bytes : 0);
}

// One token of DeepSeek V2/V3's latent cache in FlashMLA's FP8 format: c_kv (512) in e4m3 with
// one scale per 128 values, k_rope (64) kept in bf16. QuantParams{kFp8E4M3, kPerToken, 64} on a
// 576-wide row produces exactly this record.
struct Fp8MlaTokenRecord {
  uint8_t nope_e4m3[512];
  float nope_scale[4];
  uint16_t rope_bf16[64];
};
static_assert(sizeof(Fp8MlaTokenRecord) == 656, "FlashMLA FP8 token is 656 bytes");
static_assert(QuantBytes(QuantParams{QuantKind::kFp8E4M3, QuantAxis::kPerToken, 64}, 1, 576) ==
                  sizeof(Fp8MlaTokenRecord),
              "fp8 layout must match FlashMLA's");
static_assert(QuantLayout(QuantParams{QuantKind::kFp8E4M3, QuantAxis::kPerToken, 64}, 1, 576)
                      .scales_offset == offsetof(Fp8MlaTokenRecord, nope_scale) &&
                  QuantLayout(QuantParams{QuantKind::kFp8E4M3, QuantAxis::kPerToken, 64}, 1, 576)
                          .tail_offset == offsetof(Fp8MlaTokenRecord, rope_bf16),
              "fp8 field offsets must match FlashMLA's");

}  // namespace slimkv::kernels
