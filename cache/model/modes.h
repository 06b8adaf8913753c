// The vocabulary of stored pages: the modes, quantizers and inputs a page is stored from, the
// roles of its tensors, and a page's shape for a model. The one definition below the wire.
//
// Thread-safety: plain values and stateless functions.
#pragma once

#include <cstdint>

namespace slimkv::cache {

// Values match slimkv.v1.Mode, slimkv.v1.Quant and slimkv.v1.PageInput on the wire
// (daemon/wire_enums.h pins them) and are stored in disk records: never renumber.
//   kLatent is the model's latent: native (c_kv + k_rope as the engine caches it) for MLA
//   models, projected ([K_raw V]·B_R, lossy) for the others.
enum class Mode : uint8_t { kFull = 1, kSlim = 2, kXcache = 3, kLatent = 4 };
enum class Quant : uint8_t { kNone = 1, kFp8 = 2, kInt8 = 3, kInt4 = 4 };
// What the engine sends per layer: K and V, the layer input x [T, d], or (MLA) the latent row
// [T, d_c + rope elems].
enum class PageInput : uint8_t { kKv = 1, kX = 2, kLatent = 3 };
enum class Role : uint8_t { kK = 1, kV = 2 };

const char* ModeName(Mode m);
const char* QuantName(Quant q);
bool IsValidMode(int m);
bool IsValidQuant(int q);

// Shape of a page in the engine layout: per layer K [page_tokens, kv_heads, k_head_dim] then
// V [page_tokens, kv_heads, v_head_dim], row-major (what full mode stores).
struct PageGeometry {
  uint32_t page_tokens = 0;
  uint32_t num_layers = 0;
  uint32_t num_kv_heads = 0;
  uint32_t k_head_dim = 0;
  uint32_t v_head_dim = 0;

  uint32_t HeadDim(Role r) const { return r == Role::kK ? k_head_dim : v_head_dim; }
  uint64_t TensorElems(Role r) const { return uint64_t{page_tokens} * num_kv_heads * HeadDim(r); }
  uint64_t LayerElems() const { return TensorElems(Role::kK) + TensorElems(Role::kV); }
  uint64_t PageElems() const { return LayerElems() * num_layers; }
  bool operator==(const PageGeometry&) const = default;
};

}  // namespace slimkv::cache
