// Per-layer inputs of the KV codecs (full, slim, xcache, latent native, latent projected):
// typed tensor views, the layer's projection with its derived matrices, and the MLA layout.
// Stored layouts per token are described in docs/codecs.md.
//
// Thread-safety: immutable views; whatever they point to must outlive the call and must not
// change during it.
#pragma once

#include <cstdint>

#include "absl/status/status.h"
#include "kernels/dtype.h"
#include "kernels/kv_projection.h"
#include "kernels/rope.h"

namespace slimkv::kernels {

// A read-only tensor in one of the KV dtypes; its shape is given by the call it is passed to.
struct ConstTensor {
  const void* data = nullptr;
  DType dtype = DType::kF32;
};
struct MutableTensor {
  void* data = nullptr;
  DType dtype = DType::kF32;
};

// An MHA/GQA layer: K, V are [tokens, h_kv, d_h] in engine form (K rotated).
struct KvCodecLayer {
  // W_K, W_V are read by xcache (decode, and encode from x) only; other modes accept null.
  KvProjection proj;
  // RoPE of K; null for a layer without it (t5 cross-attention: K is stored unrotated).
  // REQUIRES: rope->params().head_dim == proj.d_h.
  const RopeTable* rope = nullptr;

  // slim: W_KV [e, e] from ComputeSlimMatrix.
  const float* w_kv = nullptr;
  // xcache from K,V: pinv([W_K W_V]) [2e, d] from JointPinv.
  const float* pinv = nullptr;

  // latent projected: basis [n_proj, rank] from JointBasis, n_proj = 2e − n_kept, over the
  // columns of [K_raw V] that are not kept: K columns not in kept_k_cols (ascending), then V.
  const float* basis = nullptr;
  int rank = 0;
  // K columns (index into the e of a token, h·d_h + i) stored exactly as K_raw; ascending.
  const int* kept_k_cols = nullptr;  // [n_kept]
  int n_kept = 0;

  int n_proj() const { return 2 * proj.e() - n_kept; }
};

// Native MLA: stored per token [c (d_c) | rope part], the rope part being one shared k_rope
// [rope_dim] (DeepSeek) or one per head [heads, rope_dim] (MHA2MLA), kept exactly as the
// engine caches it (already rotated). Engine form: K [tokens, heads, k_head_dim] with head h's
// rope dims at rope_cols, its other d_nope = k_head_dim − rope_dim dims (ascending) from
// c·W_UK,h; V [tokens, heads, v_head_dim] = c·W_UV,h.
struct LatentLayout {
  int heads = 0;
  int d_c = 0;
  int k_head_dim = 0;
  int v_head_dim = 0;
  int rope_dim = 0;
  bool shared_rope = true;
  // [heads, rope_dim] positions inside a K head, each row ascending; null: the last rope_dim
  // dims of every head (DeepSeek: K_h = [K_nope,h, k_rope]).
  const int* rope_cols = nullptr;
  const float* w_uk = nullptr;  // [d_c, heads·d_nope] row-major
  const float* w_uv = nullptr;  // [d_c, heads·v_head_dim] row-major

  int d_nope() const { return k_head_dim - rope_dim; }
  int rope_elems() const { return shared_rope ? rope_dim : heads * rope_dim; }
  int stored_elems() const { return d_c + rope_elems(); }
};

// Stored elements per token of each mode (before quantization).
inline int64_t FullStoredElems(const KvProjection& p) { return 2 * int64_t{p.e()}; }
inline int64_t SlimStoredElems(const KvProjection& p) { return p.e(); }
inline int64_t XcacheStoredElems(const KvProjection& p) { return p.d; }
inline int64_t ProjectedStoredElems(const KvCodecLayer& l) { return l.n_kept + l.rank; }

// Checks that what a mode needs is present and consistent: OK, INVALID_ARGUMENT for bad
// shapes or missing views, FAILED_PRECONDITION when the mode does not apply to the layer
// (slim with e < d, xcache recovery without pinv, projected without a basis).
enum class CodecMode { kFull, kSlim, kXcacheGivenX, kXcacheFromKv, kProjected };
[[nodiscard]] absl::Status ValidateCodecLayer(const KvCodecLayer& l, CodecMode m);
[[nodiscard]] absl::Status ValidateLatentLayout(const LatentLayout& l);

// Position in a K head of rope dim j of head h (resolves the null default).
inline int LatentRopeCol(const LatentLayout& l, int h, int j) {
  return l.rope_cols ? l.rope_cols[h * l.rope_dim + j] : l.d_nope() + j;
}

}  // namespace slimkv::kernels
