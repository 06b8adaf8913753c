// Decode-attention kernels over paged stored rows (contract in attention.cuh).
//
// PartialAttention: one block per (token split, q head), 256 threads. Tokens go in tiles of 32:
// each warp forms the logits of its tokens (lanes across the key's columns, RoPE applied on the
// fly from the cos/sin table), warp 0 folds the tile into the running maximum and sum (online
// softmax), then every thread updates its columns of the value accumulator, which lives in
// shared memory (v_len floats: up to the whole K_raw row for slim). Float32 arithmetic
// throughout; stored rows are read in their own dtype.
//
// This is the plain, correct first version (METHOD.md): a block reads its head's key columns
// and, for slim and latent, the whole row per token, so rows shared by several heads are read
// once per head (from L2 when the heads' blocks run together). The tensor-core version that
// reads each row once for all heads is the next step, to be measured against this one.
#include "kernels/cuda/attention.cuh"

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cmath>

#include "kernels/cuda/internal/rows.cuh"

namespace slimkv::kernels::gpu {
namespace {

constexpr int kThreads = 256;
constexpr int kWarps = kThreads / 32;
constexpr int kTile = kAttentionTile;

using internal::Load;

__device__ __forceinline__ float WarpSum(float v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}
__device__ __forceinline__ float WarpMax(float v) {
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

// The page holding token t: the last page starting at or before it (empty pages skipped).
__device__ int FindPage(const PagedRows& r, int64_t t) {
  int lo = 0, hi = r.n_pages - 1;
  while (lo < hi) {
    const int mid = (lo + hi + 1) / 2;
    if (r.start[mid] <= t) {
      lo = mid;
    } else {
      hi = mid - 1;
    }
  }
  return lo;
}

// Column j of head g's key for a token at `pos` whose stored row is `row`.
template <class T>
__device__ __forceinline__ float KeyElem(const PartialAttentionParams& p, const T* row, int g,
                                         int j, int32_t pos) {
  if (j >= p.a_len) return Load(row + p.b_off + g * p.b_stride + (j - p.a_len));
  const T* a = row + p.a_off + g * p.a_stride;
  if (p.cos == nullptr) return Load(a + j);
  const int half = p.rotary_dim / 2;
  return internal::RopeElem(a, j, p.cos + static_cast<int64_t>(pos) * half,
                            p.sin + static_cast<int64_t>(pos) * half, p.rotary_dim, p.half_split);
}

template <class T>
__global__ void __launch_bounds__(kThreads) PartialAttentionKernel(const PartialAttentionParams p) {
  extern __shared__ float smem[];
  const int key_len = p.a_len + p.b_len;
  float* acc = smem;             // [v_len]
  float* q = acc + p.v_len;      // [key_len]
  float* weight = q + key_len;   // [kTile]: logits, then exp(logit − max)
  __shared__ const T* vrow[kTile];
  __shared__ float run_max, run_sum, rescale;

  const int i = blockIdx.y, split = blockIdx.x, g = i / p.heads_per_kv;
  const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32;
  const int64_t t_begin = static_cast<int64_t>(split) * p.tokens_per_split;
  const int64_t t_end = min(p.pages.total_tokens, t_begin + p.tokens_per_split);
  for (int j = tid; j < key_len; j += kThreads) q[j] = p.q[static_cast<int64_t>(i) * key_len + j];
  for (int c = tid; c < p.v_len; c += kThreads) acc[c] = 0.0f;
  if (tid == 0) {
    run_max = -INFINITY;
    run_sum = 0.0f;
  }
  __syncthreads();

  const T* const* pages = reinterpret_cast<const T* const*>(p.pages.data);
  int page = t_begin < t_end ? FindPage(p.pages, t_begin) : 0;  // this warp's cursor
  for (int64_t tile = t_begin; tile < t_end; tile += kTile) {
    const int n = static_cast<int>(min(static_cast<int64_t>(kTile), t_end - tile));
    for (int k = warp; k < n; k += kWarps) {
      const int64_t t = tile + k;
      while (p.pages.start[page + 1] <= t) ++page;
      const int64_t in_page = t - p.pages.start[page];
      const T* row = pages[page] + in_page * p.row_elems;
      const int32_t pos = p.pages.position[page] + static_cast<int32_t>(in_page);
      float dot = 0.0f;
      for (int j = lane; j < key_len; j += 32) dot += q[j] * KeyElem(p, row, g, j, pos);
      dot = WarpSum(dot);
      if (lane == 0) {
        weight[k] = p.softcap > 0.0f ? p.softcap * tanhf(dot / p.softcap) : dot;
        const int64_t page_tokens = p.pages.start[page + 1] - p.pages.start[page];
        const T* v = p.value_plane
                         ? pages[page] + page_tokens * p.row_elems + in_page * p.v_row_elems
                         : row;
        vrow[k] = v + p.v_off + g * p.v_stride;
      }
    }
    __syncthreads();
    if (warp == 0) {
      const float x = lane < n ? weight[lane] : -INFINITY;
      const float m_old = run_max;
      const float m_new = fmaxf(m_old, WarpMax(x));
      const float e = (lane < n && m_new != -INFINITY) ? expf(x - m_new) : 0.0f;
      const float sum = WarpSum(e);
      weight[lane] = e;
      if (lane == 0) {
        const float alpha = m_old == -INFINITY ? 0.0f : expf(m_old - m_new);
        rescale = alpha;
        run_sum = run_sum * alpha + sum;
        run_max = m_new;
      }
    }
    __syncthreads();
    const float alpha = rescale;
    for (int c = tid; c < p.v_len; c += kThreads) {
      float a = acc[c] * alpha;
      for (int k = 0; k < n; ++k) a += weight[k] * Load(vrow[k] + c);
      acc[c] = a;
    }
    __syncthreads();
  }

  const int64_t out = static_cast<int64_t>(split) * p.h_q + i;
  for (int c = tid; c < p.v_len; c += kThreads) p.part_acc[out * p.v_len + c] = acc[c];
  if (tid == 0) {
    p.part_max[out] = run_max;
    p.part_sum[out] = run_sum;
  }
}

// One block per q head: weights of the splits in shared memory, then the columns.
__global__ void __launch_bounds__(kThreads) CombineSplitsKernel(const CombineSplitsParams p) {
  extern __shared__ float split_weight[];  // [n_splits]
  __shared__ float total;
  const int i = blockIdx.x, tid = threadIdx.x;
  float m = -INFINITY;
  for (int s = 0; s < p.n_splits; ++s) m = fmaxf(m, p.part_max[static_cast<int64_t>(s) * p.h_q + i]);
  for (int s = tid; s < p.n_splits; s += kThreads) {
    const float ms = p.part_max[static_cast<int64_t>(s) * p.h_q + i];
    split_weight[s] = ms == -INFINITY ? 0.0f : expf(ms - m);
  }
  __syncthreads();
  if (tid == 0) {
    float l = 0.0f;
    for (int s = 0; s < p.n_splits; ++s) {
      l += split_weight[s] * p.part_sum[static_cast<int64_t>(s) * p.h_q + i];
    }
    total = l;
    p.lse[i] = (m == -INFINITY || l == 0.0f) ? -INFINITY : m + logf(l);
  }
  __syncthreads();
  const float l = total;
  for (int c = tid; c < p.v_len; c += kThreads) {
    float a = 0.0f;
    for (int s = 0; s < p.n_splits; ++s) {
      a += split_weight[s] * p.part_acc[(static_cast<int64_t>(s) * p.h_q + i) * p.v_len + c];
    }
    p.acc[static_cast<int64_t>(i) * p.v_len + c] = l > 0.0f ? a / l : 0.0f;
  }
}

// One block per q head; warp w sums rows r ≡ w (mod 8), lanes across the output columns; the
// eight partial sums are added in a fixed order (deterministic).
__global__ void __launch_bounds__(kThreads) ProjectHeadsKernel(const ProjectHeadsParams p) {
  extern __shared__ float smem[];
  float* in = smem;                // [in_len]
  float* part = in + p.in_len;     // [kWarps, d_out]
  const int i = blockIdx.x, tid = threadIdx.x, warp = tid / 32, lane = tid % 32;
  const int64_t col0 = static_cast<int64_t>(i / p.heads_per_group) * p.d_out;
  for (int r = tid; r < p.in_len; r += kThreads) in[r] = p.in[static_cast<int64_t>(i) * p.in_len + r];
  __syncthreads();
  for (int c = lane; c < p.d_out; c += 32) {
    float a = 0.0f;
    for (int r = warp; r < p.in_len; r += kWarps) a += in[r] * p.w[r * p.ldw + col0 + c];
    part[warp * p.d_out + c] = a;
  }
  __syncthreads();
  for (int c = tid; c < p.d_out; c += kThreads) {
    float a = p.bias != nullptr ? p.bias[col0 + c] : 0.0f;
    for (int w = 0; w < kWarps; ++w) a += part[w * p.d_out + c];
    p.out[static_cast<int64_t>(i) * p.d_out + c] = a;
  }
}

// Block (q head, 8 latent rows): warp per row r, lanes across d_nope.
__global__ void __launch_bounds__(kThreads) AbsorbQueryKernel(const AbsorbQueryParams p) {
  const int i = blockIdx.x, warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int r = blockIdx.y * kWarps + warp;
  if (r >= p.d_c) return;
  const int64_t col0 = static_cast<int64_t>(i / p.heads_per_group) * p.d_nope;
  const float* w = p.w + r * p.ldw + col0;
  const float* qn = p.q_nope + static_cast<int64_t>(i) * p.d_nope;
  float a = 0.0f;
  for (int j = lane; j < p.d_nope; j += 32) a += w[j] * qn[j];
  a = WarpSum(a);
  if (lane == 0) p.out[i * p.ld_out + r] = p.scale * a;
}

template <class T>
cudaError_t LaunchPartial(const PartialAttentionParams& p, cudaStream_t stream) {
  const size_t smem = PartialAttentionSmemBytes(p);
  if (smem > 48 * 1024) {
    const cudaError_t e = cudaFuncSetAttribute(
        PartialAttentionKernel<T>, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(smem));
    if (e != cudaSuccess) return e;
  }
  PartialAttentionKernel<T><<<dim3(p.n_splits, p.h_q), kThreads, smem, stream>>>(p);
  return cudaGetLastError();
}

}  // namespace

size_t PartialAttentionSmemBytes(const PartialAttentionParams& p) {
  return sizeof(float) * (static_cast<size_t>(p.v_len) + p.a_len + p.b_len + kTile);
}

cudaError_t PartialAttention(const PartialAttentionParams& p, cudaStream_t stream) {
  switch (p.pages.type) {
    case RowType::kF32: return LaunchPartial<float>(p, stream);
    case RowType::kF16: return LaunchPartial<__half>(p, stream);
    case RowType::kBF16: return LaunchPartial<__nv_bfloat16>(p, stream);
  }
  return cudaErrorInvalidValue;
}

cudaError_t CombineSplits(const CombineSplitsParams& p, cudaStream_t stream) {
  const size_t smem = sizeof(float) * p.n_splits;
  if (smem > 48 * 1024) return cudaErrorInvalidValue;  // the host caps the splits far below
  CombineSplitsKernel<<<p.h_q, kThreads, smem, stream>>>(p);
  return cudaGetLastError();
}

cudaError_t ProjectHeads(const ProjectHeadsParams& p, cudaStream_t stream) {
  const size_t smem = sizeof(float) * (static_cast<size_t>(p.in_len) + kWarps * p.d_out);
  if (smem > 48 * 1024) {
    const cudaError_t e = cudaFuncSetAttribute(
        ProjectHeadsKernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(smem));
    if (e != cudaSuccess) return e;
  }
  ProjectHeadsKernel<<<p.h_q, kThreads, smem, stream>>>(p);
  return cudaGetLastError();
}

cudaError_t AbsorbQuery(const AbsorbQueryParams& p, cudaStream_t stream) {
  AbsorbQueryKernel<<<dim3(p.h_q, (p.d_c + kWarps - 1) / kWarps), kThreads, 0, stream>>>(p);
  return cudaGetLastError();
}

}  // namespace slimkv::kernels::gpu
