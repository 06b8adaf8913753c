#include "cache/store/tenant_lru.h"

#include <algorithm>

#include "absl/strings/str_cat.h"

namespace slimkv::cache {

TenantLru::TenantLru(std::string tier, uint64_t budget_bytes)
    : tier_(std::move(tier)), budget_bytes_(budget_bytes) {}

void TenantLru::SetQuota(const std::string& tenant, TenantQuota quota) {
  tenants_[tenant].quota = quota;
}

TenantQuota TenantLru::Quota(const std::string& tenant) const {
  auto it = tenants_.find(tenant);
  return it == tenants_.end() ? TenantQuota{} : it->second.quota;
}

absl::Status TenantLru::CheckAdmissible(const std::string& tenant, uint64_t bytes) const {
  if (bytes > budget_bytes_) {
    return absl::ResourceExhaustedError(absl::StrCat("page of ", bytes, " bytes exceeds the ",
                                                     tier_, " budget of ", budget_bytes_,
                                                     " bytes"));
  }
  const TenantQuota quota = Quota(tenant);
  if (quota.bytes != 0 && bytes > quota.bytes) {
    return absl::ResourceExhaustedError(absl::StrCat("page of ", bytes, " bytes exceeds tenant ",
                                                     tenant, "'s ", tier_, " quota of ",
                                                     quota.bytes, " bytes"));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<PageKey>> TenantLru::PlanRoom(const std::string& tenant,
                                                         uint64_t bytes) const {
  if (absl::Status s = CheckAdmissible(tenant, bytes); !s.ok()) return s;
  static const Tenant kNone;
  auto found = tenants_.find(tenant);
  const Tenant& t = found == tenants_.end() ? kNone : found->second;
  const uint64_t own = t.usage.stored_bytes;
  const uint64_t quota_need =
      t.quota.bytes != 0 && own + bytes > t.quota.bytes ? own + bytes - t.quota.bytes : 0;
  const uint64_t budget_need =
      used_bytes_ + bytes > budget_bytes_ ? used_bytes_ + bytes - budget_bytes_ : 0;
  if (quota_need > 0 && t.quota.reject) {
    return absl::ResourceExhaustedError(absl::StrCat("tenant ", tenant, " is at its ", tier_,
                                                     " quota of ", t.quota.bytes, " bytes"));
  }
  const uint64_t need = std::max(quota_need, budget_need);
  if (need > own) {
    return absl::ResourceExhaustedError(
        quota_need > own
            ? absl::StrCat("tenant ", tenant, " is at its ", tier_, " quota of ", t.quota.bytes,
                           " bytes")
            : absl::StrCat(tier_, " tier full (", used_bytes_, " of ", budget_bytes_,
                           " bytes) with other tenants' pages"));
  }
  std::vector<PageKey> victims;
  uint64_t freed = 0;
  for (auto it = t.lru.rbegin(); freed < need; ++it) {
    victims.push_back(*it);
    freed += index_.at(*it).bytes;
  }
  return victims;
}

void TenantLru::Add(const PageKey& key, const std::string& tenant, uint64_t bytes,
                    uint64_t logical_bytes) {
  Tenant& t = tenants_[tenant];
  ++t.usage.pages;
  t.usage.stored_bytes += bytes;
  t.usage.logical_bytes += logical_bytes;
  used_bytes_ += bytes;
  t.lru.push_front(key);
  index_.emplace(key, Entry{&t, t.lru.begin(), bytes, logical_bytes, ++generations_});
}

bool TenantLru::Remove(const PageKey& key, bool evicted) {
  auto it = index_.find(key);
  if (it == index_.end()) return false;
  const Entry& e = it->second;
  TenantUsage& u = e.tenant->usage;
  --u.pages;
  u.stored_bytes -= e.bytes;
  u.logical_bytes -= e.logical_bytes;
  u.evictions += evicted;
  used_bytes_ -= e.bytes;
  e.tenant->lru.erase(e.it);
  index_.erase(it);
  return true;
}

bool TenantLru::Touch(const PageKey& key) {
  auto it = index_.find(key);
  if (it == index_.end()) return false;
  Lru& lru = it->second.tenant->lru;
  lru.splice(lru.begin(), lru, it->second.it);
  return true;
}

uint64_t TenantLru::Generation(const PageKey& key) const {
  auto it = index_.find(key);
  return it == index_.end() ? 0 : it->second.generation;
}

std::vector<PageKey> TenantLru::Overflow() const {
  struct Cursor {
    Lru::const_reverse_iterator next;
    uint64_t bytes;
  };
  std::map<const Tenant*, Cursor> cursors;
  std::vector<PageKey> victims;
  uint64_t used = used_bytes_;
  auto evict_oldest = [&](Cursor& c) {
    victims.push_back(*c.next);
    const uint64_t b = index_.at(*c.next).bytes;
    c.bytes -= b;
    used -= b;
    ++c.next;
  };
  for (const auto& [id, t] : tenants_) {
    Cursor& c = cursors.emplace(&t, Cursor{t.lru.rbegin(), t.usage.stored_bytes}).first->second;
    while (t.quota.bytes != 0 && c.bytes > t.quota.bytes) evict_oldest(c);
  }
  while (used > budget_bytes_) {
    auto largest = std::max_element(cursors.begin(), cursors.end(), [](auto& a, auto& b) {
      return a.second.bytes < b.second.bytes;
    });
    evict_oldest(largest->second);
  }
  return victims;
}

std::map<std::string, TenantUsage> TenantLru::UsageByTenant() const {
  std::map<std::string, TenantUsage> out;
  for (const auto& [id, t] : tenants_) out[id] = t.usage;
  return out;
}

}  // namespace slimkv::cache
