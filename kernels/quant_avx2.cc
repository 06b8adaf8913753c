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
  #pragma GCC unroll 8
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

// ---- 32 values at a time ----
//
// Encode and decode work on chunks of 32 consecutive values held as four 8-lane fp32 vectors.
// fp32 and fp16 chunks are in natural order (v[j] = values 8j .. 8j+7). bf16 is widened by
// interleaving with zero halves, one instruction per 8 values, which leaves the vectors holding
// values {0-3, 8-11}, {4-7, 12-15}, {16-19, 24-27}, {20-23, 28-31}: every per-element operation
// is lane-wise, and the packing back to bytes below undoes exactly the order it was given.

template <DType T>
SLIMKV_AVX2_INLINE void Load32(const void* p, uint64_t i, __m256 v[4]) {
  const uint8_t* b = static_cast<const uint8_t*>(p) + i * DTypeSize(T);
  if constexpr (T == DType::kF32) {
    #pragma GCC unroll 8
    for (int j = 0; j < 4; ++j) v[j] = _mm256_loadu_ps(reinterpret_cast<const float*>(b) + 8 * j);
  } else if constexpr (T == DType::kF16) {
    #pragma GCC unroll 8
    for (int j = 0; j < 4; ++j) {
      v[j] = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(b + 16 * j)));
    }
  } else {
    const __m256i zero = _mm256_setzero_si256();
    #pragma GCC unroll 8
    for (int j = 0; j < 2; ++j) {
      const __m256i h = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b + 32 * j));
      v[2 * j] = _mm256_castsi256_ps(_mm256_unpacklo_epi16(zero, h));
      v[2 * j + 1] = _mm256_castsi256_ps(_mm256_unpackhi_epi16(zero, h));
    }
  }
}

// Loads 32 natural-order floats (per-channel parameters) in Load32<T>'s order; applied to
// vectors in Load32<T>'s order it gives them back in natural order (the permutation is an
// involution), which is how StoreParams32 uses it.
template <DType T>
SLIMKV_AVX2_INLINE void Reorder32(const __m256 in[4], __m256 out[4]) {
  if constexpr (T == DType::kBF16) {
    #pragma GCC unroll 8
    for (int j = 0; j < 4; j += 2) {
      out[j] = _mm256_permute2f128_ps(in[j], in[j + 1], 0x20);
      out[j + 1] = _mm256_permute2f128_ps(in[j], in[j + 1], 0x31);
    }
  } else {
    #pragma GCC unroll 8
    for (int j = 0; j < 4; ++j) out[j] = in[j];
  }
}

