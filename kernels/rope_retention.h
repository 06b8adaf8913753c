// Partial-RoPE retention for the projected latent mode (MHA2MLA's S_2-norm): per KV head,
// score each rotary pair by how much it contributes to q·k, and keep the best pairs' dims
// exactly while the rest is projected.
//
// Thread-safety: stateless functions.
#pragma once

#include <cstdint>
#include <vector>

#include "kernels/rope.h"

namespace slimkv::kernels {

// [h_kv, rotary_dim/2] scores: mean_t ‖k[t, h, pair j]‖ · mean_t,g ‖q[t, g, pair j]‖ over the
// query heads g of KV head h's group (h_q/h_kv of them); the q factor is 1 when q is null.
// Pair norms are rotation-invariant, so k and q may be pre- or post-RoPE.
// k: [tokens, h_kv, head_dim]; q: [tokens, h_q, head_dim] or null.
// REQUIRES: ValidateRopeParams(p) ok; h_q a multiple of h_kv when q is given.
std::vector<double> RopePairScores(const RopeParams& p, int h_kv, int64_t tokens, const float* k,
                                   const float* q, int h_q);

// K columns (h·head_dim + dim, ascending) of the `pairs_per_head` best-scoring pairs of every
// head: 2·pairs_per_head·h_kv columns. REQUIRES: pairs_per_head ≤ rotary_dim/2.
std::vector<int> SelectRopeColumns(const RopeParams& p, int h_kv,
                                   const std::vector<double>& scores, int pairs_per_head);

// [0, n) minus `cols` (ascending), ascending.
std::vector<int> ComplementColumns(const std::vector<int>& cols, int n);

}  // namespace slimkv::kernels
