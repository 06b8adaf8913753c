// The on-disk page record: how one Page is laid out as a RocksDB value in the disk tier.
//
//   DiskRecordHeader (128 bytes) ‖ tenant bytes ‖ layer table (16 bytes per layer) ‖ payload
//
// All integers little-endian. Two CRC32Cs live in the header, each computed with both CRC
// fields zeroed: `meta_crc32c` over header ‖ tenant ‖ layer table, and `record_crc32c` over the
// whole record (the same running CRC continued over the payload, so one pass yields both).
// The first lets the index rebuild at start-up trust what it reads from a record's head without
// checksumming every payload; the second is what every Get verifies before serving bytes.
// docs/disk-format.md describes the record byte by byte.
//
// Thread-safety: stateless functions.
#pragma once

#include <bit>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "cache/store/page.h"

namespace slimkv::cache {

static_assert(std::endian::native == std::endian::little,
              "DiskRecordHeader is copied to and from disk as is: little-endian hosts only");

inline constexpr uint32_t kDiskRecordMagic = 0x5256'4B53;  // "SKVR" as bytes on disk
inline constexpr uint16_t kDiskRecordVersion = 2;

struct DiskRecordHeader {
  uint32_t magic;             // kDiskRecordMagic
  uint16_t version;           // kDiskRecordVersion
  uint16_t header_bytes;      // sizeof(DiskRecordHeader) in this version
  uint32_t record_crc32c;     // over the whole record, both CRC fields zero
  uint32_t meta_crc32c;       // over header ‖ tenant ‖ layer table, both CRC fields zero
  uint8_t mode;               // Mode the put asked for
  uint8_t dtype;              // kernels::DType
  uint8_t quant;              // Quant the put asked for
  uint8_t reserved0;          // zero
  uint32_t tenant_bytes;
  uint8_t key[32];            // PageKey; equals the RocksDB key
  uint8_t model[32];          // model fingerprint
  uint32_t page_tokens;       // PageGeometry, field by field
  uint32_t num_layers;
  uint32_t num_kv_heads;
  uint32_t k_head_dim;
  uint32_t v_head_dim;
  uint32_t layer_count;       // == num_layers
  uint64_t payload_bytes;
  uint64_t reserved1;         // zero
};
static_assert(sizeof(DiskRecordHeader) == 128);
static_assert(offsetof(DiskRecordHeader, key) == 24);
static_assert(offsetof(DiskRecordHeader, page_tokens) == 88);
static_assert(offsetof(DiskRecordHeader, payload_bytes) == 112);

// One entry of the layer table: a StoredLayer.
struct DiskLayerEntry {
  uint8_t mode;       // Mode
  uint8_t quant;      // Quant
  uint16_t reserved;  // zero
  uint32_t crc32c;    // of the layer's payload bytes
  uint64_t bytes;     // the layer's payload bytes; the layers follow one another
};
static_assert(sizeof(DiskLayerEntry) == 16);

// What the disk tier's index keeps of a record, read from its head alone (see DecodeRecordMeta).
struct DiskRecordMeta {
  PageKey key;
  std::string tenant;
  uint64_t logical_bytes = 0;  // Page::LogicalBytes() of the page
};

// OK when `page` can be recorded and would decode back: known modes, quantizers and dtype, one
// layer entry per layer whose sizes add up to the payload (a full, unquantized layer exactly
// the bytes its geometry and dtype call for), a tenant under 4 GiB. INVALID_ARGUMENT naming the
// first thing that does not hold otherwise.
[[nodiscard]] absl::Status CheckRecordable(const Page& page);

// The record of `page`. REQUIRES: CheckRecordable(page).ok().
std::string EncodeRecord(const Page& page);

// Size of the record EncodeRecord(page) returns, without building it.
uint64_t RecordBytes(const Page& page);

// The page in `record`, after checking everything: length, magic, version, header size, reserved
// fields, both CRCs, that the section sizes add up to the record's length, mode, dtype and that
// the layer table matches the geometry and the payload. DATA_LOSS naming the first failure otherwise.
// The page owns its bytes; `record` may be released afterwards.
[[nodiscard]] absl::StatusOr<std::shared_ptr<Page>> DecodeRecord(absl::string_view record);

// The same checks as DecodeRecord except the record CRC (the payload is not read), returning
// only what an index needs. DATA_LOSS naming the first failure.
[[nodiscard]] absl::StatusOr<DiskRecordMeta> DecodeRecordMeta(absl::string_view record);

}  // namespace slimkv::cache