// Two vectors of 16-bit lanes (w0 = packs_epi32(c0, c1), w1 = packs_epi32(c2, c3) of four int32
// vectors in Load32<T>'s order) to 32 bytes in natural order, with signed or unsigned
// saturation.
template <DType T, bool kSigned>
SLIMKV_AVX2_INLINE __m256i Bytes32(__m256i w0, __m256i w1) {
  const __m256i b = kSigned ? _mm256_packs_epi16(w0, w1) : _mm256_packus_epi16(w0, w1);
  if constexpr (T == DType::kBF16) {
    return _mm256_permute4x64_epi64(b, 0xd8);
  } else {
    return _mm256_permutevar8x32_epi32(b, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
  }
}

// As Bytes32 for 32 codes in [0, 15]: 16 bytes, even element in the low nibble.
template <DType T>
SLIMKV_AVX2_INLINE __m128i Nibbles32(__m256i w0, __m256i w1) {
  // Pairs of neighbours stay adjacent through the packs, so they can be merged before the
  // order is fixed: even + 16 * odd.
  const __m256i m = _mm256_maddubs_epi16(_mm256_packus_epi16(w0, w1), _mm256_set1_epi16(0x1001));
  const __m256i p = _mm256_packus_epi16(m, m);
  const __m128i lo = _mm256_castsi256_si128(p), hi = _mm256_extracti128_si256(p, 1);
  return T == DType::kBF16 ? _mm_unpacklo_epi32(lo, hi) : _mm_unpacklo_epi16(lo, hi);
}

// ---- encode arithmetic, lane for lane what EncodeElem does to finite values ----
//
// Neither fp8 nor int8 needs a clamp: a group's scale is amax / 448 (or / 127), rounded, and
// inv = 1 / scale, rounded, so |x · inv| <= 448 · (1 + 2^-22) (or 127 · (1 + 2^-22)) for every
// finite x of the group, which rounds to the saturation code the reference's clamp gives
// (448 is the largest e4m3 value; 127.00003 rounds to 127). A scale below FLT_MIN has inv = 0.

// FloatToE4M3 of 32 finite values y = v · inv, as bytes in natural order.
//
// Rounding |y| to e4m3 is one float addition: for |y| in [2^e, 2^(e+1)), adding M = 2^(e+20)
// leaves ulp(M) = 2^(e-3), e4m3's spacing in that binade, so the sum rounds |y| to nearest even
// once, exactly as the reference's integer rounding does; below 2^-6 the exponent of M is held at
// -6+20, whose ulp 2^-9 is the subnormal spacing. The sum's low bits then hold k = |y| / ulp
// (8..16 in a normal binade, 0..8 below), and the code is 8·(e + 7) + k - 8, which one
// multiply-add over the sum's two 16-bit halves (16·k + (biased exponent of M) << 7) and a
// 16-bit shift and subtraction produce. The sign is packed separately and or-ed in.
template <DType T>
SLIMKV_AVX2_INLINE __m256i Fp8Codes32(const __m256 v[4], __m256 inv) {
  const __m256 abs_mask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
  const __m256i exp_mask = _mm256_set1_epi32(0x7f800000);
  const __m256i exp_floor = _mm256_set1_epi32(121 << 23);  // 2^-6
  const __m256i magic_shift = _mm256_set1_epi32(20 << 23);
  const __m256i halves = _mm256_set1_epi32(0x00010010);  // lo16 · 16 + hi16 · 1
  __m256i t[4], y[4];
  #pragma GCC unroll 8
  for (int j = 0; j < 4; ++j) {
    const __m256 yj = _mm256_mul_ps(v[j], inv);
    const __m256 a = _mm256_and_ps(yj, abs_mask);
    const __m256i e = _mm256_max_epi32(_mm256_and_si256(_mm256_castps_si256(a), exp_mask), exp_floor);
    const __m256 sum = _mm256_add_ps(a, _mm256_castsi256_ps(_mm256_add_epi32(e, magic_shift)));
    t[j] = _mm256_madd_epi16(_mm256_castps_si256(sum), halves);
    y[j] = _mm256_castps_si256(yj);
  }
  // t = 16·k + (E + 20) << 7 with E the held biased exponent; code = (t >> 4) - (121 + 20)·8.
  const __m256i bias = _mm256_set1_epi16(141 * 8);
  const __m256i w0 = _mm256_sub_epi16(_mm256_srli_epi16(_mm256_packs_epi32(t[0], t[1]), 4), bias);
  const __m256i w1 = _mm256_sub_epi16(_mm256_srli_epi16(_mm256_packs_epi32(t[2], t[3]), 4), bias);
  // Signed saturation keeps each float's sign bit in the top bit of its byte.
  const __m256i sign = _mm256_packs_epi16(_mm256_packs_epi32(y[0], y[1]), _mm256_packs_epi32(y[2], y[3]));
  const __m256i b = _mm256_or_si256(_mm256_packus_epi16(w0, w1),
                                    _mm256_and_si256(sign, _mm256_set1_epi8(static_cast<char>(0x80))));
  if constexpr (T == DType::kBF16) {
    return _mm256_permute4x64_epi64(b, 0xd8);
  } else {
    return _mm256_permutevar8x32_epi32(b, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
  }
}

// int8 codes of 32 finite values: nearbyint(v · inv) (cvtps rounds to nearest even, as
// nearbyint does in the default environment).
template <DType T>
SLIMKV_AVX2_INLINE __m256i Int8Codes32(const __m256 v[4], __m256 inv) {
  __m256i c[4];
  #pragma GCC unroll 8
  for (int j = 0; j < 4; ++j) c[j] = _mm256_cvtps_epi32(_mm256_mul_ps(v[j], inv));
  return Bytes32<T, true>(_mm256_packs_epi32(c[0], c[1]), _mm256_packs_epi32(c[2], c[3]));
}

// int4 codes of 32 values, zero and inv per lane (Load32<T>'s order). y = (v - zero) · inv is
// >= 0 for finite values of the group; clamping after rounding is the same as before for the
// integer bound 15. A non-finite value makes y NaN or infinite, which cvtps turns into INT_MIN:
// its 16-bit pack 0x8000 is or-ed into *flags so the caller can hand the row to the reference.
template <DType T>
SLIMKV_AVX2_INLINE __m128i Int4Codes32(const __m256 v[4], const __m256 zero[4],
                                       const __m256 inv[4], __m256i* flags) {
  __m256i c[4];
  #pragma GCC unroll 8
  for (int j = 0; j < 4; ++j) {
    c[j] = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_sub_ps(v[j], zero[j]), inv[j]));
  }
  __m256i w0 = _mm256_packs_epi32(c[0], c[1]), w1 = _mm256_packs_epi32(c[2], c[3]);
  *flags = _mm256_or_si256(*flags, _mm256_or_si256(w0, w1));
  const __m256i fifteen = _mm256_set1_epi16(15);
  w0 = _mm256_min_epu16(w0, fifteen);
  w1 = _mm256_min_epu16(w1, fifteen);
  return Nibbles32<T>(w0, w1);
}

