// slimkvd's Prometheus metrics: the one list of what the daemon exports, registered in one
// place (Metrics::Create) and served on their own port.
//
// Every metric is declared in one list (metrics.cc, kMetrics) and registered by Create. Two
// kinds: event metrics (RPCs, fallbacks, reconstructions, ...) are updated as things happen;
// cache metrics (stored bytes, pages, lookups, evictions, policies, GPU tier bytes, ...) are
// read from the KvCache and the GPU tier at scrape time, so they can never drift from their own
// accounting. Names and labels are documented in docs/metrics.md.
//
// Thread-safety: internally synchronized.
#pragma once

#include <memory>
#include <span>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "cache/codec/decode_dispatch.h"
#include "cache/codec/gpu_tier.h"
#include "cache/store/kv_cache.h"
#include "cache/store/page.h"
#include "cache/codec/page_attention.h"
#include "cache/codec/page_codec.h"

namespace prometheus {
class Exposer;
class Registry;
}  // namespace prometheus

namespace slimkv::daemon {

class Metrics {
 public:
  // Registers every metric and starts serving /metrics on `listen` (host:port; port 0 picks a
  // free one). UNAVAILABLE when the address cannot be bound. `cache` and `gpu` (may be null: no
  // GPU tier) must outlive Metrics.
  [[nodiscard]] static absl::StatusOr<std::unique_ptr<Metrics>> Create(
      absl::string_view listen, cache::KvCache* cache, const cache::GpuTier* gpu = nullptr);
  ~Metrics();

  // The names of every metric family slimkvd exports, in declaration order.
  static std::vector<std::string> Names();

  // Records one finished RPC.
  void RecordRpc(absl::string_view tenant, absl::string_view method, absl::StatusCode code,
                 double seconds);
  // Records payload bytes moved by Put (received) and Get (sent).
  void RecordBytes(absl::string_view tenant, absl::string_view direction, uint64_t bytes);

  // Records how one layer of a put page was stored: its fallback, if any, and the measured
  // relative error of the representation tried, if it was measured.
  void RecordLayer(absl::string_view tenant, cache::Mode requested,
                   const cache::LayerOutcome& outcome);
  // Records `layers` layers stored in full for `reason` without trying the requested mode
  // ("factors_pending", or "not_applicable" when the policy's mode does not fit the model).
  void RecordFallbacks(absl::string_view tenant, cache::Mode requested, absl::string_view reason,
                       uint64_t layers);
  // Records one layer reconstructed from `mode` in `seconds`, on the device `where` says (and
  // why not on the GPU).
  void RecordReconstruction(absl::string_view tenant, cache::Mode mode,
                            const cache::DecodeWhere& where, double seconds);

  // Records the attention kernel calls of one Attend request: each under its device and stored
  // mode, and each CPU call the GPU could not take under its fallback reason.
  void RecordAttendCalls(const cache::AttendCalls& calls);

  // Records the tiers of the pages a Lookup found (one entry per hit page of `page_tokens`).
  void RecordLookupHits(absl::string_view tenant, std::span<const cache::Tier> page_tiers,
                        uint32_t page_tokens);
  // Records a page Get returned from `tier`: each layer under its stored mode and quantizer.
  void RecordServedPage(absl::string_view tenant, cache::Tier tier, const cache::Page& page);
  // Records a config reload on SIGHUP: applied (ok) or refused.
  void RecordReload(bool ok);

  // The port /metrics listens on.
  int port() const;

 private:
  struct Families;
  class CacheCollector;

  Metrics() = default;
  // One kernel call of `op` on a layer stored in `mode`: where it ran, and why not on the GPU.
  void RecordKernelCall(const char* op, cache::Mode mode, cache::KernelDevice device,
                        cache::GpuFallback fallback);

  std::shared_ptr<prometheus::Registry> registry_;
  std::unique_ptr<Families> families_;
  std::shared_ptr<CacheCollector> cache_collector_;
  std::unique_ptr<prometheus::Exposer> exposer_;
};

}  // namespace slimkv::daemon
