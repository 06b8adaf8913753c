// AVX2 + F16C fast path of the quantizers, bit-identical to quant_ref.cc (quant_test checks
// every format, dtype and odd shape). Functions carry a target attribute instead of the file
// being built with -mavx2, so no inline function shared with other files is ever compiled for
// AVX2; QuantEncode/QuantDecode call in only after Avx2Supported().
//
// Shared shape of every kernel: per group, one pass for the range (which also notices
// non-finite values), then one pass that writes codes 8 or 16 at a time, the scalar helpers of
// quant_internal.h finishing partial vectors. A row (or int4 per-channel block) holding a NaN or
// an infinity is rare and re-encoded by the reference, which defines what happens to it.
#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "kernels/quant.h"
#include "kernels/quant_internal.h"

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define SLIMKV_HAVE_AVX2_PATH 1
#endif

namespace slimkv::kernels::quant_internal {

#if defined(SLIMKV_HAVE_AVX2_PATH)

bool Avx2Supported() {
  static const bool ok = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("f16c");
  return ok;
}

namespace {

#define SLIMKV_AVX2 __attribute__((target("avx2,f16c")))
// Small helpers must inline into the loops: a call per 8 lanes costs more than the work.
#define SLIMKV_AVX2_INLINE inline __attribute__((target("avx2,f16c"), always_inline))

// ---- element loads and stores (index i counts elements of type T from p) ----

template <DType T>
float Load1(const void* p, uint64_t i) {
  const uint8_t* b = static_cast<const uint8_t*>(p) + i * DTypeSize(T);
  if constexpr (T == DType::kF32) return GetF32(b);
  if constexpr (T == DType::kF16) return HalfToFloat(GetU16(b));
  return BF16ToFloat(GetU16(b));
}

template <DType T>
void Store1(void* p, uint64_t i, float v) {
  uint8_t* b = static_cast<uint8_t*>(p) + i * DTypeSize(T);
  if constexpr (T == DType::kF32) PutF32(b, v);
  if constexpr (T == DType::kF16) PutU16(b, FloatToHalf(v));
  if constexpr (T == DType::kBF16) PutU16(b, FloatToBF16(v));
}

template <DType T>
SLIMKV_AVX2_INLINE __m256 Load8(const void* p, uint64_t i) {
  const uint8_t* b = static_cast<const uint8_t*>(p) + i * DTypeSize(T);
  if constexpr (T == DType::kF32) {
    return _mm256_loadu_ps(reinterpret_cast<const float*>(b));
  } else {
    const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(b));
    if constexpr (T == DType::kF16) return _mm256_cvtph_ps(h);  // exact, like HalfToFloat
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
  }
}

template <DType T>
__attribute__((noinline, cold)) void Store8Scalar(void* p, uint64_t i, const float* f) {
  for (int k = 0; k < 8; ++k) Store1<T>(p, i + k, f[k]);
}

// Rounds like FloatToHalf / FloatToBF16. Lanes holding NaN go through those scalar functions,
// whose NaN encoding (payload, quiet bit) the vector forms do not reproduce.
template <DType T>
SLIMKV_AVX2_INLINE void Store8(void* p, uint64_t i, __m256 v) {
  uint8_t* b = static_cast<uint8_t*>(p) + i * DTypeSize(T);
  if constexpr (T == DType::kF32) {
    _mm256_storeu_ps(reinterpret_cast<float*>(b), v);
  } else {
    if (_mm256_movemask_ps(_mm256_cmp_ps(v, v, _CMP_UNORD_Q)) != 0) {
      alignas(32) float f[8];
      _mm256_store_ps(f, v);
      Store8Scalar<T>(p, i, f);
      return;
    }
    __m128i h;
    if constexpr (T == DType::kF16) {
      h = _mm256_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    } else {
      const __m256i u = _mm256_castps_si256(v);
      const __m256i bias = _mm256_add_epi32(
          _mm256_set1_epi32(0x7fff), _mm256_and_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(1)));
      const __m256i r = _mm256_srli_epi32(_mm256_add_epi32(u, bias), 16);
      h = _mm_packus_epi32(_mm256_castsi256_si128(r), _mm256_extracti128_si256(r, 1));
    }
    _mm_storeu_si128(reinterpret_cast<__m128i*>(b), h);
  }
}

// ---- reductions and code packing ----