SLIMKV_AVX2_INLINE bool FlagsSayNonFinite(__m256i flags) {
  return (_mm256_movemask_epi8(flags) & 0xaaaaaaaa) != 0;
}

// ---- decode arithmetic: 32 values into four fp32 vectors, natural order ----

// e4m3 codes as fp16 bits: sign to bit 15, exponent and mantissa to bits 13..7. The fp16
// number is the e4m3 value times 2^-8 (e4m3's subnormals land on fp16's), exactly, so
// multiplying by scale · 2^8 gives value · scale rounded once. REQUIRES: no NaN code among the
// 32 and scale · 2^8 exact (finite scale below 2^119).
SLIMKV_AVX2_INLINE void Fp8Values32(const uint8_t* p, __m256 scale256, __m256 v[4]) {
  const __m256i b = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
  const __m256i zero = _mm256_setzero_si256(), keep = _mm256_set1_epi16(static_cast<short>(0xbfff));
  const __m256i lo = _mm256_and_si256(_mm256_srai_epi16(_mm256_unpacklo_epi8(zero, b), 1), keep);
  const __m256i hi = _mm256_and_si256(_mm256_srai_epi16(_mm256_unpackhi_epi8(zero, b), 1), keep);
  v[0] = _mm256_mul_ps(_mm256_cvtph_ps(_mm256_castsi256_si128(lo)), scale256);
  v[1] = _mm256_mul_ps(_mm256_cvtph_ps(_mm256_castsi256_si128(hi)), scale256);
  v[2] = _mm256_mul_ps(_mm256_cvtph_ps(_mm256_extracti128_si256(lo, 1)), scale256);
  v[3] = _mm256_mul_ps(_mm256_cvtph_ps(_mm256_extracti128_si256(hi, 1)), scale256);
}

SLIMKV_AVX2_INLINE bool HasFp8NaN(const uint8_t* p) {
  const __m256i b = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
  const __m256i m = _mm256_set1_epi8(0x7f);
  return _mm256_movemask_epi8(_mm256_cmpeq_epi8(_mm256_and_si256(b, m), m)) != 0;
}

SLIMKV_AVX2_INLINE void Int8Values32(const uint8_t* p, __m256 scale, __m256 v[4]) {
  #pragma GCC unroll 8
  for (int j = 0; j < 4; ++j) {
    const __m256i c =
        _mm256_cvtepi8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p + 8 * j)));
    v[j] = _mm256_mul_ps(_mm256_cvtepi32_ps(c), scale);
  }
}

// zero + code · scale (multiply, then add: the reference's two roundings), per lane.
SLIMKV_AVX2_INLINE void Int4Values32(const uint8_t* p, const __m256 scale[4],
                                     const __m256 zero[4], __m256 v[4]) {
  const __m128i q = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
  const __m128i mask = _mm_set1_epi8(0x0f);
  const __m128i lo = _mm_and_si128(q, mask), hi = _mm_and_si128(_mm_srli_epi16(q, 4), mask);
  const __m128i a = _mm_unpacklo_epi8(lo, hi), b = _mm_unpackhi_epi8(lo, hi);
  const __m128i parts[4] = {a, _mm_unpackhi_epi64(a, a), b, _mm_unpackhi_epi64(b, b)};
  #pragma GCC unroll 8
  for (int j = 0; j < 4; ++j) {
    const __m256 c = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(parts[j]));
    v[j] = _mm256_add_ps(zero[j], _mm256_mul_ps(c, scale[j]));
  }
}

// Rounds like FloatToBF16 for values that are not NaN.
SLIMKV_AVX2_INLINE __m256i BF16Bits(__m256 v) {
  const __m256i u = _mm256_castps_si256(v);
  const __m256i bias = _mm256_add_epi32(_mm256_set1_epi32(0x7fff),
                                        _mm256_and_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(1)));
  return _mm256_srli_epi32(_mm256_add_epi32(u, bias), 16);
}

// Stores 32 values (natural order) from dst[i]. may_be_nan: some lane may be NaN (then the
// scalar conversions, whose NaN encodings the vector forms do not reproduce, handle the chunk).
template <DType T>
SLIMKV_AVX2_INLINE void Store32(void* dst, uint64_t i, const __m256 v[4], bool may_be_nan) {
  if constexpr (T == DType::kBF16) {
    if (!may_be_nan) {
      uint8_t* b = static_cast<uint8_t*>(dst) + 2 * i;
      #pragma GCC unroll 8
      for (int j = 0; j < 4; j += 2) {
        const __m256i h = _mm256_packus_epi32(BF16Bits(v[j]), BF16Bits(v[j + 1]));
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(b + 16 * j), _mm256_permute4x64_epi64(h, 0xd8));
      }
      return;
    }
  }
  #pragma GCC unroll 8
  for (int j = 0; j < 4; ++j) Store8<T>(dst, i + 8 * j, v[j]);
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

