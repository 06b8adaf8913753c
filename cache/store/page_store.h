// The host (RAM) tier: pages under a byte budget and per-tenant quotas, with least-recently-
// used eviction.
//
// A page is found by its key; the key already encodes tenant and model (page_key.h), so the
// store never mixes tenants. Accounting counts Page::StoredBytes(). The store never holds more
// than its budget, nor a tenant more than its quota, and a tenant's insert only ever evicts that
// tenant's own pages: each tenant has its own LRU list.
//
// Thread-safety: internally synchronized. Returned pages are immutable and stay valid while the
// caller holds the pointer, even if the store evicts them meanwhile.
#pragma once

#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "cache/store/page.h"
#include "cache/store/tenant_lru.h"

namespace slimkv::cache {

// The payload bytes of a tenant's stored layers in one representation, and the bytes those
// layers would take in full mode at their put dtype. A page's layers may differ in mode (a
// layer over the error tolerance is stored in full), so this counts layers, not pages, and
// leaves out the per-page overhead that TenantUsage::stored_bytes includes.
struct ModeUsage {
  uint64_t stored_bytes = 0;
  uint64_t logical_bytes = 0;
};
using ModeUsageMap = std::map<std::pair<Mode, Quant>, ModeUsage>;

struct PageStoreOptions {
  uint64_t budget_bytes = 4ull << 30;
  // Evicted or deleted keys remembered for WasRemoved(); 0 remembers none.
  uint32_t remembered_removals = 65536;
};

class PageStore {
 public:
  explicit PageStore(PageStoreOptions options);
  PageStore(const PageStore&) = delete;
  PageStore& operator=(const PageStore&) = delete;

  enum class InsertResult { kInserted, kAlreadyPresent };

  // Sets a tenant's quota; takes effect at its next insert (pages over a lowered quota stay until
  // then).
  void SetQuota(const std::string& tenant, TenantQuota quota);

  // Stores `page` as its tenant's most recently used page. A page whose key is present is not
  // replaced (kAlreadyPresent; it becomes most recent). To make room it evicts the tenant's own
  // least-recently-used pages: first to fit the tenant's quota, then the tier's budget; they are
  // appended to `evicted` when given (the next tier may take them). RESOURCE_EXHAUSTED, changing
  // nothing, when the page alone exceeds the budget or the quota, when the quota is set to
  // reject, or when the tenant has no pages left to evict and the tier is full of other
  // tenants' pages.
  [[nodiscard]] absl::StatusOr<InsertResult> Insert(
      std::shared_ptr<const Page> page,
      std::vector<std::shared_ptr<const Page>>* evicted = nullptr);

  // The page under `key`, marked most recently used; nullptr when absent.
  std::shared_ptr<const Page> Get(const PageKey& key);

  // OK when a page of `bytes` could be admitted for `tenant` at all: not over the budget, nor
  // over the tenant's quota. RESOURCE_EXHAUSTED otherwise. Lets a Put refuse a page before
  // receiving it; Insert still decides.
  [[nodiscard]] absl::Status CheckAdmissible(const std::string& tenant, uint64_t bytes) const;

  // True when `key` is present; marks it most recently used (a lookup announces a get).
  bool Touch(const PageKey& key);

  // True when `key` is present; leaves the LRU order as it is.
  bool Contains(const PageKey& key) const;

  // Removes the page; false when absent.
  bool Erase(const PageKey& key);

  // True when `key` was evicted or erased recently (bounded memory: see PageStoreOptions) and
  // has not been stored again since.
  bool WasRemoved(const PageKey& key) const;

  uint64_t budget_bytes() const { return options_.budget_bytes; }
  uint64_t used_bytes() const;
  uint64_t page_count() const;
  std::map<std::string, TenantUsage> UsageByTenant() const;
  // Per tenant, its layers' bytes by representation; a representation the tenant no longer
  // holds stays listed at zero.
  std::map<std::string, ModeUsageMap> ModeUsageByTenant() const;
  TenantQuota Quota(const std::string& tenant) const;

 private:
  void RemoveLocked(const PageKey& key, bool evicted) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void RememberRemovalLocked(const PageKey& key) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  // Constant after construction.
  const PageStoreOptions options_;

  // std::mutex rather than absl::Mutex: Debian's libabsl is not built with ThreadSanitizer
  // annotations, so TSan would not see absl::Mutex's happens-before edges.
  mutable std::mutex mu_;
  TenantLru lru_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<PageKey, std::shared_ptr<const Page>, DigestHash> pages_
      ABSL_GUARDED_BY(mu_);
  std::map<std::string, ModeUsageMap> modes_ ABSL_GUARDED_BY(mu_);
  // Recently removed keys: a FIFO of (key, removal number) bounded by
  // options_.remembered_removals, and each remembered key's latest removal number, so that an
  // old FIFO slot ageing out does not forget a newer removal of the same key.
  std::deque<std::pair<PageKey, uint64_t>> removed_fifo_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<PageKey, uint64_t, DigestHash> removed_ ABSL_GUARDED_BY(mu_);
  uint64_t removals_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace slimkv::cache
