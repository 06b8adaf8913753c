// Helpers shared by the codec and attention references and fast paths: dtype loads/stores and
// column maps.
// Internal to kernels/.
//
// Thread-safety: stateless functions.
#pragma once

#include <cstdint>
#include <vector>

#include "absl/status/status.h"
#include "kernels/codec_layer.h"

namespace slimkv::kernels::internal {

// n elements of `t` widened to float / double.
std::vector<float> LoadF32(ConstTensor t, int64_t n);
std::vector<double> LoadF64(ConstTensor t, int64_t n);
// Rounds n values into `t` (one rounding, to nearest even).
void StoreF32(const float* src, int64_t n, MutableTensor t);
void StoreF64(const double* src, int64_t n, MutableTensor t);

// K columns (of e) that the projected mode projects: those not in kept_k_cols, ascending.
std::vector<int> ProjectedKColumns(const KvCodecLayer& l);

// [heads, k_head_dim]: for each position of a K head, n ≥ 0 for nope dim n of that head, or
// −(j+1) for rope dim j.
std::vector<int> LatentHeadMap(const LatentLayout& l);

}  // namespace slimkv::kernels::internal