// ---- group statistics ----

// Eight vectors to one: lane g = op over the lanes of v[g]. Three transposing steps.
template <class Op>
SLIMKV_AVX2_INLINE __m256 Reduce8(const __m256* v, Op op) {
  __m256 a[4];
  #pragma GCC unroll 8
  for (int i = 0; i < 4; ++i) {
    a[i] = op(_mm256_unpacklo_ps(v[2 * i], v[2 * i + 1]), _mm256_unpackhi_ps(v[2 * i], v[2 * i + 1]));
  }
  __m256 b[2];
  #pragma GCC unroll 8
  for (int i = 0; i < 2; ++i) {
    b[i] = op(_mm256_shuffle_ps(a[2 * i], a[2 * i + 1], 0x44), _mm256_shuffle_ps(a[2 * i], a[2 * i + 1], 0xee));
  }
  return op(_mm256_permute2f128_ps(b[0], b[1], 0x20), _mm256_permute2f128_ps(b[0], b[1], 0x31));
}

struct MaxBits {
  SLIMKV_AVX2_INLINE __m256 operator()(__m256 a, __m256 b) const {
    return _mm256_castsi256_ps(_mm256_max_epi32(_mm256_castps_si256(a), _mm256_castps_si256(b)));
  }
};
struct MinPs {
  SLIMKV_AVX2_INLINE __m256 operator()(__m256 a, __m256 b) const { return _mm256_min_ps(a, b); }
};
struct MaxPs {
  SLIMKV_AVX2_INLINE __m256 operator()(__m256 a, __m256 b) const { return _mm256_max_ps(a, b); }
};

// Reduces n per-group partial vectors (8 floats each, at partial[8k]) into out[0, n), padding
// with `neutral` to a multiple of 8 groups. (Plain floats: std::vector drops __m256's alignment.)
template <class Op>
SLIMKV_AVX2 void ReduceGroups(std::vector<float>& partial, uint64_t n, __m256 neutral, Op op,
                              float* out) {
  partial.resize((n + 7) / 8 * 64);
  for (uint64_t k = n; k < partial.size() / 8; ++k) _mm256_storeu_ps(&partial[8 * k], neutral);
  for (uint64_t k = 0; k < n; k += 8) {
    __m256 v[8];
    #pragma GCC unroll 8
    for (int j = 0; j < 8; ++j) v[j] = _mm256_loadu_ps(&partial[8 * (k + j)]);
    alignas(32) float r[8];
    _mm256_store_ps(r, Reduce8(v, op));
    std::memcpy(out + k, r, 4 * std::min<uint64_t>(8, n - k));
  }
}

