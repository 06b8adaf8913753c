// PutAssembler: turns the messages of one Put stream into complete, verified pages.
//
// It enforces the stream rules of slimkv.v1.PutRequest: one header first; every page from
// first_page on, in order, each page's chunks not interleaved with another's; each tensor's
// chunks in order from offset 0; the tensors of the header's input (K and V, X or LATENT) with
// shapes and dtypes matching the model; CRC32C verified per tensor. Every violation is an error
// naming the field. When a page's last tensor verifies, the page is encoded as the stream's
// cache::PutPlan says (cache/codec/put_plan.h: the mode and quantizer from the header or the
// tenant's policy, fallbacks, verification sampling) and handed to the cache; an incomplete
// page is never visible. Fallbacks are counted in the response and the metrics.
//
// Thread-safety: external synchronization required (one stream, one assembler).
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "cache/store/kv_cache.h"
#include "cache/codec/put_plan.h"
#include "daemon/metrics.h"
#include "slimkv/v1/cache.pb.h"

namespace slimkv::daemon {

class PutAssembler {
 public:
  // `metrics` may be null (nothing is recorded). `verify_one_in`: one page in that many (by
  // key) is verified, and the first page put for each model.
  PutAssembler(cache::KvCache* cache, std::string tenant, Metrics* metrics = nullptr,
               uint32_t verify_one_in = 16);

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
  [[nodiscard]] absl::Status ChooseMode(const v1::PutHeader& header);
  [[nodiscard]] absl::Status StartTensor(const v1::TensorChunk& chunk, uint32_t index);
  // Roles each layer carries for the header's input, in order, and their engine columns.
  uint32_t RolesPerLayer() const { return plan_->input() == cache::PageInput::kKv ? 2 : 1; }
  v1::TensorRole RoleAt(uint32_t i) const;
  std::vector<int64_t> ShapeOf(v1::TensorRole role) const;
  uint64_t TensorBytes(uint32_t index) const;
  uint64_t TensorOffset(uint32_t index) const;
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
  Metrics* const metrics_;
  const uint32_t verify_one_in_;

  bool have_header_ = false;
  cache::ResolvedPrefix prefix_;
  uint32_t first_page_ = 0;
  // How the pages are stored (set with the header).
  std::optional<cache::PutPlan> plan_;
  // The page being received: index, its tensors' progress, the engine tensors as they arrive.
  int64_t page_ = -1;
  std::vector<TensorState> tensors_;
  uint32_t tensors_done_ = 0;
  bool receiving_ = false;
  kernels::DType dtype_ = kernels::DType::kF32;
  std::vector<uint8_t> input_bytes_;
  std::optional<cache::InflightReservation> reservation_;  // held while input_bytes_ fills
  v1::PutResponse response_;
};

}  // namespace slimkv::daemon
