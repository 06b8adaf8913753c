#include "cache/store/disk_record.h"

#include <algorithm>
#include <cstring>
#include <vector>

#include "absl/strings/str_cat.h"
#include "kernels/crc32c.h"

namespace slimkv::cache {
namespace {

constexpr size_t kHeaderBytes = sizeof(DiskRecordHeader);

constexpr size_t kLayerEntryBytes = sizeof(DiskLayerEntry);

// Bytes of one full, unquantized layer, or 0 when the geometry overflows. Multiplications are
// checked because a decoded geometry is untrusted.
uint64_t FullLayerBytes(const PageGeometry& g, kernels::DType dtype) {
  uint64_t per_token = 0, bytes = 0;
  const bool overflow =
      __builtin_add_overflow(uint64_t{g.k_head_dim}, g.v_head_dim, &per_token) ||
      __builtin_mul_overflow(per_token, g.num_kv_heads, &bytes) ||
      __builtin_mul_overflow(bytes, g.page_tokens, &bytes) ||
      __builtin_mul_overflow(bytes, g.num_layers, &bytes) ||
      __builtin_mul_overflow(bytes, kernels::DTypeSize(dtype), &bytes);
  return overflow ? 0 : bytes / std::max<uint32_t>(g.num_layers, 1);
}

// The rules a page must satisfy on disk, phrased for either direction; nullptr when they hold.
const char* ShapeError(Mode mode, Quant quant, kernels::DType dtype, const PageGeometry& g,
                       const std::vector<StoredLayer>& layers, uint64_t payload_bytes) {
  if (!IsValidMode(static_cast<int>(mode))) return "unknown mode";
  if (!IsValidQuant(static_cast<int>(quant))) return "unknown quantizer";
  if (!kernels::IsValidDType(static_cast<int>(dtype))) return "unknown dtype";
  if (layers.size() != g.num_layers) return "layer count is not num_layers";
  const uint64_t full = FullLayerBytes(g, dtype);
  if (full == 0) return "geometry overflows";
  uint64_t sum = 0;
  for (const StoredLayer& l : layers) {
    if (!IsValidMode(static_cast<int>(l.mode)) || !IsValidQuant(static_cast<int>(l.quant))) {
      return "layer with an unknown mode or quantizer";
    }
    if (l.mode == Mode::kFull && l.quant == Quant::kNone && l.bytes != full) {
      return "full layer size does not match the geometry";
    }
    if (__builtin_add_overflow(sum, l.bytes, &sum)) return "layer sizes overflow";
  }
  if (sum != payload_bytes) return "layer sizes do not add up to the payload";
  return nullptr;
}

PageGeometry GeometryOf(const DiskRecordHeader& h) {
  return {.page_tokens = h.page_tokens, .num_layers = h.num_layers,
          .num_kv_heads = h.num_kv_heads, .k_head_dim = h.k_head_dim,
          .v_head_dim = h.v_head_dim};
}

absl::Status Corrupt(absl::string_view what) {
  return absl::DataLossError(absl::StrCat("disk page record: ", what));
}

// Checks everything about `record` but the record CRC and fills `h` and `layers`.
absl::Status CheckHead(absl::string_view record, DiskRecordHeader* h,
                       std::vector<StoredLayer>* layers) {
  if (record.size() < kHeaderBytes) {
    return Corrupt(absl::StrCat(record.size(), " bytes, shorter than the ", kHeaderBytes,
                                "-byte header"));
  }
  std::memcpy(h, record.data(), kHeaderBytes);
  if (h->magic != kDiskRecordMagic) return Corrupt("bad magic");
  if (h->version != kDiskRecordVersion) {
    return Corrupt(absl::StrCat("unsupported format version ", h->version));
  }
  if (h->header_bytes != kHeaderBytes) {
    return Corrupt(absl::StrCat("header size ", h->header_bytes, ", expected ", kHeaderBytes));
  }
  if (h->reserved0 != 0 || h->reserved1 != 0) return Corrupt("reserved field not zero");
  // Each term is below 2^37 or checked against the length first, so the sum cannot wrap.
  const uint64_t meta_bytes =
      kHeaderBytes + uint64_t{h->tenant_bytes} + kLayerEntryBytes * h->layer_count;
  if (meta_bytes > record.size() || h->payload_bytes != record.size() - meta_bytes) {
    return Corrupt(absl::StrCat("sections (header ", kHeaderBytes, ", tenant ", h->tenant_bytes,
                                ", layers ", h->layer_count, ", payload ",
                                h->payload_bytes, ") do not add up to the record's ",
                                record.size(), " bytes"));
  }
  DiskRecordHeader zeroed = *h;
  zeroed.record_crc32c = 0;
  zeroed.meta_crc32c = 0;
  uint32_t crc = kernels::Crc32c(0, &zeroed, kHeaderBytes);
  crc = kernels::Crc32c(crc, record.data() + kHeaderBytes, meta_bytes - kHeaderBytes);
  if (crc != h->meta_crc32c) return Corrupt("header CRC32C mismatch");
  layers->resize(h->layer_count);
  const char* table = record.data() + kHeaderBytes + h->tenant_bytes;
  for (uint32_t i = 0; i < h->layer_count; ++i) {
    DiskLayerEntry e;
    std::memcpy(&e, table + i * kLayerEntryBytes, kLayerEntryBytes);
    if (e.reserved != 0) return Corrupt("reserved field not zero");
    (*layers)[i] = StoredLayer{.mode = static_cast<Mode>(e.mode),
                               .quant = static_cast<Quant>(e.quant),
                               .bytes = e.bytes,
                               .crc32c = e.crc32c};
  }
  if (const char* e = ShapeError(static_cast<Mode>(h->mode), static_cast<Quant>(h->quant),
                                 static_cast<kernels::DType>(h->dtype), GeometryOf(*h), *layers,
                                 h->payload_bytes)) {
    return Corrupt(e);
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status CheckRecordable(const Page& page) {
  if (page.tenant.size() > UINT32_MAX) return absl::InvalidArgumentError("tenant too long");
  if (const char* e = ShapeError(page.mode, page.quant, page.dtype, page.geometry, page.layers,
                                 page.payload.size())) {
    return absl::InvalidArgumentError(absl::StrCat("page cannot be recorded: ", e));
  }
  return absl::OkStatus();
}

uint64_t RecordBytes(const Page& page) {
  return kHeaderBytes + page.tenant.size() + kLayerEntryBytes * page.layers.size() +
         page.payload.size();
}

std::string EncodeRecord(const Page& page) {
  DiskRecordHeader h{};
  h.magic = kDiskRecordMagic;
  h.version = kDiskRecordVersion;
  h.header_bytes = kHeaderBytes;
  h.mode = static_cast<uint8_t>(page.mode);
  h.dtype = static_cast<uint8_t>(page.dtype);
  h.quant = static_cast<uint8_t>(page.quant);
  h.tenant_bytes = static_cast<uint32_t>(page.tenant.size());
  std::memcpy(h.key, page.key.data(), sizeof(h.key));
  std::memcpy(h.model, page.model.data(), sizeof(h.model));
  h.page_tokens = page.geometry.page_tokens;
  h.num_layers = page.geometry.num_layers;
  h.num_kv_heads = page.geometry.num_kv_heads;
  h.k_head_dim = page.geometry.k_head_dim;
  h.v_head_dim = page.geometry.v_head_dim;
  h.layer_count = static_cast<uint32_t>(page.layers.size());
  h.payload_bytes = page.payload.size();

  std::string out;
  out.resize(RecordBytes(page));
  char* p = out.data();
  std::memcpy(p, &h, kHeaderBytes);
  p += kHeaderBytes;
  std::memcpy(p, page.tenant.data(), page.tenant.size());
  p += page.tenant.size();
  for (const StoredLayer& l : page.layers) {
    const DiskLayerEntry e{.mode = static_cast<uint8_t>(l.mode),
                           .quant = static_cast<uint8_t>(l.quant),
                           .reserved = 0,
                           .crc32c = l.crc32c,
                           .bytes = l.bytes};
    std::memcpy(p, &e, kLayerEntryBytes);
    p += kLayerEntryBytes;
  }
  const uint32_t meta_crc = kernels::Crc32c(0, out.data(), p - out.data());
  std::memcpy(p, page.payload.data(), page.payload.size());
  h.meta_crc32c = meta_crc;
  h.record_crc32c = kernels::Crc32c(meta_crc, p, page.payload.size());
  std::memcpy(out.data(), &h, kHeaderBytes);
  return out;
}

absl::StatusOr<DiskRecordMeta> DecodeRecordMeta(absl::string_view record) {
  DiskRecordHeader h;
  std::vector<StoredLayer> layers;
  if (absl::Status s = CheckHead(record, &h, &layers); !s.ok()) return s;
  DiskRecordMeta meta;
  std::memcpy(meta.key.data(), h.key, sizeof(h.key));
  meta.tenant.assign(record.data() + kHeaderBytes, h.tenant_bytes);
  meta.logical_bytes =
      FullLayerBytes(GeometryOf(h), static_cast<kernels::DType>(h.dtype)) * h.num_layers;
  return meta;
}

absl::StatusOr<std::shared_ptr<Page>> DecodeRecord(absl::string_view record) {
  DiskRecordHeader h;
  std::vector<StoredLayer> layers;
  if (absl::Status s = CheckHead(record, &h, &layers); !s.ok()) return s;
  const char* p = record.data() + kHeaderBytes;
  const size_t meta_bytes = record.size() - h.payload_bytes;
  if (kernels::Crc32c(h.meta_crc32c, record.data() + meta_bytes, h.payload_bytes) !=
      h.record_crc32c) {
    return Corrupt("record CRC32C mismatch");
  }
  auto page = std::make_shared<Page>();
  std::memcpy(page->key.data(), h.key, sizeof(h.key));
  std::memcpy(page->model.data(), h.model, sizeof(h.model));
  page->mode = static_cast<Mode>(h.mode);
  page->quant = static_cast<Quant>(h.quant);
  page->dtype = static_cast<kernels::DType>(h.dtype);
  page->geometry = GeometryOf(h);
  page->tenant.assign(p, h.tenant_bytes);
  p += h.tenant_bytes;
  page->layers = std::move(layers);
  p += kLayerEntryBytes * h.layer_count;
  page->payload.assign(reinterpret_cast<const uint8_t*>(p),
                       reinterpret_cast<const uint8_t*>(p) + h.payload_bytes);
  return page;
}

}  // namespace slimkv::cache
