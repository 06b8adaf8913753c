// PutAssembler: turns the messages of one Put stream into complete, verified pages.
//
// It enforces the stream rules of slimkv.v1.PutRequest: one header first; every page from
// first_page on, in order, each page's chunks not interleaved with another's; each tensor's chunks in order from
// offset 0; shapes and dtypes matching the model; CRC32C verified per tensor. Every violation
// is an error naming the field. A page is handed to the cache the moment its last tensor
// verifies; an incomplete page is never visible.
//
// Thread-safety: external synchronization required (one stream, one assembler).
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "cache/kv_cache.h"
#include "slimkv/v1/cache.pb.h"

namespace slimkv::daemon {

class PutAssembler {
 public:
  PutAssembler(cache::KvCache* cache, std::string tenant);

  // Consumes the next message of the stream. On error the stream must end with that status;
  // pages completed before stay stored.
  [[nodiscard]] absl::Status Add(const v1::PutRequest& request);

  // Called when the client half-closed the stream. INVALID_ARGUMENT if a page is incomplete or
  // a page in [first_page, pages) was never sent.
  [[nodiscard]] absl::Status Finish();

  const v1::PutResponse& response() const { return response_; }

 private:
  [[nodiscard]] absl::Status AddHeader(const v1::PutHeader& header);
  [[nodiscard]] absl::Status AddChunk(const v1::TensorChunk& chunk);
  [[nodiscard]] absl::Status StartPage(uint32_t page);
  [[nodiscard]] absl::Status StartTensor(const v1::TensorChunk& chunk, uint32_t index,
                                         cache::Role role);
  [[nodiscard]] absl::Status CompletePage();
  std::string Missing() const;

  struct TensorState {
    uint64_t received = 0;
    uint32_t expected_crc = 0;
    uint32_t crc = 0;
    bool started = false;
  };

  cache::KvCache* const cache_;
  const std::string tenant_;

  bool have_header_ = false;
  cache::ResolvedPrefix prefix_;
  uint32_t first_page_ = 0;
  // The page being received: index, its tensors' progress, the page under construction.
  int64_t page_ = -1;
  std::vector<TensorState> tensors_;
  uint32_t tensors_done_ = 0;
  std::shared_ptr<cache::Page> building_;
  std::optional<cache::InflightReservation> reservation_;  // held while building_ fills
  v1::PutResponse response_;
};

}  // namespace slimkv::daemon
