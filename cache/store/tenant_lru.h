// TenantLru: the accounting every tier shares — which pages a tier holds, their bytes per tenant,
// the tier's byte budget, each tenant's quota, and per-tenant least-recently-used order.
//
// A tenant's insert only ever evicts that tenant's own pages: each tenant has its own LRU list,
// and PlanRoom picks victims from it alone. PlanRoom decides without changing anything, so that a
// tier can commit its storage (a RocksDB batch, say) before it commits the accounting, and a
// refused insert changes nothing.
//
// Thread-safety: none; the owning tier serializes calls under its own lock.
#pragma once

#include <cstdint>
#include <list>
#include <map>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "cache/store/page.h"

namespace slimkv::cache {

// Monotonic and current figures of one tenant in one tier.
struct TenantUsage {
  uint64_t pages = 0;
  uint64_t stored_bytes = 0;
  uint64_t logical_bytes = 0;
  uint64_t evictions = 0;  // total, monotonic
};

// A tenant's limits in one tier.
struct TenantQuota {
  uint64_t bytes = 0;  // 0: no cap beyond the tier's budget
  // Over the quota: refuse the insert (true) or evict the tenant's own LRU pages (false).
  bool reject = false;
};

class TenantLru {
 public:
  // `tier` names the tier in messages ("host", "disk").
  TenantLru(std::string tier, uint64_t budget_bytes);

  void SetQuota(const std::string& tenant, TenantQuota quota);
  TenantQuota Quota(const std::string& tenant) const;

  // OK when a page of `bytes` could be admitted for `tenant` at all: within the budget and the
  // tenant's quota. RESOURCE_EXHAUSTED, with the limit named, otherwise.
  absl::Status CheckAdmissible(const std::string& tenant, uint64_t bytes) const;

  // The tenant's least-recently-used keys that must go for `bytes` more to fit its quota and the
  // budget, oldest first (empty when it fits). RESOURCE_EXHAUSTED when they cannot make room:
  // the page alone is too large, the quota rejects, or the tenant's own pages are not enough
  // (the tier is full of other tenants' pages). Changes nothing.
  absl::StatusOr<std::vector<PageKey>> PlanRoom(const std::string& tenant, uint64_t bytes) const;

  // Accounts a page as its tenant's most recent. REQUIRES: `key` absent.
  void Add(const PageKey& key, const std::string& tenant, uint64_t bytes, uint64_t logical_bytes);
  // Forgets the page, counting an eviction when `evicted`; false when absent.
  bool Remove(const PageKey& key, bool evicted);
  // Marks the page most recently used; false when absent.
  bool Touch(const PageKey& key);
  bool Contains(const PageKey& key) const { return index_.contains(key); }
  // A number that differs for every Add, telling a re-added key from its predecessor; 0 when
  // absent.
  uint64_t Generation(const PageKey& key) const;

  // Keys to evict so that every tenant fits its quota and the tier its budget (after a restart
  // with lowered limits): each tenant's oldest pages over its quota, then the oldest pages of
  // whichever tenant holds the most bytes, until the budget holds. Changes nothing.
  std::vector<PageKey> Overflow() const;

  uint64_t budget_bytes() const { return budget_bytes_; }
  uint64_t used_bytes() const { return used_bytes_; }
  uint64_t page_count() const { return index_.size(); }
  std::map<std::string, TenantUsage> UsageByTenant() const;

 private:
  using Lru = std::list<PageKey>;  // front = most recent
  struct Tenant {
    Lru lru;
    TenantUsage usage;
    TenantQuota quota;
  };
  struct Entry {
    Tenant* tenant;  // stable: std::map nodes do not move
    Lru::iterator it;
    uint64_t bytes;
    uint64_t logical_bytes;
    uint64_t generation;
  };

  const std::string tier_;
  const uint64_t budget_bytes_;
  std::map<std::string, Tenant, std::less<>> tenants_;
  absl::flat_hash_map<PageKey, Entry, DigestHash> index_;
  uint64_t used_bytes_ = 0;
  uint64_t generations_ = 0;
};

}  // namespace slimkv::cache
