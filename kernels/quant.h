// Quantizers applied after a mode: fp8 (e4m3), int8 and int4 encode/decode of a float matrix
// (rows = tokens, cols = channels) into the layouts of kernels/quant_format.h.
//
// Every quantizer has a scalar reference (`*Ref`, the spec and the test oracle) and a fast path
// (AVX2 + F16C, chosen at run time) that is bit-identical to it. Rules, shared by both:
//   scale      fp8: amax / 448; int8: amax / 127; int4: max/15 - min/15, zero = min.
//              amax, min and max are taken over the finite values of the group only; a group
//              with no finite value has amax = min = max = 0.
//   inverse    inv = 1 / scale, or 0 when scale < FLT_MIN (so an all-zero group, or one whose
//              largest magnitude is below ~1e-36, encodes to zero codes: no division by zero).
//   encode     fp8:  e4m3(x * inv), round to nearest even, saturating at ±448;
//              int8: nearbyint(clamp(x * inv, -127, 127)), ties to even;
//              int4: nearbyint(clamp((x - zero) * inv, 0, 15)), ties to even.
//   decode     fp8: e4m3 value * scale; int8: code * scale; int4: zero + code * scale.
//   NaN        fp8 encodes NaN as NaN (S.1111.111); int8 and int4 encode it as 0.0 would be.
//   ±inf       saturates to the largest code of its sign (fp8 ±448, int8 ±127, int4 15 / 0).
//   tail       keep_cols trailing channels are rounded to bf16 (nearest even; exact for bf16).
// Bounds (decoded minus input, finite inputs): fp8 |err| <= 2^-4 |x| where |x| >= 2^-6 scale,
// else <= 2^-10 scale; int8 and int4 |err| <= scale/2 (each up to float rounding of inv).
// Rounding follows the default floating-point environment (round to nearest even).
//
// Kernels take dense row-major matrices and report nothing: validate untrusted shapes with
// QuantParamsError first (the cache turns its message into INVALID_ARGUMENT).
//
// Thread-safety: stateless; safe to call concurrently on disjoint outputs.
#pragma once

#include <cstddef>
#include <cstdint>

#include "kernels/dtype.h"
#include "kernels/quant_format.h"

namespace slimkv::kernels {

// Returns nullptr when `p` can encode a rows × cols matrix, else a message naming the bad field.
const char* QuantParamsError(const QuantParams& p, uint64_t rows, uint64_t cols);

// Encodes src [rows, cols] (row-major, element type src_type) into dst.
// REQUIRES: QuantParamsError(p, rows, cols) == nullptr; dst holds QuantBytes(p, rows, cols)
// bytes; src and dst do not overlap.
void QuantEncode(const QuantParams& p, const void* src, DType src_type, uint64_t rows,
                 uint64_t cols, uint8_t* dst);
void QuantEncodeRef(const QuantParams& p, const void* src, DType src_type, uint64_t rows,
                    uint64_t cols, uint8_t* dst);

// Decodes src (QuantBytes(p, rows, cols) bytes) into dst [rows, cols] of dst_type.
// REQUIRES: as for QuantEncode, with the roles of src and dst swapped.
void QuantDecode(const QuantParams& p, const uint8_t* src, uint64_t rows, uint64_t cols,
                 void* dst, DType dst_type);
void QuantDecodeRef(const QuantParams& p, const uint8_t* src, uint64_t rows, uint64_t cols,
                    void* dst, DType dst_type);

// Which implementation QuantEncode/QuantDecode use on this CPU: "avx2" or "reference".
const char* QuantCpuPath();

// OCP E4M3FN scalar conversions. FloatToE4M3 rounds to nearest even, saturates finite and
// infinite values at ±448 and maps NaN to S.1111.111. E4M3ToFloat is exact; NaN codes give a
// quiet NaN with the code's sign.
uint8_t FloatToE4M3(float x);
float E4M3ToFloat(uint8_t code);

}  // namespace slimkv::kernels