SLIMKV_AVX2_INLINE float HorizontalMax(__m256 v) {
  __m128 m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  m = _mm_max_ps(m, _mm_movehl_ps(m, m));
  m = _mm_max_ss(m, _mm_shuffle_ps(m, m, 1));
  return _mm_cvtss_f32(m);
}

SLIMKV_AVX2_INLINE float HorizontalMin(__m256 v) {
  __m128 m = _mm_min_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  m = _mm_min_ps(m, _mm_movehl_ps(m, m));
  m = _mm_min_ss(m, _mm_shuffle_ps(m, m, 1));
  return _mm_cvtss_f32(m);
}

// Eight int32 lanes in [0, 255] (or [-128, 127] when signed) to eight bytes.
SLIMKV_AVX2_INLINE void StoreBytes8(uint8_t* p, __m256i c, bool is_signed) {
  const __m128i lo = _mm256_castsi256_si128(c), hi = _mm256_extracti128_si256(c, 1);
  const __m128i b = is_signed ? _mm_packs_epi16(_mm_packs_epi32(lo, hi), _mm_setzero_si128())
                              : _mm_packus_epi16(_mm_packus_epi32(lo, hi), _mm_setzero_si128());
  _mm_storel_epi64(reinterpret_cast<__m128i*>(p), b);
}

// Sixteen int32 lanes in [0, 15] to eight bytes, even element in the low nibble.
SLIMKV_AVX2_INLINE void StoreNibbles16(uint8_t* p, __m256i c0, __m256i c1) {
  const __m128i w0 =
      _mm_packus_epi32(_mm256_castsi256_si128(c0), _mm256_extracti128_si256(c0, 1));
  const __m128i w1 =
      _mm_packus_epi32(_mm256_castsi256_si128(c1), _mm256_extracti128_si256(c1, 1));
  const __m128i bytes = _mm_packus_epi16(w0, w1);
  const __m128i pairs = _mm_maddubs_epi16(bytes, _mm_set1_epi16(0x1001));  // even + 16 * odd
  _mm_storel_epi64(reinterpret_cast<__m128i*>(p), _mm_packus_epi16(pairs, pairs));
}

// ---- encode arithmetic, lane for lane what EncodeElem does to finite values ----

// FloatToE4M3 of eight finite values.
SLIMKV_AVX2_INLINE __m256i Fp8Codes(__m256 y) {
  const __m256i u = _mm256_castps_si256(y);
  const __m256i sign = _mm256_and_si256(_mm256_srli_epi32(u, 24), _mm256_set1_epi32(0x80));
  const __m256 a = _mm256_min_ps(
      _mm256_and_ps(y, _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff))),
      _mm256_set1_ps(kFp8E4M3Max));
  const __m256i ua = _mm256_castps_si256(a);
  // Normal: round the mantissa to 3 bits, nearest even, then rebias the exponent 127 -> 7.
  const __m256i rounded = _mm256_add_epi32(
      ua, _mm256_add_epi32(_mm256_set1_epi32(0x7ffff),
                           _mm256_and_si256(_mm256_srli_epi32(ua, 20), _mm256_set1_epi32(1))));
  const __m256i normal =
      _mm256_sub_epi32(_mm256_srli_epi32(rounded, 20), _mm256_set1_epi32((127 - 7) << 3));
  // Subnormal (a < 2^-6): adding 2^14, whose ulp is 2^-9, rounds a to a multiple of 2^-9.
  const __m256 magic = _mm256_set1_ps(0x1p14f);
  const __m256i subnormal = _mm256_sub_epi32(_mm256_castps_si256(_mm256_add_ps(a, magic)),
                                             _mm256_castps_si256(magic));
  const __m256i small = _mm256_cmpgt_epi32(_mm256_set1_epi32((127 - 6) << 23), ua);
  return _mm256_or_si256(_mm256_blendv_epi8(normal, subnormal, small), sign);
}

