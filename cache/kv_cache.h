// KvCache: the cache behind the service, free of any wire format. It resolves models, computes
// page keys per tenant, stores and finds pages in its tiers, and keeps per-tenant counters.
//
// Thread-safety: internally synchronized.
#pragma once

#include <cstdint>
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

  // Which page first misses and why. Never fails: an unknown model is a reason.
  ExplainResult Explain(absl::string_view tenant, absl::string_view model_id,
                        std::span<const uint32_t> tokens) const;

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

  mutable std::mutex mu_;
  std::map<std::string, Counters, std::less<>> counters_ ABSL_GUARDED_BY(mu_);
};

}  // namespace slimkv::cache
