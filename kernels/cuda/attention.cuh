// Launchers of the decode-attention kernels over paged stored rows (kernels/gpu.h has the
// contract; attention_ops.cc the checks and the host side). One generic pass serves full, slim and
// native MLA latent: per q head i (KV head g = i / heads_per_kv) it forms
//   logit_t = softcap?(q_i · key_g(t))      key_g(t) = [row_t[a_off + g·a_stride ..+ a_len]
//                                                       (RoPE-rotated when cos/sin are given),
//                                                       row_t[b_off + g·b_stride ..+ b_len]]
//   acc_i   = Σ_t softmax(logit)_t · value_g(t),   value_g(t) = vrow_t[v_off + g·v_stride ..+ v_len]
// over tokens split across blocks (flash-decoding); CombineSplits merges the splits into acc and
// lse, and ProjectHeads applies slim's W_KV / MLA's W_UV per group when the mode needs it.
//
// C++17, no Abseil (STYLE.md). Every launcher runs on `stream` and returns the launch error.
#pragma once

#include <cstdint>

#include <cuda_runtime.h>

namespace slimkv::kernels::gpu {

enum class RowType : int { kF32 = 1, kF16 = 2, kBF16 = 3 };  // values of kernels::DType

// Tokens per online-softmax step of PartialAttention (one per lane of a warp); splits are
// rounded to multiples of it.
inline constexpr int kAttentionTile = 32;

// The pages of one call, on the device.
struct PagedRows {
  const void* const* data = nullptr;  // [n_pages] device pointers to each page's rows
  const int64_t* start = nullptr;     // [n_pages + 1] first token of each page in the call; last = total
  const int32_t* position = nullptr;  // [n_pages] position of each page's first token
  int n_pages = 0;
  int64_t total_tokens = 0;
  RowType type = RowType::kF32;
};

struct PartialAttentionParams {
  PagedRows pages;
  int64_t row_elems = 0;          // elements per key row
  // Value rows: the same rows (value_plane false) or a second plane after the page's key rows
  // (full: V [T, v_row_elems] at data + T·row_elems).
  bool value_plane = false;
  int64_t v_row_elems = 0;

  int h_q = 0;
  int heads_per_kv = 1;
  int a_off = 0, a_stride = 0, a_len = 0;  // key segment A (RoPE applies here)
  int b_off = 0, b_stride = 0, b_len = 0;  // key segment B (b_len 0: none)
  int v_off = 0, v_stride = 0, v_len = 0;

  // RoPE of segment A, or null: tables [max_position, rotary_dim / 2] of the scaled cos and sin
  // the CPU's RopeTable::Apply uses; half_split: HF rotate_half pairing, else interleaved.
  const float* cos = nullptr;
  const float* sin = nullptr;
  int rotary_dim = 0;
  bool half_split = true;

  const float* q = nullptr;  // [h_q, a_len + b_len], scale already applied
  float softcap = 0.0f;

  int64_t tokens_per_split = 0;
  int n_splits = 0;
  float* part_acc = nullptr;  // [n_splits, h_q, v_len] unnormalized
  float* part_max = nullptr;  // [n_splits, h_q] running maximum (−inf: no tokens)
  float* part_sum = nullptr;  // [n_splits, h_q] Σ exp(logit − max)
};

// Shared memory one block of PartialAttention needs; the caller checks it against the device.
size_t PartialAttentionSmemBytes(const PartialAttentionParams& p);
cudaError_t PartialAttention(const PartialAttentionParams& p, cudaStream_t stream);

struct CombineSplitsParams {
  int h_q = 0, v_len = 0, n_splits = 0;
  const float* part_acc = nullptr;  // as PartialAttentionParams
  const float* part_max = nullptr;
  const float* part_sum = nullptr;
  float* acc = nullptr;  // [h_q, v_len] normalized (0 when no tokens)
  float* lse = nullptr;  // [h_q] natural log (−inf when no tokens)
};
cudaError_t CombineSplits(const CombineSplitsParams& p, cudaStream_t stream);

// out[i, c] = Σ_r in[i, r] · w[r, col0 + c] + bias[col0 + c], col0 = (i / heads_per_group)·d_out.
struct ProjectHeadsParams {
  int h_q = 0, heads_per_group = 1, in_len = 0, d_out = 0;
  const float* in = nullptr;    // [h_q, in_len]
  const float* w = nullptr;     // [in_len, ldw] row-major
  int64_t ldw = 0;
  const float* bias = nullptr;  // [ldw] or null
  float* out = nullptr;         // [h_q, d_out]
};
cudaError_t ProjectHeads(const ProjectHeadsParams& p, cudaStream_t stream);

// MLA query absorption: out[i, r] = scale · Σ_j w[r, col0 + j] · q_nope[i, j] for r < d_c,
// col0 = (i / heads_per_group)·d_nope; rows of out are `ld_out` apart.
struct AbsorbQueryParams {
  int h_q = 0, heads_per_group = 1, d_nope = 0, d_c = 0;
  const float* q_nope = nullptr;  // [h_q, d_nope]
  const float* w = nullptr;       // [d_c, ldw] row-major (W_UK)
  int64_t ldw = 0;
  float scale = 1.0f;
  float* out = nullptr;           // [h_q, ld_out], columns [0, d_c) written
  int64_t ld_out = 0;
};
cudaError_t AbsorbQuery(const AbsorbQueryParams& p, cudaStream_t stream);

}  // namespace slimkv::kernels::gpu