SLIMKV_AVX2_INLINE __m256i RoundedCodes(__m256 y, float lo, float hi) {
  y = _mm256_min_ps(_mm256_max_ps(y, _mm256_set1_ps(lo)), _mm256_set1_ps(hi));
  return _mm256_cvtps_epi32(_mm256_round_ps(y, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
}

SLIMKV_AVX2_INLINE __m256i Int4Codes(__m256 x, __m256 zero, __m256 inv) {
  return RoundedCodes(_mm256_mul_ps(_mm256_sub_ps(x, zero), inv), 0.0f, 15.0f);
}

// ---- decode arithmetic ----

// The exact values of eight e4m3 codes.
SLIMKV_AVX2_INLINE __m256 Fp8Values(const uint8_t* p) {
  const __m256i c = _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p)));
  const __m256i m = _mm256_and_si256(c, _mm256_set1_epi32(0x7f));
  const __m256i sign = _mm256_slli_epi32(_mm256_and_si256(c, _mm256_set1_epi32(0x80)), 24);
  // Code bits placed as a float's exponent and mantissa read 2^-120 times the e4m3 value
  // (subnormals included): the multiplication restores it exactly.
  const __m256 v = _mm256_mul_ps(_mm256_castsi256_ps(_mm256_slli_epi32(m, 20)),
                                 _mm256_set1_ps(0x1p120f));
  const __m256i bits = _mm256_or_si256(_mm256_castps_si256(v), sign);
  const __m256i nan = _mm256_or_si256(sign, _mm256_set1_epi32(0x7fc00000));
  return _mm256_castsi256_ps(
      _mm256_blendv_epi8(bits, nan, _mm256_cmpeq_epi32(m, _mm256_set1_epi32(kFp8E4M3NaN))));
}

SLIMKV_AVX2_INLINE __m256 Int8Values(const uint8_t* p) {
  return _mm256_cvtepi32_ps(
      _mm256_cvtepi8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p))));
}

// Sixteen int4 codes from eight bytes.
SLIMKV_AVX2_INLINE void Int4Values(const uint8_t* p, __m256* v0, __m256* v1) {
  const __m128i b = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(p));
  const __m128i mask = _mm_set1_epi8(0x0f);
  const __m128i q = _mm_unpacklo_epi8(_mm_and_si128(b, mask),
                                      _mm_and_si128(_mm_srli_epi16(b, 4), mask));
  *v0 = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(q));
  *v1 = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_srli_si128(q, 8)));
}

// ---- kept bf16 channels ----

template <DType T>
SLIMKV_AVX2 void EncodeTail(const void* src, uint64_t i0, uint64_t n, uint8_t* tail) {
  uint64_t j = 0;
  for (; j + 8 <= n; j += 8) Store8<DType::kBF16>(tail, j, Load8<T>(src, i0 + j));
  for (; j < n; ++j) PutU16(tail + 2 * j, FloatToBF16(Load1<T>(src, i0 + j)));
}

template <DType T>
SLIMKV_AVX2 void DecodeTail(const uint8_t* tail, uint64_t n, void* dst, uint64_t i0) {
  uint64_t j = 0;
  for (; j + 8 <= n; j += 8) Store8<T>(dst, i0 + j, Load8<DType::kBF16>(tail, j));
  for (; j < n; ++j) Store1<T>(dst, i0 + j, BF16ToFloat(GetU16(tail + 2 * j)));
}

// ---- one row at a time: fp8, int8, int4 per token ----

