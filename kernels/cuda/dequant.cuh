// Launcher of the device dequantizer: a part stored in a quant_format.h layout back to float32,
// bit-identical to QuantDecode (same float operations, no contraction). Host checks live in
// dequant_ops.cc (kernels/gpu.h Dequantize).
//
// C++17, no Abseil (STYLE.md).
#pragma once

#include <cstdint>

#include <cuda_runtime.h>

#include "kernels/quant_format.h"

namespace slimkv::kernels::gpu {

struct DequantizeParams {
  QuantParams quant;
  const uint8_t* src = nullptr;  // QuantBytes(quant, rows, cols) bytes, the format's layout
  int64_t rows = 0;
  int64_t cols = 0;
  float* dst = nullptr;  // [rows, cols] row-major
};
cudaError_t Dequantize(const DequantizeParams& p, cudaStream_t stream);

}  // namespace slimkv::kernels::gpu
