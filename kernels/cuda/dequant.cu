// Device dequantizer (dequant.cuh): one thread per value, grid-stride. Each thread finds its
// value's block, code, group scale (and zero) or bf16 tail entry from the layout of
// quant_format.h, and decodes it with QuantDecode's operations: fp8 E4M3 exactly, then × scale;
// int8 code × scale; int4 zero + code × scale, rounded separately (__fmul_rn/__fadd_rn keep nvcc
// from fusing them, as -ffp-contract=off does for the CPU).
#include "kernels/cuda/dequant.cuh"

namespace slimkv::kernels::gpu {
namespace {

// Fields are little-endian and may be unaligned: assemble them from bytes.
__device__ __forceinline__ float LoadF32(const uint8_t* b) {
  return __uint_as_float(static_cast<uint32_t>(b[0]) | static_cast<uint32_t>(b[1]) << 8 |
                         static_cast<uint32_t>(b[2]) << 16 | static_cast<uint32_t>(b[3]) << 24);
}
__device__ __forceinline__ float LoadBF16(const uint8_t* b) {
  return __uint_as_float((static_cast<uint32_t>(b[0]) | static_cast<uint32_t>(b[1]) << 8) << 16);
}

__device__ __forceinline__ float E4M3ToFloat(uint8_t code) {
  const uint32_t sign = (code & 0x80u) << 24;
  if ((code & 0x7f) == kFp8E4M3NaN) return __uint_as_float(sign | 0x7fc00000u);
  const int exponent = (code >> 3) & 0xf, mantissa = code & 0x7;
  const float v = exponent == 0 ? static_cast<float>(mantissa) * 0x1p-9f
                                : ldexpf(1.0f + static_cast<float>(mantissa) / 8.0f, exponent - 7);
  return __uint_as_float(__float_as_uint(v) | sign);
}

__global__ void DequantizeKernel(const DequantizeParams p) {
  const uint64_t br = QuantBlockRows(p.quant);
  const uint64_t rows = p.rows, cols = p.cols, cq = cols - p.quant.keep_cols;
  const uint64_t full_rows = rows / br * br;
  const QuantBlockLayout full = QuantLayout(p.quant, br, cols);
  const uint64_t n = rows * cols;
  for (uint64_t idx = blockIdx.x * uint64_t{blockDim.x} + threadIdx.x; idx < n;
       idx += uint64_t{gridDim.x} * blockDim.x) {
    const uint64_t row = idx / cols, col = idx % cols;
    const uint64_t b = row / br, r = row % br;
    const QuantBlockLayout l = row < full_rows ? full : QuantLayout(p.quant, rows - full_rows, cols);
    const uint8_t* block = p.src + b * full.bytes;
    float v;
    if (col >= cq) {
      v = LoadBF16(block + l.tail_offset + 2 * (r * p.quant.keep_cols + (col - cq)));
    } else {
      const uint64_t group = br == 1 ? col / QuantGroupSize(p.quant.kind) : col;
      const float scale = LoadF32(block + l.scales_offset + 4 * group);
      const uint8_t* codes = block + r * l.code_bytes_per_row;
      switch (p.quant.kind) {
        case QuantKind::kFp8E4M3: v = __fmul_rn(E4M3ToFloat(codes[col]), scale); break;
        case QuantKind::kInt8:
          v = __fmul_rn(static_cast<float>(static_cast<int8_t>(codes[col])), scale);
          break;
        default: {  // int4
          const uint8_t byte = codes[col / 2];
          const uint8_t code = (col & 1) ? byte >> 4 : byte & 0xf;
          const float zero = LoadF32(block + l.zeros_offset + 4 * group);
          v = __fadd_rn(zero, __fmul_rn(static_cast<float>(code), scale));
        }
      }
    }
    p.dst[idx] = v;
  }
}

}  // namespace

cudaError_t Dequantize(const DequantizeParams& p, cudaStream_t stream) {
  const uint64_t n = static_cast<uint64_t>(p.rows) * p.cols;
  if (n == 0) return cudaSuccess;
  constexpr int kThreads = 256;
  const uint64_t blocks = (n + kThreads - 1) / kThreads;
  DequantizeKernel<<<static_cast<unsigned>(blocks < 65536 ? blocks : 65536), kThreads, 0, stream>>>(p);
  return cudaGetLastError();
}

}  // namespace slimkv::kernels::gpu
