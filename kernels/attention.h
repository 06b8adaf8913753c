// Decode attention on the cache: one new token's queries against a sequence's cached pages,
// computed from each page's stored representation (SPEC §2 "attention on the cache"; algebra,
// tolerances and bytes read per token per mode in docs/attention.md). CPU fast path: float32
// arithmetic with OpenBLAS sgemm, one pass over the pages with a running maximum (online
// softmax), so any logit magnitude is safe. The scalar float64 oracle is attention_ref.h.
//
// Per q head i (h_q heads, KV head / latent head g = i / (h_q / h_kv)):
//   logit_t = scale·q_i·K_g,t (then softcap·tanh(logit/softcap) when softcap > 0)
//   o_i = Σ_t softmax(logit)_t·V_g,t            lse_i = log Σ_t exp(logit_t)  (natural log)
// computed without materializing what the mode does not store:
//   full       K, V as stored.
//   slim       K = R_p·K_raw re-rotated per page tile (scores need the engine's rotated K);
//              values from the same K_raw rows (Σ_t s_i,t = 1):
//              o_i = (s_i·K_raw)·W_KV[:, g] + b_V,g − b_K·W_KV[:, g].
//              W_KV mixes heads: s_i·K_raw is a whole e-row.
//   xcache     K = R_p·(x·W_K + b_K) per page tile (RoPE forbids absorbing W_K);
//              o_i = (s_i·X)·W_V[:, g] + b_V,g.
//   projected  K and V reconstructed per page tile (kernels/codecs.h), then as full.
//   latent     absorbed: q̃_i = q_nope,i·W_UK,gᵀ; logit = scale·(q̃_i·c_t + q_rope,i·k_rope_t);
//              o_i = (s_i·c)·W_UV,g.
// Pages are a list (paged input), each with its own token count and first position; none need
// be contiguous with another. A call with no tokens at all returns o = 0 and lse = −inf, the
// identity of MergeAttention.
//
// Errors (nothing is written unless OK): INVALID_ARGUMENT for bad shapes (h_q not a positive
// multiple of the KV heads, null q or outputs, a page with tokens < 0 or without data);
// INVALID_ARGUMENT / FAILED_PRECONDITION from ValidateCodecLayer / ValidateLatentLayout when
// the layer lacks what the mode needs (slim without W_KV, ...).
// REQUIRES: q and outputs hold their shapes; every page holds tokens × stored columns of its
// dtype (FullStoredElems, SlimStoredElems, ... of codec_layer.h); outputs do not overlap inputs.
//
// Thread-safety: stateless; concurrent calls on disjoint outputs are safe (OpenBLAS may run its
// own threads inside one call).
#pragma once

#include <cstdint>
#include <span>

#include "absl/status/status.h"
#include "kernels/codec_layer.h"

namespace slimkv::kernels {

// How a logit is formed from q·k, and how many query heads there are.
struct AttentionParams {
  int h_q = 0;
  double scale = 0;    // usually 1/√d_k; the model config's softmax_scale
  double softcap = 0;  // > 0: softcap·tanh(logit/softcap) (gemma2); 0: none
};

// OK when p.h_q is a positive multiple of `kv_heads` (> 0), scale is finite and softcap is
// finite and ≥ 0; else INVALID_ARGUMENT naming the field. Every attention entry point checks it.
[[nodiscard]] absl::Status ValidateAttentionParams(const AttentionParams& p, int kv_heads);

// Heads of a layer in engine form: K [tokens, h_kv, d_k], V [tokens, h_kv, d_v].
struct KvHeads {
  int h_kv = 0;
  int d_k = 0;
  int d_v = 0;
};

// One page of one layer as stored, unquantized: [tokens, stored columns] row-major in the
// mode's layout (codecs.h), tokens at positions first_position, first_position + 1, ...
struct StoredPage {
  ConstTensor data;
  int64_t tokens = 0;
  int32_t first_position = 0;
};

// Outputs: o [h_q, d_v] and lse [h_q], float32.
struct AttentionOut {
  float* o = nullptr;
  float* lse = nullptr;
};

// Full: pages hold [2, tokens, h_kv·d] (K rows then V rows, FullStoredElems).
[[nodiscard]] absl::Status AttendFull(const KvHeads& heads, std::span<const StoredPage> pages,
                                      const float* q, const AttentionParams& p, AttentionOut out);
// Slim: pages hold K_raw [tokens, e]; needs l.w_kv. q [h_q, d_h].
[[nodiscard]] absl::Status AttendSlim(const KvCodecLayer& l, std::span<const StoredPage> pages,
                                      const float* q, const AttentionParams& p, AttentionOut out);
// Xcache: pages hold x [tokens, d]. q [h_q, d_h].
[[nodiscard]] absl::Status AttendXcache(const KvCodecLayer& l, std::span<const StoredPage> pages,
                                        const float* q, const AttentionParams& p,
                                        AttentionOut out);
// Projected latent: pages hold [tokens, n_kept + rank]; needs l.basis. q [h_q, d_h].
[[nodiscard]] absl::Status AttendProjected(const KvCodecLayer& l,
                                           std::span<const StoredPage> pages, const float* q,
                                           const AttentionParams& p, AttentionOut out);
// Native MLA latent: pages hold [tokens, d_c + rope_elems]; q [h_q, k_head_dim] in the engine's
// K-head layout (rope dims at their LatentRopeCol places); o [h_q, v_head_dim].
[[nodiscard]] absl::Status AttendLatent(const LatentLayout& l, std::span<const StoredPage> pages,
                                        const float* q, const AttentionParams& p,
                                        AttentionOut out);

// Exact merge of two attentions of the same queries over disjoint token sets:
//   lse = log(e^lse1 + e^lse2), o = (e^lse1·o1 + e^lse2·o2) / e^lse, computed from
// max(lse1, lse2) so nothing overflows. A side with lse = −inf (no tokens) contributes nothing;
// both −inf gives o = 0, lse = −inf. o may alias o1 or o2, and lse lse1 or lse2.
// Shapes: o* [h_q, d_v], lse* [h_q].
void MergeAttention(int h_q, int d_v, const float* o1, const float* lse1, const float* o2,
                    const float* lse2, float* o, float* lse);

}  // namespace slimkv::kernels