// Group statistics of a row, before any scale: amax of every group (fp8, int8) or min and max
// (int4) into lo / hi. Returns false when the row holds a NaN or an infinity.
template <DType T>
SLIMKV_AVX2 bool RowRanges(QuantKind kind, const void* src, uint64_t base, uint64_t cq,
                           uint64_t g, float* lo, float* hi) {
  const __m256i abs_mask = _mm256_set1_epi32(0x7fffffff);
  __m256 bad = _mm256_setzero_ps();  // accumulates x - x: NaN iff some x is not finite
  for (uint64_t c0 = 0, k = 0; c0 < cq; c0 += g, ++k) {
    const uint64_t n = std::min(g, cq - c0);
    uint64_t i = 0;
    if (kind != QuantKind::kInt4) {
      // On magnitudes, integer max is float max, and NaN / inf (bits >= 0x7f800000) stay
      // visible in the result: two integer ops per vector.
      __m256i m0 = _mm256_setzero_si256(), m1 = _mm256_setzero_si256();
      for (; i + 16 <= n; i += 16) {
        m0 = _mm256_max_epi32(m0, _mm256_and_si256(_mm256_castps_si256(Load8<T>(src, base + c0 + i)), abs_mask));
        m1 = _mm256_max_epi32(m1, _mm256_and_si256(_mm256_castps_si256(Load8<T>(src, base + c0 + i + 8)), abs_mask));
      }
      for (; i + 8 <= n; i += 8) {
        m0 = _mm256_max_epi32(m0, _mm256_and_si256(_mm256_castps_si256(Load8<T>(src, base + c0 + i)), abs_mask));
      }
      m0 = _mm256_max_epi32(m0, m1);
      __m128i m = _mm_max_epi32(_mm256_castsi256_si128(m0), _mm256_extracti128_si256(m0, 1));
      m = _mm_max_epi32(m, _mm_shuffle_epi32(m, 0x4e));
      m = _mm_max_epi32(m, _mm_shuffle_epi32(m, 0xb1));
      uint32_t bits = static_cast<uint32_t>(_mm_cvtsi128_si32(m));
      for (; i < n; ++i) {
        const float x = Load1<T>(src, base + c0 + i);
        uint32_t u;
        std::memcpy(&u, &x, 4);
        bits = std::max(bits, u & 0x7fffffffu);
      }
      if (bits >= 0x7f800000u) return false;
      std::memcpy(&lo[k], &bits, 4);
      continue;
    }
    __m256 vlo = _mm256_set1_ps(std::numeric_limits<float>::infinity());
    __m256 vhi = _mm256_set1_ps(-std::numeric_limits<float>::infinity());
    for (; i + 8 <= n; i += 8) {
      const __m256 x = Load8<T>(src, base + c0 + i);
      bad = _mm256_or_ps(bad, _mm256_sub_ps(x, x));
      vlo = _mm256_min_ps(vlo, x);
      vhi = _mm256_max_ps(vhi, x);
    }
    lo[k] = HorizontalMin(vlo);
    hi[k] = HorizontalMax(vhi);
    for (; i < n; ++i) {
      const float x = Load1<T>(src, base + c0 + i);
      if (!std::isfinite(x)) return false;
      lo[k] = std::min(lo[k], x);
      hi[k] = std::max(hi[k], x);
    }
  }
  return _mm256_movemask_ps(_mm256_cmp_ps(bad, bad, _CMP_UNORD_Q)) == 0;
}

// ScaleFor of n groups at once: the divisions dominate a group's fixed cost. Same IEEE
// operations as ScaleFor, lane for lane.
SLIMKV_AVX2 void Scales(QuantKind kind, uint64_t n, const float* lo, const float* hi,
                        float* scale, float* zero, float* inv) {
  uint64_t k = 0;
  for (; k + 8 <= n; k += 8) {
    __m256 s;
    const __m256 l = _mm256_loadu_ps(lo + k);
    if (kind == QuantKind::kInt4) {
      const __m256 fifteen = _mm256_set1_ps(15.0f);
      s = _mm256_sub_ps(_mm256_div_ps(_mm256_loadu_ps(hi + k), fifteen), _mm256_div_ps(l, fifteen));
      s = _mm256_add_ps(s, _mm256_setzero_ps());
      _mm256_storeu_ps(zero + k, _mm256_add_ps(l, _mm256_setzero_ps()));
    } else {
      s = _mm256_div_ps(l, _mm256_set1_ps(kind == QuantKind::kFp8E4M3 ? kFp8E4M3Max : 127.0f));
    }
    const __m256 usable = _mm256_cmp_ps(s, _mm256_set1_ps(FLT_MIN), _CMP_GE_OQ);
    _mm256_storeu_ps(scale + k, s);
    _mm256_storeu_ps(inv + k, _mm256_and_ps(_mm256_div_ps(_mm256_set1_ps(1.0f), s), usable));
  }
  for (; k < n; ++k) {
    const GroupScale s = ScaleFor(kind, Range{lo[k], lo[k], hi[k]});
    scale[k] = s.scale;
    zero[k] = s.zero;
    inv[k] = s.inv;
  }
}

