// KvCache: the cache behind the service, free of any wire format. It resolves models, computes
// page keys per tenant, stores and finds pages in its tiers, and keeps per-tenant counters.
//
// Tiers (docs/architecture.md "Tiers"): the host tier (RAM, PageStore) and, when given, the disk
// tier (RocksDB, DiskTier). They are inclusive: a page may be in both. Pages the host tier
// evicts go to a bounded demotion queue (unless the disk already holds them) that one
// background thread writes to disk, so no RPC waits on a disk write it does not need; while queued a page is still found (in RAM). A get
// that finds a page only on disk reads it and promotes it into the host tier (it stays on disk).
// With `write_through` (the disk tier's `sync` setting) every insert is also written to disk,
// synced, before it is acknowledged: acknowledged pages survive kill -9.
//
// Thread-safety: internally synchronized.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <utility>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "cache/store/disk_tier.h"
#include "cache/model/model_registry.h"
#include "cache/store/page.h"
#include "cache/store/page_store.h"

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
  // Bytes of host-evicted pages waiting for the disk writer; past it the oldest waiting page is
  // dropped (counted). Pages in the queue are RAM beyond the host budget.
  uint64_t demotion_queue_bytes = 256ull << 20;
  // Write every insert to the disk tier before acknowledging it (see the header comment).
  bool write_through = false;
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
  TenantUsage disk;
  TenantQuota disk_quota;
  uint64_t lookups = 0;
  uint64_t hit_tokens = 0;
  uint64_t miss_tokens = 0;
  uint64_t demotions = 0;           // pages written to disk when the host tier evicted them
  uint64_t promotions = 0;          // pages read from disk into the host tier by a get
  uint64_t disk_written_bytes = 0;  // record bytes written to the disk tier
  uint64_t disk_read_bytes = 0;     // record bytes read from the disk tier
};

// Figures of the disk tier as a whole.
struct DiskStats {
  uint64_t checksum_failures = 0;  // records dropped for failing their check
  uint64_t demotions_dropped = 0;  // host-evicted pages never written: queue full, no room
  uint64_t queued_bytes = 0;       // pages waiting in the demotion queue now
  std::map<std::string, uint64_t> errors;  // by operation ("insert", "read", "erase")
};

class KvCache {
 public:
  // `disk` may be null: host tier only.
  explicit KvCache(const KvCacheOptions& options, std::unique_ptr<DiskTier> disk = nullptr);
  // Writes the pages still queued for demotion, then stops the writer.
  ~KvCache();
  KvCache(const KvCache&) = delete;
  KvCache& operator=(const KvCache&) = delete;

  ModelRegistry& models() { return models_; }
  PageStore& host() { return host_; }
  DiskTier* disk() { return disk_.get(); }
  const DiskTier* disk() const { return disk_.get(); }
  const KvCacheOptions& options() const { return options_; }

  // The registered model `model_id` names.
  // INVALID_ARGUMENT: model_id not 64 lower-case hex digits. NOT_FOUND: not registered.
  [[nodiscard]] absl::StatusOr<std::shared_ptr<const RegisteredModel>> FindModel(
      absl::string_view model_id) const;

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

  // Stores a complete page in the host tier (see PageStore::Insert), and with write_through in
  // the disk tier too before returning; a disk failure then undoes the host insert and is
  // returned (RESOURCE_EXHAUSTED, UNAVAILABLE). Pages the host tier evicts are queued for disk.
  [[nodiscard]] absl::StatusOr<PageStore::InsertResult> Insert(std::shared_ptr<const Page> page);

  // The stored page under `key` and the tier it was found in; nullptr when absent (a disk record
  // that fails its check is absent: dropped and counted). A page found only on disk is promoted
  // into the host tier.
  std::shared_ptr<const Page> Get(const PageKey& key, Tier* tier);

  // Blocks until every page queued for demotion so far has been written or dropped.
  void FlushDemotions();

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

  // The namespace the tenant's page keys derive from (docs/page-keys.md): its own id unless it
  // is put in a share group, whose members then find each other's pages.
  void SetNamespace(const std::string& tenant, const std::string& key_namespace);

  TenantStats Stats(absl::string_view tenant) const;
  std::map<std::string, TenantStats> AllStats() const;
  DiskStats disk_stats() const;

 private:
  struct Counters {
    uint64_t lookups = 0;
    uint64_t hit_tokens = 0;
    uint64_t miss_tokens = 0;
    uint64_t demotions = 0;
    uint64_t promotions = 0;
    uint64_t disk_written_bytes = 0;
    uint64_t disk_read_bytes = 0;
  };

  std::string NamespaceOf(absl::string_view tenant) const;
  // The tier holding `key` (a page queued for demotion counts as host); nullopt when none has
  // it. Touch also marks it most recently used there (a lookup announces a get); Find does not.
  std::optional<Tier> Touch(const PageKey& key);
  std::optional<Tier> Find(const PageKey& key) const;
  bool Queued(const PageKey& key) const;
  void CountDiskError(const char* op);
  void CountDiskWrite(const Page& page, bool demotion);
  // Queues host-evicted pages for the disk writer (no-op without a disk tier).
  void Demote(std::vector<std::shared_ptr<const Page>> pages);
  void DemotionLoop();
  void AddCountersLocked(const std::string& tenant, TenantStats& s) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const KvCacheOptions options_;
  ModelRegistry models_;
  PageStore host_;
  const std::unique_ptr<DiskTier> disk_;

  std::atomic<uint64_t> inflight_bytes_{0};

  mutable std::mutex mu_;
  std::map<std::string, Counters, std::less<>> counters_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, TenantPolicy, std::less<>> policies_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, std::string, std::less<>> namespaces_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, uint64_t> disk_errors_ ABSL_GUARDED_BY(mu_);
  uint64_t demotions_dropped_ ABSL_GUARDED_BY(mu_) = 0;

  // Serializes pages moving between tiers (a host insert's evictions entering the queue, a
  // promotion) with deletes, so that a delete never misses a page in transit; counts deletes so
  // a promotion can tell one happened while it read the disk. Acquired before queue_mu_.
  std::mutex move_mu_;
  uint64_t deletions_ ABSL_GUARDED_BY(move_mu_) = 0;

  // The demotion queue: keys in FIFO order, pages by key so gets still find them. A page stays
  // in `queued_` until its write finished, so a reader never finds it in neither place. A key
  // in `order_` but not in `queued_` was deleted or dropped meanwhile and is skipped.
  mutable std::mutex queue_mu_;
  std::condition_variable queue_cv_;
  std::deque<PageKey> order_ ABSL_GUARDED_BY(queue_mu_);
  absl::flat_hash_map<PageKey, std::shared_ptr<const Page>, DigestHash> queued_
      ABSL_GUARDED_BY(queue_mu_);
  uint64_t queued_bytes_ ABSL_GUARDED_BY(queue_mu_) = 0;
  // The key the writer is storing now, and whether a Delete asked for it meanwhile (the writer
  // then erases what it wrote).
  std::optional<PageKey> writing_ ABSL_GUARDED_BY(queue_mu_);
  bool writing_deleted_ ABSL_GUARDED_BY(queue_mu_) = false;
  bool stop_ ABSL_GUARDED_BY(queue_mu_) = false;
  std::thread writer_;
};

}  // namespace slimkv::cache
