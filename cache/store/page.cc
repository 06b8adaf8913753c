#include "cache/page.h"

#include "kernels/crc32c.h"

namespace slimkv::cache {

const char* ModeName(Mode m) {
  switch (m) {
    case Mode::kFull: return "full";
    case Mode::kSlim: return "slim";
    case Mode::kXcache: return "xcache";
    case Mode::kLatent: return "latent";
  }
  return "invalid";
}

const char* QuantName(Quant q) {
  switch (q) {
    case Quant::kNone: return "none";
    case Quant::kFp8: return "fp8";
    case Quant::kInt8: return "int8";
    case Quant::kInt4: return "int4";
  }
  return "invalid";
}

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

bool IsValidMode(int m) { return m >= 1 && m <= 4; }
bool IsValidQuant(int q) { return q >= 1 && q <= 4; }

}  // namespace slimkv::cache
