// Launchers of the reconstruction kernels (Get's side of the GPU backend; contract in
// kernels/gpu.h DecodeSlim / DecodeLatent, host side in reconstruct_ops.cc). Rows are one page layer's
// stored values in their dtype; outputs are engine-form K and V in the requested dtype.
//
//   ProjectRows    out[t, map(c)] = Σ_r in[t, r]·w[r, w_col0 + c] + bias[w_col0 + c]
//                  (slim V = K_raw·W_KV + folded bias; MLA K_nope = c·W_UK, V = c·W_UV): a
//                  64×64-tile float32 GEMM with the dtype conversion on load and the bias, output
//                  conversion and column scatter fused in its epilogue.
//   RotateRows     out[t, j] = (a·R_p·in[t])_j per head (slim K from K_raw), converted.
//   GatherColumns  out[t, dst[i]] = in[t, src[i]] (MLA: k_rope into every head's rope places).
//
// C++17, no Abseil (STYLE.md). Every launcher runs on `stream` and returns the launch error.
#pragma once

#include <cstdint>

#include <cuda_runtime.h>

#include "kernels/cuda/attention.cuh"

namespace slimkv::kernels::gpu {

struct ProjectRowsParams {
  const void* in = nullptr;  // [rows, ld_in] in in_type; columns [0, k) are read
  RowType in_type = RowType::kF32;
  int64_t ld_in = 0;
  int64_t rows = 0;
  int k = 0;
  const float* w = nullptr;     // [k, ldw] row-major
  int64_t ldw = 0;
  int64_t w_col0 = 0;           // first column of w (and bias) used
  int n = 0;                    // output columns
  const float* bias = nullptr;  // [ldw] or null
  void* out = nullptr;          // [rows, ld_out] in out_type
  RowType out_type = RowType::kF32;
  int64_t ld_out = 0;
  const int* col_map = nullptr;  // [n] output column of c, or null (c itself)
};
cudaError_t ProjectRows(const ProjectRowsParams& p, cudaStream_t stream);

struct RotateRowsParams {
  const void* in = nullptr;  // [rows, heads·head_dim] in in_type
  RowType in_type = RowType::kF32;
  int64_t rows = 0;
  int heads = 0, head_dim = 0;
  const float* cos = nullptr;  // [max_position, rotary_dim / 2], as PartialAttentionParams
  const float* sin = nullptr;
  int rotary_dim = 0;
  bool half_split = true;
  int32_t first_position = 0;  // of row 0; row t is at first_position + t
  void* out = nullptr;         // [rows, heads·head_dim] in out_type
  RowType out_type = RowType::kF32;
};
cudaError_t RotateRows(const RotateRowsParams& p, cudaStream_t stream);

struct GatherColumnsParams {
  const void* in = nullptr;  // [rows, ld_in] in in_type
  RowType in_type = RowType::kF32;
  int64_t ld_in = 0;
  int64_t rows = 0;
  int n = 0;
  const int* src = nullptr;  // [n] columns of in
  const int* dst = nullptr;  // [n] columns of out
  void* out = nullptr;       // [rows, ld_out] in out_type
  RowType out_type = RowType::kF32;
  int64_t ld_out = 0;
};
cudaError_t GatherColumns(const GatherColumnsParams& p, cudaStream_t stream);

}  // namespace slimkv::kernels::gpu
