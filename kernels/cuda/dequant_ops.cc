// kernels/gpu.h Dequantize on CUDA, the host side of dequant.cuh.
#include <cuda_runtime.h>

#include "kernels/cuda/dequant.cuh"
#include "kernels/cuda/internal/host.h"
#include "kernels/gpu.h"

namespace slimkv::kernels::gpu {

absl::Status Dequantize(const QuantParams& p, const void* src, int64_t rows, int64_t cols,
                        float* dst) {
  if (absl::Status s = Usable(); !s.ok()) return s;
  if (rows < 0 || cols < 0 || p.keep_cols > static_cast<uint64_t>(cols) ||
      (rows * cols > 0 && (src == nullptr || dst == nullptr))) {
    return absl::InvalidArgumentError("dequantize: bad shape or null buffer");
  }
  DequantizeParams d{p, static_cast<const uint8_t*>(src), rows, cols, dst};
  if (absl::Status s = Cuda(gpu::Dequantize(d, kStream), "dequantize"); !s.ok()) return s;
  return Cuda(cudaStreamSynchronize(kStream), "dequantize");
}

}  // namespace slimkv::kernels::gpu
