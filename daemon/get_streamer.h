// GetStreamer: the messages of one Get response stream, produced one at a time so the stream
// holds at most one page, one message and one converted tensor.
//
// The first message is the header: the pages present when the stream starts, with their modes,
// quantizers, per-layer modes and tiers. Then the chunks, page by page, layer by layer, K then V
// reconstructed from the layer's stored mode (cache/codec/page_codec.h) in the requested dtype, or
// with `raw` the layer's stored bytes as one STORED tensor; packed up to chunk_bytes of data per
// message. Each page is fetched from the cache only when its turn comes; a page evicted or
// deleted meanwhile ends the stream there, so the client receives a prefix of what the header
// announced (never a partial page). Memory a stalled client can pin is thus one page and one
// reconstructed layer per stream.
//
// Thread-safety: external synchronization required.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "cache/codec/gpu_tier.h"
#include "cache/store/kv_cache.h"
#include "daemon/metrics.h"
#include "kernels/dtype.h"
#include "slimkv/v1/cache.pb.h"

namespace slimkv::daemon {

class GetStreamer {
 public:
  // Validates the request and finds the pages it returns: from first_page up to the first page
  // not stored. INVALID_ARGUMENT: bad dtype, raw with a dtype, first_page beyond the whole pages
  // of tokens; NOT_FOUND: unknown model; else as KvCache::Resolve. `cache` (and `gpu`, the GPU
  // tier layers are reconstructed through when not null: cache/codec/decode_dispatch.h) must outlive
  // this.
  [[nodiscard]] static absl::StatusOr<std::unique_ptr<GetStreamer>> Start(
      cache::KvCache* cache, const std::string& tenant, const v1::GetRequest& request,
      uint32_t chunk_bytes, Metrics* metrics = nullptr, cache::GpuTier* gpu = nullptr);

  // Fills the next message; false when the stream is done, with status() saying how it ended:
  // OK, or DATA_LOSS / FAILED_PRECONDITION when a layer cannot be reconstructed.
  bool Next(v1::GetResponse* out);
  const absl::Status& status() const { return status_; }

  // Pages announced in the header.
  uint32_t pages() const { return static_cast<uint32_t>(keys_.size()); }
  uint64_t bytes_sent() const { return bytes_sent_; }

 private:
  GetStreamer(cache::KvCache* cache, std::string tenant, Metrics* metrics, cache::GpuTier* gpu)
      : cache_(cache), tenant_(std::move(tenant)), metrics_(metrics), gpu_(gpu) {}
  // Points tensor_data_/tensor_bytes_/tensor_crc_ at the current tensor, reconstructing its
  // layer when the layer starts. False with status_ set when it cannot.
  bool LoadTensor();
  uint32_t TensorsPerLayer() const { return raw_ ? 1 : 2; }

  cache::KvCache* const cache_;
  const std::string tenant_;
  Metrics* const metrics_;
  cache::GpuTier* const gpu_;
  std::shared_ptr<const cache::RegisteredModel> model_;
  std::vector<cache::PageKey> keys_;  // pages announced, in order
  v1::GetResponseHeader header_;  // built at Start, sent first
  uint32_t first_page_ = 0;
  bool raw_ = false;
  bool convert_ = false;
  kernels::DType out_dtype_ = kernels::DType::kF32;
  uint32_t chunk_bytes_ = 0;
  absl::Status status_;

  bool header_sent_ = false;
  size_t page_ = 0;                           // index into keys_
  std::shared_ptr<const cache::Page> pinned_;  // page page_, once its turn came
  cache::Tier pinned_tier_ = cache::Tier::kHost;  // where pinned_ came from
  uint32_t tensor_ = 0;                       // layer · TensorsPerLayer() + (0: K or STORED, 1: V)
  uint64_t offset_ = 0;                       // bytes of the current tensor already sent
  bool tensor_loaded_ = false;
  const uint8_t* tensor_data_ = nullptr;
  uint64_t tensor_bytes_ = 0;
  uint32_t tensor_crc_ = 0;
  std::vector<int64_t> tensor_shape_;
  std::vector<uint8_t> layer_;  // the current layer's K then V, reconstructed
  uint64_t bytes_sent_ = 0;
};

}  // namespace slimkv::daemon
