#include "cache/disk_record.h"

#include <cstring>

#include "absl/strings/str_cat.h"
#include "kernels/crc32c.h"

namespace slimkv::cache {
namespace {

constexpr size_t kHeaderBytes = sizeof(DiskRecordHeader);

// The shape rules a page must satisfy on disk, phrased for either direction; nullptr when they
// hold. Multiplications are checked because a decoded geometry is untrusted.
const char* ShapeError(Mode mode, kernels::DType dtype, const PageGeometry& g,
                       uint64_t tensor_crc_count, uint64_t payload_bytes) {
  if (mode != Mode::kFull) return "unknown mode";
  if (!kernels::IsValidDType(static_cast<int>(dtype))) return "unknown dtype";
  if (tensor_crc_count != 2ull * g.num_layers) return "tensor CRC count is not 2 * num_layers";
  uint64_t per_token = 0, bytes = 0;
  const bool overflow =
      __builtin_add_overflow(uint64_t{g.k_head_dim}, g.v_head_dim, &per_token) ||
      __builtin_mul_overflow(per_token, g.num_kv_heads, &bytes) ||
      __builtin_mul_overflow(bytes, g.page_tokens, &bytes) ||
      __builtin_mul_overflow(bytes, g.num_layers, &bytes) ||
      __builtin_mul_overflow(bytes, kernels::DTypeSize(dtype), &bytes);
  if (overflow || bytes != payload_bytes) return "payload size does not match the geometry";
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

// Checks everything about `record` but the record CRC and fills `h`.
absl::Status CheckHead(absl::string_view record, DiskRecordHeader* h) {
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
  // Each term is below 2^35 or checked against the length first, so the sum cannot wrap.
  const uint64_t meta_bytes = kHeaderBytes + uint64_t{h->tenant_bytes} + 4ull * h->tensor_crc_count;
  if (meta_bytes > record.size() || h->payload_bytes != record.size() - meta_bytes) {
    return Corrupt(absl::StrCat("sections (header ", kHeaderBytes, ", tenant ", h->tenant_bytes,
                                ", tensor CRCs ", h->tensor_crc_count, ", payload ",
                                h->payload_bytes, ") do not add up to the record's ",
                                record.size(), " bytes"));
  }
  DiskRecordHeader zeroed = *h;
  zeroed.record_crc32c = 0;
  zeroed.meta_crc32c = 0;
  uint32_t crc = kernels::Crc32c(0, &zeroed, kHeaderBytes);
  crc = kernels::Crc32c(crc, record.data() + kHeaderBytes, meta_bytes - kHeaderBytes);
  if (crc != h->meta_crc32c) return Corrupt("header CRC32C mismatch");
  if (const char* e = ShapeError(static_cast<Mode>(h->mode), static_cast<kernels::DType>(h->dtype),
                                 GeometryOf(*h), h->tensor_crc_count, h->payload_bytes)) {
    return Corrupt(e);
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status CheckRecordable(const Page& page) {
  if (page.tenant.size() > UINT32_MAX) return absl::InvalidArgumentError("tenant too long");
  if (const char* e = ShapeError(page.mode, page.dtype, page.geometry, page.tensor_crc32c.size(),
                                 page.payload.size())) {
    return absl::InvalidArgumentError(absl::StrCat("page cannot be recorded: ", e));
  }
  return absl::OkStatus();
}

uint64_t RecordBytes(const Page& page) {
  return kHeaderBytes + page.tenant.size() + 4 * page.tensor_crc32c.size() + page.payload.size();
}

std::string EncodeRecord(const Page& page) {
  DiskRecordHeader h{};
  h.magic = kDiskRecordMagic;
  h.version = kDiskRecordVersion;
  h.header_bytes = kHeaderBytes;
  h.mode = static_cast<uint8_t>(page.mode);
  h.dtype = static_cast<uint8_t>(page.dtype);
  h.tenant_bytes = static_cast<uint32_t>(page.tenant.size());
  std::memcpy(h.key, page.key.data(), sizeof(h.key));
  std::memcpy(h.model, page.model.data(), sizeof(h.model));
  h.page_tokens = page.geometry.page_tokens;
  h.num_layers = page.geometry.num_layers;
  h.num_kv_heads = page.geometry.num_kv_heads;
  h.k_head_dim = page.geometry.k_head_dim;
  h.v_head_dim = page.geometry.v_head_dim;
  h.tensor_crc_count = static_cast<uint32_t>(page.tensor_crc32c.size());
  h.payload_bytes = page.payload.size();

  std::string out;
  out.resize(RecordBytes(page));
  char* p = out.data();
  std::memcpy(p, &h, kHeaderBytes);
  p += kHeaderBytes;
  std::memcpy(p, page.tenant.data(), page.tenant.size());
  p += page.tenant.size();
  std::memcpy(p, page.tensor_crc32c.data(), 4 * page.tensor_crc32c.size());
  p += 4 * page.tensor_crc32c.size();
  const uint32_t meta_crc = kernels::Crc32c(0, out.data(), p - out.data());
  std::memcpy(p, page.payload.data(), page.payload.size());
  h.meta_crc32c = meta_crc;
  h.record_crc32c = kernels::Crc32c(meta_crc, p, page.payload.size());
  std::memcpy(out.data(), &h, kHeaderBytes);
  return out;
}

absl::StatusOr<DiskRecordMeta> DecodeRecordMeta(absl::string_view record) {
  DiskRecordHeader h;
  if (absl::Status s = CheckHead(record, &h); !s.ok()) return s;
  DiskRecordMeta meta;
  std::memcpy(meta.key.data(), h.key, sizeof(h.key));
  meta.tenant.assign(record.data() + kHeaderBytes, h.tenant_bytes);
  meta.logical_bytes = h.payload_bytes;  // full mode: the payload is the logical page
  return meta;
}

absl::StatusOr<std::shared_ptr<Page>> DecodeRecord(absl::string_view record) {
  DiskRecordHeader h;
  if (absl::Status s = CheckHead(record, &h); !s.ok()) return s;
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
  page->dtype = static_cast<kernels::DType>(h.dtype);
  page->geometry = GeometryOf(h);
  page->tenant.assign(p, h.tenant_bytes);
  p += h.tenant_bytes;
  page->tensor_crc32c.resize(h.tensor_crc_count);
  std::memcpy(page->tensor_crc32c.data(), p, 4ull * h.tensor_crc_count);
  p += 4ull * h.tensor_crc_count;
  page->payload.assign(reinterpret_cast<const uint8_t*>(p),
                       reinterpret_cast<const uint8_t*>(p) + h.payload_bytes);
  return page;
}

}  // namespace slimkv::cache
