// Device helpers shared by the GPU kernels (attention.cu, reconstruct.cu): reading a
// stored value as float, writing one in a row dtype, and RoPE applied to one element exactly as
// RopeTable::Apply does it (the same float cos/sin, the same pairing). C++17, device code only.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>

#include "kernels/cuda/attention.cuh"

namespace slimkv::kernels::gpu::internal {

template <class T>
__device__ __forceinline__ float Load(const T* p);
template <>
__device__ __forceinline__ float Load<float>(const float* p) {
  return *p;
}
template <>
__device__ __forceinline__ float Load<__half>(const __half* p) {
  return __half2float(*p);
}
template <>
__device__ __forceinline__ float Load<__nv_bfloat16>(const __nv_bfloat16* p) {
  return __bfloat162float(*p);
}

// out[i] = v in `type`, rounded to nearest even.
__device__ __forceinline__ void Store(RowType type, void* out, int64_t i, float v) {
  switch (type) {
    case RowType::kF32: static_cast<float*>(out)[i] = v; break;
    case RowType::kF16: static_cast<__half*>(out)[i] = __float2half_rn(v); break;
    case RowType::kBF16: static_cast<__nv_bfloat16*>(out)[i] = __float2bfloat16_rn(v); break;
  }
}

// Element j of R_p·head (head_dim values at `head`), for the cos/sin rows of position p
// ([rotary_dim / 2] each, attention factor included); dims past rotary_dim pass through.
template <class T>
__device__ __forceinline__ float RopeElem(const T* head, int j, const float* c, const float* s,
                                          int rotary_dim, bool half_split) {
  const float x = Load(head + j);
  if (j >= rotary_dim) return x;
  if (half_split) {
    const int half = rotary_dim / 2;
    if (j < half) return x * c[j] - Load(head + j + half) * s[j];
    const int m = j - half;
    return x * c[m] + Load(head + m) * s[m];
  }
  const int m = j >> 1;
  return (j & 1) ? x * c[m] + Load(head + j - 1) * s[m] : x * c[m] - Load(head + j + 1) * s[m];
}

}  // namespace slimkv::kernels::gpu::internal
