// Host-side pieces the CUDA ops share (kernels/cuda/*_ops.cc, device.cc): the calling thread's
// stream, the one cudaError_t → absl::Status conversion, the device checks, and what a
// DeviceLayer holds on the device. Internal to kernels/cuda/.
//
// Thread-safety: stateless functions; a DeviceLayer::Impl is immutable once built.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "kernels/gpu.h"

namespace slimkv::kernels::gpu {

struct DeviceLayer::Impl {
  DeviceBuffer w;         // slim W_KV [e, e]; latent W_UV [d_c, heads·d_v]
  DeviceBuffer bias;      // slim b_V − b_K·W_KV [e]; empty when the layer has no biases
  DeviceBuffer w_uk;      // latent [d_c, heads·d_nope]; empty when d_nope = 0
  DeviceBuffer cos, sin;  // slim RoPE [max_position, rotary_dim / 2]; empty without RoPE
  int32_t max_position = 0;
  // Latent reconstruction: where column n of c·W_UK ([heads·d_nope]) and rope element i
  // ([heads·rope_dim], read at rope_src of the stored row) go in a K row [heads·k_head_dim].
  DeviceBuffer nope_dst, rope_src, rope_dst;
};

inline const cudaStream_t kStream = cudaStreamPerThread;  // the calling thread's stream

// OK for cudaSuccess; RESOURCE_EXHAUSTED for an allocation failure; else UNAVAILABLE, naming
// `what` and the CUDA error.
absl::Status Cuda(cudaError_t e, absl::string_view what);
// OK when Device() is usable, else UNAVAILABLE saying why.
absl::Status Usable();
// Shared memory one block may opt in to (48 KiB if the device does not say).
size_t SharedMemoryLimit();

}  // namespace slimkv::kernels::gpu
