// A cached page: `page_tokens` consecutive tokens of one prefix, all layers, in one stored
// representation. Pages are immutable once built and shared by pointer between the store and
// readers, so a Get never holds a store lock while it streams.
//
// Thread-safety: immutable.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "cache/page_key.h"
#include "kernels/dtype.h"

namespace slimkv::cache {

// Values match slimkv.v1.Mode and slimkv.v1.Tier on the wire.
enum class Mode : uint8_t { kFull = 1 };
enum class Tier : uint8_t { kGpu = 1, kHost = 2, kDisk = 3 };
enum class Role : uint8_t { kK = 1, kV = 2 };

const char* ModeName(Mode m);
const char* TierName(Tier t);

// Shape of a page in the engine layout: per layer K [page_tokens, kv_heads, k_head_dim] then
// V [page_tokens, kv_heads, v_head_dim], row-major.
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

// Bookkeeping a stored page costs beyond its payload (index entry, LRU links, header), counted
// against byte budgets so that many tiny pages cannot overrun them.
inline constexpr uint64_t kPageOverheadBytes = 256;

struct Page {
  PageKey key;
  std::string tenant;
  Digest model;  // registration fingerprint of the model
  Mode mode = Mode::kFull;
  kernels::DType dtype = kernels::DType::kF32;
  PageGeometry geometry;
  // Full mode: for each layer, K then V, each row-major in `dtype`.
  std::vector<uint8_t> payload;
  // CRC32C of each engine-layout tensor as put, index TensorIndex(layer, role).
  std::vector<uint32_t> tensor_crc32c;

  static uint32_t TensorIndex(uint32_t layer, Role r) { return layer * 2 + (r == Role::kV); }
  static Role RoleOf(uint32_t tensor_index) { return tensor_index % 2 ? Role::kV : Role::kK; }

  uint64_t TensorBytes(Role r) const {
    return geometry.TensorElems(r) * kernels::DTypeSize(dtype);
  }
  uint64_t TensorOffset(uint32_t layer, Role r) const {
    const uint64_t layer_bytes = geometry.LayerElems() * kernels::DTypeSize(dtype);
    return layer * layer_bytes + (r == Role::kV ? TensorBytes(Role::kK) : 0);
  }
  // What the page costs in a tier's byte budget.
  uint64_t StoredBytes() const { return payload.size() + kPageOverheadBytes; }
  // What the page would take in full mode at its dtype: the "uncompressed equivalent".
  uint64_t LogicalBytes() const { return geometry.PageElems() * kernels::DTypeSize(dtype); }
};

}  // namespace slimkv::cache