// Codes of n finite values src[i0, i0 + n) into `codes` (int4: starting at a byte boundary).
template <DType T>
SLIMKV_AVX2 void EncodeGroup(QuantKind kind, const void* src, uint64_t i0, uint64_t n,
                             const GroupScale& s, uint8_t* codes) {
  const __m256 inv = _mm256_set1_ps(s.inv);
  uint64_t i = 0;
  if (kind == QuantKind::kInt4) {
    const __m256 zero = _mm256_set1_ps(s.zero);
    for (; i + 16 <= n; i += 16) {
      StoreNibbles16(codes + i / 2, Int4Codes(Load8<T>(src, i0 + i), zero, inv),
                     Int4Codes(Load8<T>(src, i0 + i + 8), zero, inv));
    }
    for (; i < n; i += 2) {
      const uint8_t odd = i + 1 < n ? EncodeElem(kind, Load1<T>(src, i0 + i + 1), s) : 0;
      codes[i / 2] = static_cast<uint8_t>(EncodeElem(kind, Load1<T>(src, i0 + i), s) | odd << 4);
    }
    return;
  }
  for (; i + 8 <= n; i += 8) {
    const __m256 y = _mm256_mul_ps(Load8<T>(src, i0 + i), inv);
    if (kind == QuantKind::kFp8E4M3) {
      StoreBytes8(codes + i, Fp8Codes(y), /*is_signed=*/false);
    } else {
      StoreBytes8(codes + i, RoundedCodes(y, -127.0f, 127.0f), /*is_signed=*/true);
    }
  }
  for (; i < n; ++i) codes[i] = EncodeElem(kind, Load1<T>(src, i0 + i), s);
}

template <DType T>
SLIMKV_AVX2 void EncodeRows(const QuantParams& p, const void* src, uint64_t rows, uint64_t cols,
                            uint8_t* dst) {
  const QuantBlockLayout l = QuantLayout(p, 1, cols);
  const uint64_t cq = cols - p.keep_cols;
  const uint64_t g = QuantGroupSize(p.kind);
  const uint64_t groups = l.num_groups;
  std::vector<float> lo(groups), hi(groups), scale(groups), zero(groups), inv(groups);
  for (uint64_t r = 0; r < rows; ++r) {
    uint8_t* rec = dst + r * l.bytes;
    const uint64_t base = r * cols;
    if (!RowRanges<T>(p.kind, src, base, cq, g, lo.data(), hi.data())) {
      QuantEncodeRef(p, static_cast<const uint8_t*>(src) + base * DTypeSize(T), T, 1, cols, rec);
      continue;
    }
    Scales(p.kind, groups, lo.data(), hi.data(), scale.data(), zero.data(), inv.data());
    std::memcpy(rec + l.scales_offset, scale.data(), 4 * groups);
    if (p.kind == QuantKind::kInt4) std::memcpy(rec + l.zeros_offset, zero.data(), 4 * groups);
    for (uint64_t k = 0; k < groups; ++k) {
      const uint64_t c0 = k * g;
      EncodeGroup<T>(p.kind, src, base + c0, std::min(g, cq - c0), GroupScale{scale[k], zero[k], inv[k]},
                     rec + QuantCodeBytesPerRow(p.kind, c0));
    }
    EncodeTail<T>(src, base + cq, p.keep_cols, rec + l.tail_offset);
  }
}

template <DType T>
SLIMKV_AVX2 void DecodeRows(const QuantParams& p, const uint8_t* src, uint64_t rows,
                            uint64_t cols, void* dst) {
  const QuantBlockLayout l = QuantLayout(p, 1, cols);
  const uint64_t cq = cols - p.keep_cols;
  const uint64_t g = QuantGroupSize(p.kind);
  for (uint64_t r = 0; r < rows; ++r) {
    const uint8_t* rec = src + r * l.bytes;
    const uint64_t base = r * cols;
    for (uint64_t k = 0; k < l.num_groups; ++k) {
      const uint64_t c0 = k * g, n = std::min(g, cq - c0);
      const float scale = GetF32(rec + l.scales_offset + 4 * k);
      const float zero = p.kind == QuantKind::kInt4 ? GetF32(rec + l.zeros_offset + 4 * k) : 0;
      const uint8_t* codes = rec + QuantCodeBytesPerRow(p.kind, c0);
      const __m256 vs = _mm256_set1_ps(scale), vz = _mm256_set1_ps(zero);
      uint64_t i = 0;
      switch (p.kind) {
        case QuantKind::kFp8E4M3:
          for (; i + 8 <= n; i += 8) {
            Store8<T>(dst, base + c0 + i, _mm256_mul_ps(Fp8Values(codes + i), vs));
          }
          break;
        case QuantKind::kInt8:
          for (; i + 8 <= n; i += 8) {
            Store8<T>(dst, base + c0 + i, _mm256_mul_ps(Int8Values(codes + i), vs));
          }
          break;
        case QuantKind::kInt4:
          for (; i + 16 <= n; i += 16) {
            __m256 v0, v1;
            Int4Values(codes + i / 2, &v0, &v1);
            Store8<T>(dst, base + c0 + i, _mm256_add_ps(vz, _mm256_mul_ps(v0, vs)));
            Store8<T>(dst, base + c0 + i + 8, _mm256_add_ps(vz, _mm256_mul_ps(v1, vs)));
          }
          break;
      }
      for (; i < n; ++i) {
        const uint8_t code =
            p.kind == QuantKind::kInt4 ? (codes[i / 2] >> (4 * (i % 2))) & 0xf : codes[i];
        Store1<T>(dst, base + c0 + i, DecodeElem(p.kind, code, scale, zero));
      }
    }
    DecodeTail<T>(rec + l.tail_offset, p.keep_cols, dst, base + cq);
  }
}

