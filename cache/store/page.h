// A cached page: `page_tokens` consecutive tokens of one prefix, all layers, in one stored
// representation. Pages are immutable once built and shared by pointer between the store and
// readers, so a Get never holds a store lock while it streams.
//
// Thread-safety: immutable.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "cache/model/modes.h"
#include "cache/store/page_key.h"
#include "kernels/dtype.h"

namespace slimkv::cache {

// Values match slimkv.v1.Tier on the wire: never renumber.
enum class Tier : uint8_t { kGpu = 1, kHost = 2, kDisk = 3 };
const char* TierName(Tier t);

// Bookkeeping a stored page costs beyond its payload (index entry, LRU links, header), counted
// against byte budgets so that many tiny pages cannot overrun them.
inline constexpr uint64_t kPageOverheadBytes = 256;

// One layer of a stored page: its representation and where its bytes are in the payload.
struct StoredLayer {
  Mode mode = Mode::kFull;
  Quant quant = Quant::kNone;
  uint64_t bytes = 0;   // of the payload, from the end of the previous layer
  uint32_t crc32c = 0;  // CRC32C of those bytes, checked whenever they are read back
};

struct Page {
  PageKey key;
  std::string tenant;
  Digest model;  // registration fingerprint of the model
  // What the put asked for. A layer whose representation would exceed the tenant's error
  // tolerance is stored in full instead, so `layers[i].mode` may differ (docs/codecs.md).
  Mode mode = Mode::kFull;
  Quant quant = Quant::kNone;
  // Element type the engine sent; unquantized stored values keep it.
  kernels::DType dtype = kernels::DType::kF32;
  PageGeometry geometry;
  std::vector<StoredLayer> layers;  // geometry.num_layers entries
  // The layers' stored bytes, one after the other (docs/codecs.md "Stored layouts").
  std::vector<uint8_t> payload;

  // Byte offset of layer `l` in the payload.
  uint64_t LayerOffset(uint32_t l) const {
    uint64_t off = 0;
    for (uint32_t i = 0; i < l; ++i) off += layers[i].bytes;
    return off;
  }
  // What the page costs in a tier's byte budget.
  uint64_t StoredBytes() const { return payload.size() + kPageOverheadBytes; }
  // What the page would take in full mode at its dtype: the "uncompressed equivalent".
  uint64_t LogicalBytes() const { return geometry.PageElems() * kernels::DTypeSize(dtype); }
};

// Describes `page->payload` as full, unquantized layers (K then V per layer, as the engine
// sent them): fills page->layers with their sizes and CRC32Cs. REQUIRES the payload to hold
// exactly LogicalBytes().
void SetFullLayers(Page* page);

}  // namespace slimkv::cache
