// Scalar reference of decode attention (kernels/attention.h): the specification and the test
// oracle. It takes K and V in engine form — reconstructed from any stored mode by the codec
// references (codecs_ref.h) — and computes, in float64 with per-token loops and no BLAS,
//   logit_t = scale·q_i·K_g,t (softcap·tanh(logit/softcap) when softcap > 0),
//   lse_i = m + log Σ_t exp(logit_t − m) with m = max_t logit_t,
//   o_i = Σ_t exp(logit_t − lse_i)·V_g,t,        g = i / (h_q / h_kv).
// With no tokens: o = 0, lse = −inf.
//
// Thread-safety: stateless; concurrent calls on disjoint outputs are safe.
#pragma once

#include <cstdint>

#include "absl/status/status.h"
#include "kernels/attention.h"

namespace slimkv::kernels {

// k [tokens, h_kv, d_k], v [tokens, h_kv, d_v], q [h_q, d_k], o [h_q, d_v], lse [h_q].
// INVALID_ARGUMENT as the fast path for bad shapes; nothing is written then.
[[nodiscard]] absl::Status AttendRef(const KvHeads& heads, int64_t tokens, const double* k,
                                     const double* v, const double* q, const AttentionParams& p,
                                     double* o, double* lse);

}  // namespace slimkv::kernels
