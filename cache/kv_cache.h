// KvCache: the cache behind the service, free of any wire format. It resolves models, computes
// page keys per tenant, stores and finds pages in its tiers, and keeps per-tenant counters.
//
// Thread-safety: internally synchronized.
#pragma once

#include <atomic>
#include <cstdint>
#include <utility>
#include <map>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "cache/model_registry.h"
#include "cache/page.h"
#include "cache/page_store.h"

namespace slimkv::cache {

struct KvCacheOptions {
  PageStoreOptions host;
  uint64_t max_page_bytes = 1ull << 30;
  // Longest token list a request may carry.
  uint32_t max_tokens = 1u << 20;
  // Models that may be registered.
  uint32_t max_models = 64;
  // Bytes of pages that Put streams may hold while receiving them, all streams together.
  uint64_t max_put_inflight_bytes = 2ull << 30;
  // Where derived matrices are cached ("" caches nothing), and how the projected rank is chosen.
  std::string factor_dir;
  CodecOptions codec;
};

// How a tenant's pages are stored when a put does not say.
struct TenantPolicy {
  Mode mode = Mode::kFull;
  Quant quant = Quant::kNone;
  double tolerance = 1e-2;  // relative Frobenius error a stored layer may add
};

// Bytes held for a page being received; returned when the object goes away.
class InflightReservation {
 public:
  InflightReservation(std::atomic<uint64_t>* counter, uint64_t bytes)
      : counter_(counter), bytes_(bytes) {}
  InflightReservation(InflightReservation&& o) noexcept
      : counter_(std::exchange(o.counter_, nullptr)), bytes_(o.bytes_) {}
  InflightReservation& operator=(InflightReservation&&) = delete;
  ~InflightReservation() {
    if (counter_ != nullptr) counter_->fetch_sub(bytes_);
  }

 private:
  std::atomic<uint64_t>* counter_;
  uint64_t bytes_;
};

// A token prefix resolved for one tenant: its model and the keys of its whole pages.
struct ResolvedPrefix {
  std::shared_ptr<const RegisteredModel> model;
  std::vector<PageKey> keys;
};

struct LookupResult {
  uint64_t hit_tokens = 0;
  std::vector<Tier> tiers;  // one per hit page
};

struct ExplainResult {
  enum class Reason { kAllHit, kUnknownModel, kAbsent, kEvicted, kPartialPage };
  uint64_t hit_tokens = 0;
  uint32_t first_missing_page = 0;
  Reason reason = Reason::kAllHit;
  std::string detail;
  std::vector<PageKey> keys;
};

struct TenantStats {
  TenantUsage host;
  TenantQuota host_quota;
  uint64_t lookups = 0;
  uint64_t hit_tokens = 0;
  uint64_t miss_tokens = 0;
};

class KvCache {
 public:
  explicit KvCache(const KvCacheOptions& options);

  ModelRegistry& models() { return models_; }
  PageStore& host() { return host_; }
  const KvCacheOptions& options() const { return options_; }

  // Resolves `model_id` and computes the tenant's keys for the whole pages of `tokens`.
  // INVALID_ARGUMENT: model_id malformed, tokens empty or longer than max_tokens.
  // NOT_FOUND: model_id not registered.
  [[nodiscard]] absl::StatusOr<ResolvedPrefix> Resolve(absl::string_view tenant,
                                                       absl::string_view model_id,
                                                       std::span<const uint32_t> tokens) const;

  // Longest stored whole-page prefix; counts a lookup with its hit and miss tokens.
  [[nodiscard]] absl::StatusOr<LookupResult> Lookup(absl::string_view tenant,
                                                    absl::string_view model_id,
                                                    std::span<const uint32_t> tokens);

  // Admission for a page a Put is about to receive: RESOURCE_EXHAUSTED when the page could never
  // be stored for `tenant` (PageStore::CheckAdmissible), or when the pages being received by all
  // Put streams would exceed max_put_inflight_bytes — so that clients opening many streams
  // cannot exhaust memory before any page is complete.
  [[nodiscard]] absl::StatusOr<InflightReservation> ReserveInflight(const std::string& tenant,
                                                                    uint64_t bytes);

  // Stores a complete page in the host tier (see PageStore::Insert).
  [[nodiscard]] absl::StatusOr<PageStore::InsertResult> Insert(std::shared_ptr<const Page> page);

  // The stored page under `key` and its tier; nullptr when absent.
  std::shared_ptr<const Page> Get(const PageKey& key, Tier* tier);

  // Deletes pages [first_page, end) of the prefix; returns how many were stored.
  // INVALID_ARGUMENT: first_page beyond the whole pages of tokens; else as Resolve.
  [[nodiscard]] absl::StatusOr<uint32_t> Delete(absl::string_view tenant,
                                                absl::string_view model_id,
                                                std::span<const uint32_t> tokens,
                                                uint32_t first_page);

  // Which page first misses and why. An unregistered model is a reason, not an error;
  // INVALID_ARGUMENT as Resolve for malformed input.
  [[nodiscard]] absl::StatusOr<ExplainResult> Explain(absl::string_view tenant,
                                                      absl::string_view model_id,
                                                      std::span<const uint32_t> tokens) const;

  // The tenant's storage policy (defaults for a tenant never given one).
  void SetPolicy(const std::string& tenant, const TenantPolicy& policy);
  TenantPolicy Policy(absl::string_view tenant) const;
  // Every policy set, by tenant.
  std::map<std::string, TenantPolicy> Policies() const;

  // Bytes the Put streams hold for pages they are receiving (ReserveInflight).
  uint64_t inflight_bytes() const { return inflight_bytes_.load(); }

  TenantStats Stats(absl::string_view tenant) const;
  std::map<std::string, TenantStats> AllStats() const;

 private:
  struct Counters {
    uint64_t lookups = 0;
    uint64_t hit_tokens = 0;
    uint64_t miss_tokens = 0;
  };

  const KvCacheOptions options_;
  ModelRegistry models_;
  PageStore host_;

  std::atomic<uint64_t> inflight_bytes_{0};

  mutable std::mutex mu_;
  std::map<std::string, Counters, std::less<>> counters_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, TenantPolicy, std::less<>> policies_ ABSL_GUARDED_BY(mu_);
};

}  // namespace slimkv::cache
