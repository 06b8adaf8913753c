// Reconstruction kernels (contract in reconstruct.cuh).
//
// ProjectRows is the plain tiled GEMM: a block of 256 threads computes a 64 × 64 output tile,
// each thread a 4 × 4 patch, over k in slices of 16 staged in shared memory (A transposed, so a
// thread's four rows are one broadcast read). The stored rows are converted to float while they
// are staged, and the bias, the output dtype and the column scatter are applied as the tile is
// written, so nothing intermediate touches device memory. Float32 arithmetic on the CUDA cores:
// the CPU codecs' precision (docs/codecs.md), not the tensor cores' — the benchmark puts it next
// to cuBLAS in float32 and in bf16 (docs/benchmarks.md).
#include "kernels/cuda/reconstruct.cuh"

#include "kernels/cuda/internal/rows.cuh"

namespace slimkv::kernels::gpu {
namespace {

using internal::Load;

constexpr int kBm = 64, kBn = 64, kBk = 16, kThreads = 256;

template <class T>
__global__ void __launch_bounds__(kThreads) ProjectRowsKernel(const ProjectRowsParams p) {
  __shared__ float a_tile[kBk][kBm + 4];  // [k][row]; padded against bank conflicts
  __shared__ float b_tile[kBk][kBn];
  const T* in = static_cast<const T*>(p.in);
  const int tid = threadIdx.x, tx = tid % 16, ty = tid / 16;
  const int64_t row0 = static_cast<int64_t>(blockIdx.y) * kBm;
  const int col0 = blockIdx.x * kBn;
  float acc[4][4] = {};
  for (int k0 = 0; k0 < p.k; k0 += kBk) {
    for (int e = tid; e < kBm * kBk; e += kThreads) {
      const int r = e / kBk, kk = e % kBk;  // consecutive threads: consecutive k of one row
      const int64_t row = row0 + r;
      a_tile[kk][r] = (row < p.rows && k0 + kk < p.k) ? Load(in + row * p.ld_in + k0 + kk) : 0.0f;
    }
    for (int e = tid; e < kBk * kBn; e += kThreads) {
      const int kk = e / kBn, c = e % kBn;
      b_tile[kk][c] = (k0 + kk < p.k && col0 + c < p.n)
                          ? p.w[static_cast<int64_t>(k0 + kk) * p.ldw + p.w_col0 + col0 + c]
                          : 0.0f;
    }
    __syncthreads();
#pragma unroll
    for (int kk = 0; kk < kBk; ++kk) {
      float a[4], b[4];
#pragma unroll
      for (int i = 0; i < 4; ++i) a[i] = a_tile[kk][ty * 4 + i];
#pragma unroll
      for (int j = 0; j < 4; ++j) b[j] = b_tile[kk][tx * 4 + j];
#pragma unroll
      for (int i = 0; i < 4; ++i) {
#pragma unroll
        for (int j = 0; j < 4; ++j) acc[i][j] += a[i] * b[j];
      }
    }
    __syncthreads();
  }
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const int64_t row = row0 + ty * 4 + i;
    if (row >= p.rows) continue;
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      const int c = col0 + tx * 4 + j;
      if (c >= p.n) continue;
      const float v = acc[i][j] + (p.bias != nullptr ? p.bias[p.w_col0 + c] : 0.0f);
      internal::Store(p.out_type, p.out, row * p.ld_out + (p.col_map != nullptr ? p.col_map[c] : c), v);
    }
  }
}

template <class T>
__global__ void RotateRowsKernel(const RotateRowsParams p) {
  const T* in = static_cast<const T*>(p.in);
  const int width = p.heads * p.head_dim, half = p.rotary_dim / 2;
  const int64_t n = p.rows * width;
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n;
       i += int64_t{gridDim.x} * blockDim.x) {
    const int64_t t = i / width;
    const int col = static_cast<int>(i % width), h = col / p.head_dim, j = col % p.head_dim;
    const T* head = in + t * width + int64_t{h} * p.head_dim;
    float v;
    if (p.cos == nullptr) {
      v = Load(head + j);
    } else {
      const int64_t pos = p.first_position + t;
      v = internal::RopeElem(head, j, p.cos + pos * half, p.sin + pos * half, p.rotary_dim,
                             p.half_split);
    }
    internal::Store(p.out_type, p.out, i, v);
  }
}

template <class T>
__global__ void GatherColumnsKernel(const GatherColumnsParams p) {
  const T* in = static_cast<const T*>(p.in);
  const int64_t n = p.rows * p.n;
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n;
       i += int64_t{gridDim.x} * blockDim.x) {
    const int64_t t = i / p.n;
    const int c = static_cast<int>(i % p.n);
    internal::Store(p.out_type, p.out, t * p.ld_out + p.dst[c], Load(in + t * p.ld_in + p.src[c]));
  }
}

// Grid for an element-wise kernel over n values: enough blocks to fill the device, capped.
unsigned ElementBlocks(int64_t n) {
  const int64_t blocks = (n + 255) / 256;
  return static_cast<unsigned>(blocks < 65536 ? blocks : 65536);
}

}  // namespace

cudaError_t ProjectRows(const ProjectRowsParams& p, cudaStream_t stream) {
  if (p.rows == 0 || p.n == 0) return cudaSuccess;
  const dim3 grid((p.n + kBn - 1) / kBn, static_cast<unsigned>((p.rows + kBm - 1) / kBm));
  switch (p.in_type) {
    case RowType::kF32: ProjectRowsKernel<float><<<grid, kThreads, 0, stream>>>(p); break;
    case RowType::kF16: ProjectRowsKernel<__half><<<grid, kThreads, 0, stream>>>(p); break;
    case RowType::kBF16: ProjectRowsKernel<__nv_bfloat16><<<grid, kThreads, 0, stream>>>(p); break;
    default: return cudaErrorInvalidValue;
  }
  return cudaGetLastError();
}

cudaError_t RotateRows(const RotateRowsParams& p, cudaStream_t stream) {
  const int64_t n = p.rows * p.heads * p.head_dim;
  if (n == 0) return cudaSuccess;
  switch (p.in_type) {
    case RowType::kF32: RotateRowsKernel<float><<<ElementBlocks(n), 256, 0, stream>>>(p); break;
    case RowType::kF16: RotateRowsKernel<__half><<<ElementBlocks(n), 256, 0, stream>>>(p); break;
    case RowType::kBF16:
      RotateRowsKernel<__nv_bfloat16><<<ElementBlocks(n), 256, 0, stream>>>(p);
      break;
    default: return cudaErrorInvalidValue;
  }
  return cudaGetLastError();
}

cudaError_t GatherColumns(const GatherColumnsParams& p, cudaStream_t stream) {
  const int64_t n = p.rows * p.n;
  if (n == 0) return cudaSuccess;
  switch (p.in_type) {
    case RowType::kF32: GatherColumnsKernel<float><<<ElementBlocks(n), 256, 0, stream>>>(p); break;
    case RowType::kF16: GatherColumnsKernel<__half><<<ElementBlocks(n), 256, 0, stream>>>(p); break;
    case RowType::kBF16:
      GatherColumnsKernel<__nv_bfloat16><<<ElementBlocks(n), 256, 0, stream>>>(p);
      break;
    default: return cudaErrorInvalidValue;
  }
  return cudaGetLastError();
}

}  // namespace slimkv::kernels::gpu