// Group statistics of a row before any scale: fp8/int8 the largest magnitude of each group
// (into lo), int4 the smallest and largest value (lo, hi). Returns false when the row holds a
// NaN or an infinity that these statistics see (fp8/int8: all; int4: those outside whole
// 32-value chunks, the codes catching the rest).
template <DType T, QuantKind K>
SLIMKV_AVX2 bool RowRanges(const void* src, uint64_t base, uint64_t cq, std::vector<float>& p0,
                           std::vector<float>& p1, float* lo, float* hi) {
  constexpr uint64_t g = QuantGroupSize(K);
  const uint64_t groups = (cq + g - 1) / g;
  const __m256 inf = _mm256_set1_ps(std::numeric_limits<float>::infinity());
  p0.resize(8 * groups);
  if constexpr (K == QuantKind::kInt4) p1.resize(8 * groups);
  for (uint64_t k = 0; k < groups; ++k) {
    const uint64_t c0 = k * g, n = std::min(g, cq - c0);
    if constexpr (K != QuantKind::kInt4) {
      // On magnitudes, integer max is float max, and NaN / inf (bits >= 0x7f800000) stay
      // visible in the result.
      __m256i m0 = _mm256_setzero_si256(), m1 = _mm256_setzero_si256();
      uint64_t i = 0;
      if constexpr (T == DType::kBF16) {
        const __m256i abs16 = _mm256_set1_epi16(0x7fff);
        const uint16_t* h = reinterpret_cast<const uint16_t*>(src) + base + c0;
        for (; i + 32 <= n; i += 32) {
          m0 = _mm256_max_epi16(m0, _mm256_and_si256(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(h + i)), abs16));
          m1 = _mm256_max_epi16(m1, _mm256_and_si256(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(h + i + 16)), abs16));
        }
        m0 = _mm256_max_epi16(m0, m1);
        // 16-bit magnitudes to fp32 bits, pairwise max.
        m0 = _mm256_max_epi32(_mm256_slli_epi32(m0, 16),
                              _mm256_and_si256(m0, _mm256_set1_epi32(static_cast<int>(0xffff0000u))));
      } else {
        const __m256i abs = _mm256_set1_epi32(0x7fffffff);
        for (; i + 32 <= n; i += 32) {
          __m256 v[4];
          Load32<T>(src, base + c0 + i, v);
          m0 = _mm256_max_epi32(m0, _mm256_max_epi32(_mm256_and_si256(_mm256_castps_si256(v[0]), abs),
                                                     _mm256_and_si256(_mm256_castps_si256(v[1]), abs)));
          m1 = _mm256_max_epi32(m1, _mm256_max_epi32(_mm256_and_si256(_mm256_castps_si256(v[2]), abs),
                                                     _mm256_and_si256(_mm256_castps_si256(v[3]), abs)));
        }
        m0 = _mm256_max_epi32(m0, m1);
      }
      _mm256_storeu_ps(&p0[8 * k], _mm256_castsi256_ps(m0));
    } else {
      __m256 l = inf, h = _mm256_sub_ps(_mm256_setzero_ps(), inf);
      for (uint64_t i = 0; i + 32 <= n; i += 32) {
        __m256 v[4];
        Load32<T>(src, base + c0 + i, v);
        l = _mm256_min_ps(l, _mm256_min_ps(_mm256_min_ps(v[0], v[1]), _mm256_min_ps(v[2], v[3])));
        h = _mm256_max_ps(h, _mm256_max_ps(_mm256_max_ps(v[0], v[1]), _mm256_max_ps(v[2], v[3])));
      }
      _mm256_storeu_ps(&p0[8 * k], l);
      _mm256_storeu_ps(&p1[8 * k], h);
    }
  }
  if constexpr (K != QuantKind::kInt4) {
    ReduceGroups(p0, groups, _mm256_setzero_ps(), MaxBits{}, lo);
  } else {
    ReduceGroups(p0, groups, inf, MinPs{}, lo);
    ReduceGroups(p1, groups, _mm256_sub_ps(_mm256_setzero_ps(), inf), MaxPs{}, hi);
  }
  // Values after the last whole chunk of each group (only the row's last group can have them).
  for (uint64_t k = 0; k < groups; ++k) {
    const uint64_t c0 = k * g, n = std::min(g, cq - c0);
    for (uint64_t i = n / 32 * 32; i < n; ++i) {
      const float x = Load1<T>(src, base + c0 + i);
      if (!std::isfinite(x)) return false;
      if constexpr (K != QuantKind::kInt4) {
        lo[k] = std::max(lo[k], std::fabs(x));
      } else {
        lo[k] = std::min(lo[k], x);
        hi[k] = std::max(hi[k], x);
      }
    }
  }
  if constexpr (K != QuantKind::kInt4) {
    for (uint64_t k = 0; k < groups; ++k) {
      if (!std::isfinite(lo[k])) return false;
    }
  }
  return true;
}

// ScaleFor of n groups at once: the divisions dominate a group's fixed cost. Same IEEE
// operations as ScaleFor, lane for lane.
SLIMKV_AVX2_INLINE void ScaleVec(QuantKind kind, __m256 lo, __m256 hi, __m256* scale,
                                 __m256* zero, __m256* inv) {
  __m256 s;
  if (kind == QuantKind::kInt4) {
    const __m256 fifteen = _mm256_set1_ps(15.0f);
    s = _mm256_sub_ps(_mm256_div_ps(hi, fifteen), _mm256_div_ps(lo, fifteen));
    s = _mm256_add_ps(s, _mm256_setzero_ps());
    *zero = _mm256_add_ps(lo, _mm256_setzero_ps());
  } else {
    s = _mm256_div_ps(lo, _mm256_set1_ps(kind == QuantKind::kFp8E4M3 ? kFp8E4M3Max : 127.0f));
  }
  const __m256 usable = _mm256_cmp_ps(s, _mm256_set1_ps(FLT_MIN), _CMP_GE_OQ);
  *scale = s;
  *inv = _mm256_and_ps(_mm256_div_ps(_mm256_set1_ps(1.0f), s), usable);
}

