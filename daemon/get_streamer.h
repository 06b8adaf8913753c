// GetStreamer: the messages of one Get response stream, produced one at a time so the stream
// holds at most one page, one message and one converted tensor.
//
// The first message is the header: the pages present when the stream starts, with their modes
// and tiers. Then the chunks, page by page, layer by layer, K then V, packed up to chunk_bytes
// of data per message. Each page is fetched from the cache only when its turn comes; a page
// evicted or deleted meanwhile ends the stream there, so the client receives a prefix of what
// the header announced (never a partial page). Memory a stalled client can pin is thus one page
// per stream.
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
  // Validates the request and finds the pages it returns: from first_page up to the first page
  // not stored. INVALID_ARGUMENT: bad dtype, raw with a dtype, first_page beyond the whole pages
  // of tokens; NOT_FOUND: unknown model; else as KvCache::Resolve. `cache` must outlive this.
  [[nodiscard]] static absl::StatusOr<std::unique_ptr<GetStreamer>> Start(
      cache::KvCache* cache, const std::string& tenant, const v1::GetRequest& request,
      uint32_t chunk_bytes);

  // Fills the next message; false when the stream is done.
  bool Next(v1::GetResponse* out);

  // Pages announced in the header.
  uint32_t pages() const { return static_cast<uint32_t>(keys_.size()); }
  uint64_t bytes_sent() const { return bytes_sent_; }

 private:
  explicit GetStreamer(cache::KvCache* cache) : cache_(cache) {}
  // Points tensor_data_/tensor_bytes_/tensor_crc_ at the current tensor in the output dtype.
  void LoadTensor();

  cache::KvCache* const cache_;
  std::vector<cache::PageKey> keys_;  // pages announced, in order
  std::vector<cache::Mode> modes_;
  std::vector<cache::Tier> tiers_;
  uint32_t first_page_ = 0;
  bool convert_ = false;
  kernels::DType out_dtype_ = kernels::DType::kF32;
  uint32_t chunk_bytes_ = 0;

  bool header_sent_ = false;
  size_t page_ = 0;                           // index into keys_
  std::shared_ptr<const cache::Page> pinned_;  // page page_, once its turn came
  uint32_t tensor_ = 0;                       // Page::TensorIndex
  uint64_t offset_ = 0;                       // bytes of the current tensor already sent
  bool tensor_loaded_ = false;
  const uint8_t* tensor_data_ = nullptr;
  uint64_t tensor_bytes_ = 0;
  uint32_t tensor_crc_ = 0;
  std::vector<uint8_t> converted_;
  uint64_t bytes_sent_ = 0;
};

}  // namespace slimkv::daemon