// ---- int4 per channel: blocks of 32 rows, one group per channel ----

template <DType T>
SLIMKV_AVX2 void EncodeInt4PerChannel(const QuantParams& p, const void* src, uint64_t rows,
                                      uint64_t cols, uint8_t* dst) {
  const uint64_t block_rows = QuantBlockRows(p);
  const uint64_t cq = cols - p.keep_cols;
  std::vector<float> lo(cq), hi(cq), scale(cq), zero(cq), inv(cq);
  for (uint64_t r0 = 0; r0 < rows; r0 += block_rows) {
    const uint64_t b = std::min(block_rows, rows - r0);
    const QuantBlockLayout l = QuantLayout(p, b, cols);
    uint8_t* block = dst + QuantBytes(p, r0, cols);

    std::fill(lo.begin(), lo.end(), std::numeric_limits<float>::infinity());
    std::fill(hi.begin(), hi.end(), -std::numeric_limits<float>::infinity());
    const __m256 abs_mask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
    int non_finite = 0;
    for (uint64_t r = 0; r < b; ++r) {
      const uint64_t base = (r0 + r) * cols;
      uint64_t c = 0;
      for (; c + 8 <= cq; c += 8) {
        const __m256 x = Load8<T>(src, base + c);
        non_finite |= _mm256_movemask_ps(
            _mm256_cmp_ps(_mm256_and_ps(x, abs_mask), _mm256_set1_ps(FLT_MAX), _CMP_NLE_UQ));
        _mm256_storeu_ps(&lo[c], _mm256_min_ps(_mm256_loadu_ps(&lo[c]), x));
        _mm256_storeu_ps(&hi[c], _mm256_max_ps(_mm256_loadu_ps(&hi[c]), x));
      }
      for (; c < cq; ++c) {
        const float x = Load1<T>(src, base + c);
        non_finite |= !std::isfinite(x);
        lo[c] = std::min(lo[c], x);
        hi[c] = std::max(hi[c], x);
      }
    }
    if (non_finite) {
      QuantEncodeRef(p, static_cast<const uint8_t*>(src) + r0 * cols * DTypeSize(T), T, b, cols,
                     block);
      continue;
    }
    Scales(QuantKind::kInt4, cq, lo.data(), hi.data(), scale.data(), zero.data(), inv.data());
    std::memcpy(block + l.scales_offset, scale.data(), 4 * cq);
    std::memcpy(block + l.zeros_offset, zero.data(), 4 * cq);
    for (uint64_t r = 0; r < b; ++r) {
      const uint64_t base = (r0 + r) * cols;
      uint8_t* codes = block + r * l.code_bytes_per_row;
      uint64_t c = 0;
      for (; c + 16 <= cq; c += 16) {
        StoreNibbles16(
            codes + c / 2,
            Int4Codes(Load8<T>(src, base + c), _mm256_loadu_ps(&zero[c]), _mm256_loadu_ps(&inv[c])),
            Int4Codes(Load8<T>(src, base + c + 8), _mm256_loadu_ps(&zero[c + 8]),
                      _mm256_loadu_ps(&inv[c + 8])));
      }
      for (; c < cq; c += 2) {
        auto code = [&](uint64_t k) -> uint8_t {
          return EncodeElem(QuantKind::kInt4, Load1<T>(src, base + k), GroupScale{0, zero[k], inv[k]});
        };
        codes[c / 2] = static_cast<uint8_t>(code(c) | (c + 1 < cq ? code(c + 1) : 0) << 4);
      }
      EncodeTail<T>(src, base + cq, p.keep_cols, block + l.tail_offset + 2 * r * p.keep_cols);
    }
  }
}