SLIMKV_AVX2 void Scales(QuantKind kind, uint64_t n, const float* lo, const float* hi,
                        float* scale, float* zero, float* inv) {
  uint64_t k = 0;
  for (; k + 8 <= n; k += 8) {
    __m256 s, z, i;
    ScaleVec(kind, _mm256_loadu_ps(lo + k), _mm256_loadu_ps(hi + k), &s, &z, &i);
    _mm256_storeu_ps(scale + k, s);
    if (kind == QuantKind::kInt4) _mm256_storeu_ps(zero + k, z);
    _mm256_storeu_ps(inv + k, i);
  }
  for (; k < n; ++k) {
    const GroupScale s = ScaleFor(kind, Range{lo[k], lo[k], hi[k]});
    scale[k] = s.scale;
    zero[k] = s.zero;
    inv[k] = s.inv;
  }
}

// ---- one row at a time: fp8, int8, int4 per token ----

template <DType T, QuantKind K>
SLIMKV_AVX2 void EncodeRows(const QuantParams& p, const void* src, uint64_t rows, uint64_t cols,
                            uint8_t* dst) {
  const QuantBlockLayout l = QuantLayout(p, 1, cols);
  const uint64_t cq = cols - p.keep_cols;
  constexpr uint64_t g = QuantGroupSize(K);
  const uint64_t groups = l.num_groups;
  std::vector<float> lo(groups + 8), hi(groups + 8), scale(groups), zero(groups), inv(groups);
  std::vector<float> p0, p1;
  for (uint64_t r = 0; r < rows; ++r) {
    uint8_t* rec = dst + r * l.bytes;
    const uint64_t base = r * cols;
    if (!RowRanges<T, K>(src, base, cq, p0, p1, lo.data(), hi.data())) {
      QuantEncodeRef(p, static_cast<const uint8_t*>(src) + base * DTypeSize(T), T, 1, cols, rec);
      continue;
    }
    Scales(K, groups, lo.data(), hi.data(), scale.data(), zero.data(), inv.data());
    std::memcpy(rec + l.scales_offset, scale.data(), 4 * groups);
    if constexpr (K == QuantKind::kInt4) std::memcpy(rec + l.zeros_offset, zero.data(), 4 * groups);
    __m256i flags = _mm256_setzero_si256();
    for (uint64_t k = 0; k < groups; ++k) {
      const uint64_t c0 = k * g, n = std::min(g, cq - c0);
      uint8_t* codes = rec + QuantCodeBytesPerRow(K, c0);
      const __m256 vinv = _mm256_set1_ps(inv[k]);
      uint64_t i = 0;
      for (; i + 32 <= n; i += 32) {
        __m256 v[4];
        Load32<T>(src, base + c0 + i, v);
        if constexpr (K == QuantKind::kFp8E4M3) {
          _mm256_storeu_si256(reinterpret_cast<__m256i*>(codes + i), Fp8Codes32<T>(v, vinv));
        } else if constexpr (K == QuantKind::kInt8) {
          _mm256_storeu_si256(reinterpret_cast<__m256i*>(codes + i), Int8Codes32<T>(v, vinv));
        } else {
          const __m256 z[4] = {_mm256_set1_ps(zero[k]), _mm256_set1_ps(zero[k]),
                               _mm256_set1_ps(zero[k]), _mm256_set1_ps(zero[k])};
          const __m256 iv[4] = {vinv, vinv, vinv, vinv};
          _mm_storeu_si128(reinterpret_cast<__m128i*>(codes + i / 2), Int4Codes32<T>(v, z, iv, &flags));
        }
      }
      const GroupScale s{scale[k], zero[k], inv[k]};
      if constexpr (K == QuantKind::kInt4) {
        for (; i < n; i += 2) {
          const uint8_t odd = i + 1 < n ? EncodeElem(K, Load1<T>(src, base + c0 + i + 1), s) : 0;
          codes[i / 2] = static_cast<uint8_t>(EncodeElem(K, Load1<T>(src, base + c0 + i), s) | odd << 4);
        }
      } else {
        for (; i < n; ++i) codes[i] = EncodeElem(K, Load1<T>(src, base + c0 + i), s);
      }
    }
    if (K == QuantKind::kInt4 && FlagsSayNonFinite(flags)) {
      QuantEncodeRef(p, static_cast<const uint8_t*>(src) + base * DTypeSize(T), T, 1, cols, rec);
      continue;
    }
    EncodeTail<T>(src, base + cq, p.keep_cols, rec + l.tail_offset);
  }
}

// True when a group's decode cannot produce NaN from finite codes (finite scale and zero), and
// for fp8 scale · 2^8 is exact.
inline bool PlainParams(QuantKind kind, float scale, float zero) {
  if (kind == QuantKind::kFp8E4M3) return std::fabs(scale) < 0x1p119f;
  return std::isfinite(scale) && std::isfinite(zero);
}

