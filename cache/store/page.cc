#include "cache/store/page.h"

#include "kernels/crc32c.h"

namespace slimkv::cache {

const char* TierName(Tier t) {
  switch (t) {
    case Tier::kGpu: return "gpu";
    case Tier::kHost: return "host";
    case Tier::kDisk: return "disk";
  }
  return "invalid";
}

void SetFullLayers(Page* page) {
  const uint64_t bytes = page->geometry.LayerElems() * kernels::DTypeSize(page->dtype);
  page->mode = Mode::kFull;
  page->quant = Quant::kNone;
  page->layers.clear();
  for (uint32_t l = 0; l < page->geometry.num_layers; ++l) {
    page->layers.push_back({.mode = Mode::kFull,
                            .quant = Quant::kNone,
                            .bytes = bytes,
                            .crc32c = kernels::Crc32c(0, page->payload.data() + l * bytes, bytes)});
  }
}

}  // namespace slimkv::cache
