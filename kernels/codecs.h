// The KV codecs on the CPU, fast path (OpenBLAS sgemm, float32 arithmetic): encode turns one
// layer's engine form into the stored representation of a mode, decode turns it back. The
// scalar oracle with the same contracts is codecs_ref.h. Math and stored layouts:
// docs/codecs.md.
//
// Every call converts inputs of any KV dtype to float32, computes, and rounds outputs once to
// their tensor's dtype. Shapes (row-major, `tokens` = T):
//   K, V (MHA/GQA)  [T, h_kv, d_h]      x  [T, d]      positions [T] (int32)
//   full stored     [2, T, e]  (all K rows, then all V rows; K as sent, rotated)
//   slim stored     [T, e]     K_raw
//   xcache stored   [T, d]     x
//   projected       [T, n_kept + rank]  kept K_raw columns, then c
//   latent stored   [T, d_c + rope_elems]; MLA K [T, heads, k_head_dim], V [T, heads, v_head_dim]
// Returns OK; INVALID_ARGUMENT / FAILED_PRECONDITION from ValidateCodecLayer or
// ValidateLatentLayout, before anything is written.
// REQUIRES: every buffer holds its shape; outputs do not overlap inputs.
//
// Thread-safety: stateless; concurrent calls on disjoint outputs are safe (OpenBLAS may run
// its own threads inside one call).
#pragma once

#include <cstdint>

#include "absl/status/status.h"
#include "kernels/codec_layer.h"

namespace slimkv::kernels {

[[nodiscard]] absl::Status EncodeFull(const KvProjection& p, int64_t tokens, ConstTensor k,
                                      ConstTensor v, MutableTensor stored);
[[nodiscard]] absl::Status DecodeFull(const KvProjection& p, int64_t tokens, ConstTensor stored,
                                      MutableTensor k, MutableTensor v);

// slim: stores K_raw = R_p^T·K; V = (K_raw − b_K)·W_KV + b_V. V is not read by encode.
[[nodiscard]] absl::Status EncodeSlim(const KvCodecLayer& l, int64_t tokens,
                                      const int32_t* positions, ConstTensor k,
                                      MutableTensor stored);
[[nodiscard]] absl::Status DecodeSlim(const KvCodecLayer& l, int64_t tokens,
                                      const int32_t* positions, ConstTensor stored,
                                      MutableTensor k, MutableTensor v);

// xcache: stores x, given by the engine or recovered as [K_raw − b_K, V − b_V]·pinv.
[[nodiscard]] absl::Status EncodeXcacheFromX(const KvCodecLayer& l, int64_t tokens,
                                             ConstTensor x, MutableTensor stored);
[[nodiscard]] absl::Status EncodeXcacheFromKv(const KvCodecLayer& l, int64_t tokens,
                                              const int32_t* positions, ConstTensor k,
                                              ConstTensor v, MutableTensor stored);
// K = R_p·(x·W_K + b_K), V = x·W_V + b_V.
[[nodiscard]] absl::Status DecodeXcache(const KvCodecLayer& l, int64_t tokens,
                                        const int32_t* positions, ConstTensor stored,
                                        MutableTensor k, MutableTensor v);

// latent projected: kept K_raw columns verbatim, c = [K_raw,proj − b, V − b_V]·B_R;
// decode [K_raw, V] ≈ c·B_Rᵀ + biases (kept columns exact), then K = R_p·K_raw.
[[nodiscard]] absl::Status EncodeProjected(const KvCodecLayer& l, int64_t tokens,
                                           const int32_t* positions, ConstTensor k,
                                           ConstTensor v, MutableTensor stored);
[[nodiscard]] absl::Status DecodeProjected(const KvCodecLayer& l, int64_t tokens,
                                           const int32_t* positions, ConstTensor stored,
                                           MutableTensor k, MutableTensor v);

// latent native: the engine's latent cache row [c | k_rope] is stored as is.
[[nodiscard]] absl::Status EncodeLatentNative(const LatentLayout& l, int64_t tokens,
                                              ConstTensor latent, MutableTensor stored);
[[nodiscard]] absl::Status DecodeLatentNative(const LatentLayout& l, int64_t tokens,
                                              ConstTensor stored, MutableTensor k,
                                              MutableTensor v);

}  // namespace slimkv::kernels