template <DType T, QuantKind K>
SLIMKV_AVX2 void DecodeRows(const QuantParams& p, const uint8_t* src, uint64_t rows,
                            uint64_t cols, void* dst) {
  const QuantBlockLayout l = QuantLayout(p, 1, cols);
  const uint64_t cq = cols - p.keep_cols;
  constexpr uint64_t g = QuantGroupSize(K);
  for (uint64_t r = 0; r < rows; ++r) {
    const uint8_t* rec = src + r * l.bytes;
    const uint64_t base = r * cols;
    for (uint64_t k = 0; k < l.num_groups; ++k) {
      const uint64_t c0 = k * g, n = std::min(g, cq - c0);
      const float scale = GetF32(rec + l.scales_offset + 4 * k);
      const float zero = K == QuantKind::kInt4 ? GetF32(rec + l.zeros_offset + 4 * k) : 0;
      const uint8_t* codes = rec + QuantCodeBytesPerRow(K, c0);
      uint64_t i = 0;
      if (PlainParams(K, scale, zero)) {
        const __m256 vs = _mm256_set1_ps(scale), vz = _mm256_set1_ps(zero);
        for (; i + 32 <= n; i += 32) {
          __m256 v[4];
          if constexpr (K == QuantKind::kFp8E4M3) {
            if (HasFp8NaN(codes + i)) break;  // the rest of the group goes scalar
            Fp8Values32(codes + i, _mm256_mul_ps(vs, _mm256_set1_ps(256.0f)), v);
          } else if constexpr (K == QuantKind::kInt8) {
            Int8Values32(codes + i, vs, v);
          } else {
            const __m256 s4[4] = {vs, vs, vs, vs}, z4[4] = {vz, vz, vz, vz};
            Int4Values32(codes + i / 2, s4, z4, v);
          }
          Store32<T>(dst, base + c0 + i, v, /*may_be_nan=*/false);
        }
      }
      for (; i < n; ++i) {
        const uint8_t code = K == QuantKind::kInt4 ? (codes[i / 2] >> (4 * (i % 2))) & 0xf : codes[i];
        Store1<T>(dst, base + c0 + i, DecodeElem(K, code, scale, zero));
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
  const uint64_t c_vec = cq / 32 * 32;  // channels done 32 at a time; the rest scalar
  const __m256 inf = _mm256_set1_ps(std::numeric_limits<float>::infinity());
  for (uint64_t r0 = 0; r0 < rows; r0 += block_rows) {
    const uint64_t b = std::min(block_rows, rows - r0);
    const QuantBlockLayout l = QuantLayout(p, b, cols);
    uint8_t* block = dst + QuantBytes(p, r0, cols);
    float* scales = reinterpret_cast<float*>(block + l.scales_offset);  // written with storeu
    float* zeros = reinterpret_cast<float*>(block + l.zeros_offset);
    __m256i flags = _mm256_setzero_si256();
    bool finite = true;
    for (uint64_t c = 0; c < c_vec; c += 32) {
      // The 32 channels' statistics over the block's rows, in registers, lane = channel.
      __m256 lo[4] = {inf, inf, inf, inf}, hi[4];
      for (__m256& h : hi) h = _mm256_sub_ps(_mm256_setzero_ps(), inf);
      for (uint64_t r = 0; r < b; ++r) {
        __m256 v[4];
        Load32<T>(src, (r0 + r) * cols + c, v);
        // 32 rows a power-of-two stride apart share their L1 sets and outnumber the hardware
        // prefetcher's streams: ask for this row's next tile now.
        const char* next = static_cast<const char*>(src) + ((r0 + r) * cols + c + 32) * DTypeSize(T);
        _mm_prefetch(next, _MM_HINT_T0);
        if constexpr (T == DType::kF32) _mm_prefetch(next + 64, _MM_HINT_T0);
        #pragma GCC unroll 8
        for (int j = 0; j < 4; ++j) {
          lo[j] = _mm256_min_ps(lo[j], v[j]);
          hi[j] = _mm256_max_ps(hi[j], v[j]);
        }
      }
      __m256 scale[4], zero[4], inv[4], out[4];
      #pragma GCC unroll 8
      for (int j = 0; j < 4; ++j) ScaleVec(QuantKind::kInt4, lo[j], hi[j], &scale[j], &zero[j], &inv[j]);
      Reorder32<T>(scale, out);
      #pragma GCC unroll 8
      for (int j = 0; j < 4; ++j) _mm256_storeu_ps(scales + c + 8 * j, out[j]);
      Reorder32<T>(zero, out);
      #pragma GCC unroll 8
      for (int j = 0; j < 4; ++j) _mm256_storeu_ps(zeros + c + 8 * j, out[j]);
      for (uint64_t r = 0; r < b; ++r) {
        __m256 v[4];
        Load32<T>(src, (r0 + r) * cols + c, v);
        _mm_storeu_si128(reinterpret_cast<__m128i*>(block + r * l.code_bytes_per_row + c / 2),
                         Int4Codes32<T>(v, zero, inv, &flags));
      }
    }
    for (uint64_t c = c_vec; c < cq && finite; ++c) {
      float lo = std::numeric_limits<float>::infinity(), hi = -lo;
      for (uint64_t r = 0; r < b; ++r) {
        const float x = Load1<T>(src, (r0 + r) * cols + c);
        finite = finite && std::isfinite(x);
        lo = std::min(lo, x);
        hi = std::max(hi, x);
      }
      const GroupScale s = ScaleFor(QuantKind::kInt4, Range{0, lo, hi});
      PutF32(block + l.scales_offset + 4 * c, s.scale);
      PutF32(block + l.zeros_offset + 4 * c, s.zero);
      for (uint64_t r = 0; r < b; ++r) {
        uint8_t* byte = block + r * l.code_bytes_per_row + c / 2;
        const uint8_t code = EncodeElem(QuantKind::kInt4, Load1<T>(src, (r0 + r) * cols + c), s);
        *byte = c % 2 ? static_cast<uint8_t>(*byte | code << 4) : code;
      }
    }
    if (!finite || FlagsSayNonFinite(flags)) {
      QuantEncodeRef(p, static_cast<const uint8_t*>(src) + r0 * cols * DTypeSize(T), T, b, cols,
                     block);
      continue;
    }
    for (uint64_t r = 0; r < b; ++r) {
      EncodeTail<T>(src, (r0 + r) * cols + cq, p.keep_cols, block + l.tail_offset + 2 * r * p.keep_cols);
    }
  }
}

// How many of the n fp32 values at p (unaligned) come before the first NaN or infinity.
SLIMKV_AVX2 uint64_t FiniteRun(const uint8_t* p, uint64_t n) {
  const __m256i exp = _mm256_set1_epi32(0x7f800000);
  uint64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + 4 * i));
    if (_mm256_movemask_epi8(_mm256_cmpeq_epi32(_mm256_and_si256(v, exp), exp)) != 0) break;
  }
  while (i < n && std::isfinite(GetF32(p + 4 * i))) ++i;
  return i;
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
    // Channels [0, c_vec) go 32 at a time: up to the first whose scale or zero is not finite.
    const uint64_t c_vec =
        std::min(FiniteRun(scales, cq), FiniteRun(zeros, cq)) / 32 * 32;
    for (uint64_t r = 0; r < b; ++r) {
      const uint64_t base = (r0 + r) * cols;
      const uint8_t* codes = block + r * l.code_bytes_per_row;
      for (uint64_t c = 0; c < c_vec; c += 32) {
        __m256 s[4], z[4], v[4];
        #pragma GCC unroll 8
        for (int j = 0; j < 4; ++j) {
          s[j] = _mm256_loadu_ps(reinterpret_cast<const float*>(scales + 4 * (c + 8 * j)));
          z[j] = _mm256_loadu_ps(reinterpret_cast<const float*>(zeros + 4 * (c + 8 * j)));
        }
        Int4Values32(codes + c / 2, s, z, v);
        Store32<T>(dst, base + c, v, /*may_be_nan=*/false);
      }
      for (uint64_t c = c_vec; c < cq; ++c) {
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
  if (QuantBlockRows(p) > 1) return EncodeInt4PerChannel<T>(p, src, rows, cols, dst);
  switch (p.kind) {
    case QuantKind::kFp8E4M3: return EncodeRows<T, QuantKind::kFp8E4M3>(p, src, rows, cols, dst);
    case QuantKind::kInt8: return EncodeRows<T, QuantKind::kInt8>(p, src, rows, cols, dst);
    case QuantKind::kInt4: return EncodeRows<T, QuantKind::kInt4>(p, src, rows, cols, dst);
  }
}

template <DType T>
void Decode(const QuantParams& p, const uint8_t* src, uint64_t rows, uint64_t cols, void* dst) {
  if (QuantBlockRows(p) > 1) return DecodeInt4PerChannel<T>(p, src, rows, cols, dst);
  switch (p.kind) {
    case QuantKind::kFp8E4M3: return DecodeRows<T, QuantKind::kFp8E4M3>(p, src, rows, cols, dst);
    case QuantKind::kInt8: return DecodeRows<T, QuantKind::kInt8>(p, src, rows, cols, dst);
    case QuantKind::kInt4: return DecodeRows<T, QuantKind::kInt4>(p, src, rows, cols, dst);
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
