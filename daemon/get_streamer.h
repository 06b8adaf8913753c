// GetStreamer: the messages of one Get response stream, produced one at a time so the stream
// never holds more than one message and one converted tensor in memory.
//
// The first message is the header (pages that follow, their modes and tiers); then the chunks,
// page by page, layer by layer, K then V, packed up to chunk_bytes of data per message.
// Pages are pinned when the stream starts: eviction meanwhile does not cut the stream.
//
// Thread-safety: external synchronization required.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "cache/kv_cache.h"
#include "kernels/dtype.h"
#include "slimkv/v1/cache.pb.h"

namespace slimkv::daemon {

class GetStreamer {
 public:
  // Validates the request and pins the pages it returns: from first_page up to the first page
  // not stored. INVALID_ARGUMENT: bad dtype, raw with a dtype, first_page beyond the whole pages
  // of tokens; NOT_FOUND: unknown model; else as KvCache::Resolve.
  [[nodiscard]] static absl::StatusOr<std::unique_ptr<GetStreamer>> Start(
      cache::KvCache* cache, const std::string& tenant, const v1::GetRequest& request,
      uint32_t chunk_bytes);

  // Fills the next message; false when the stream is done.
  bool Next(v1::GetResponse* out);

  uint32_t pages() const { return static_cast<uint32_t>(pages_.size()); }
  uint64_t bytes_sent() const { return bytes_sent_; }

 private:
  GetStreamer() = default;
  // Points tensor_data_/tensor_bytes_/tensor_crc_ at the current tensor in the output dtype.
  void LoadTensor();

  std::vector<std::shared_ptr<const cache::Page>> pages_;
  std::vector<cache::Tier> tiers_;
  std::vector<uint32_t> page_index_;  // index of each pinned page in the request's tokens
  bool convert_ = false;
  kernels::DType out_dtype_ = kernels::DType::kF32;
  uint32_t chunk_bytes_ = 0;

  bool header_sent_ = false;
  size_t page_ = 0;
  uint32_t tensor_ = 0;  // Page::TensorIndex
  uint64_t offset_ = 0;  // bytes of the current tensor already sent
  bool tensor_loaded_ = false;
  const uint8_t* tensor_data_ = nullptr;
  uint64_t tensor_bytes_ = 0;
  uint32_t tensor_crc_ = 0;
  std::vector<uint8_t> converted_;
  uint64_t bytes_sent_ = 0;
};

}  // namespace slimkv::daemon