template <DType T>
SLIMKV_AVX2 void DecodeInt4PerChannel(const QuantParams& p, const uint8_t* src, uint64_t rows,
                                      uint64_t cols, void* dst) {
  const uint64_t block_rows = QuantBlockRows(p);
  const uint64_t cq = cols - p.keep_cols;
  for (uint64_t r0 = 0; r0 < rows; r0 += block_rows) {
    const uint64_t b = std::min(block_rows, rows - r0);
    const QuantBlockLayout l = QuantLayout(p, b, cols);
    const uint8_t* block = src + QuantBytes(p, r0, cols);
    const uint8_t* scales = block + l.scales_offset;
    const uint8_t* zeros = block + l.zeros_offset;
    for (uint64_t r = 0; r < b; ++r) {
      const uint64_t base = (r0 + r) * cols;
      const uint8_t* codes = block + r * l.code_bytes_per_row;
      uint64_t c = 0;
      for (; c + 16 <= cq; c += 16) {
        __m256 v0, v1;
        Int4Values(codes + c / 2, &v0, &v1);
        const float* s = reinterpret_cast<const float*>(scales + 4 * c);
        const float* z = reinterpret_cast<const float*>(zeros + 4 * c);
        Store8<T>(dst, base + c,
                  _mm256_add_ps(_mm256_loadu_ps(z), _mm256_mul_ps(v0, _mm256_loadu_ps(s))));
        Store8<T>(dst, base + c + 8, _mm256_add_ps(_mm256_loadu_ps(z + 8),
                                                   _mm256_mul_ps(v1, _mm256_loadu_ps(s + 8))));
      }
      for (; c < cq; ++c) {
        const uint8_t code = (codes[c / 2] >> (4 * (c % 2))) & 0xf;
        Store1<T>(dst, base + c,
                  DecodeElem(QuantKind::kInt4, code, GetF32(scales + 4 * c), GetF32(zeros + 4 * c)));
      }
      DecodeTail<T>(block + l.tail_offset + 2 * r * p.keep_cols, p.keep_cols, dst, base + cq);
    }
  }
}

template <DType T>
void Encode(const QuantParams& p, const void* src, uint64_t rows, uint64_t cols, uint8_t* dst) {
  if (QuantBlockRows(p) > 1) {
    EncodeInt4PerChannel<T>(p, src, rows, cols, dst);
  } else {
    EncodeRows<T>(p, src, rows, cols, dst);
  }
}

template <DType T>
void Decode(const QuantParams& p, const uint8_t* src, uint64_t rows, uint64_t cols, void* dst) {
  if (QuantBlockRows(p) > 1) {
    DecodeInt4PerChannel<T>(p, src, rows, cols, dst);
  } else {
    DecodeRows<T>(p, src, rows, cols, dst);
  }
}

}  // namespace

void QuantEncodeAvx2(const QuantParams& p, const void* src, DType src_type, uint64_t rows,
                     uint64_t cols, uint8_t* dst) {
  switch (src_type) {
    case DType::kF32: return Encode<DType::kF32>(p, src, rows, cols, dst);
    case DType::kF16: return Encode<DType::kF16>(p, src, rows, cols, dst);
    case DType::kBF16: return Encode<DType::kBF16>(p, src, rows, cols, dst);
  }
}

void QuantDecodeAvx2(const QuantParams& p, const uint8_t* src, uint64_t rows, uint64_t cols,
                     void* dst, DType dst_type) {
  switch (dst_type) {
    case DType::kF32: return Decode<DType::kF32>(p, src, rows, cols, dst);
    case DType::kF16: return Decode<DType::kF16>(p, src, rows, cols, dst);
    case DType::kBF16: return Decode<DType::kBF16>(p, src, rows, cols, dst);
  }
}

#else  // no AVX2 path on this target

bool Avx2Supported() { return false; }
void QuantEncodeAvx2(const QuantParams& p, const void* src, DType src_type, uint64_t rows,
                     uint64_t cols, uint8_t* dst) {
  QuantEncodeRef(p, src, src_type, rows, cols, dst);
}
void QuantDecodeAvx2(const QuantParams& p, const uint8_t* src, uint64_t rows, uint64_t cols,
                     void* dst, DType dst_type) {
  QuantDecodeRef(p, src, rows, cols, dst, dst_type);
}

#endif

}  // namespace slimkv::kernels::quant_internal
