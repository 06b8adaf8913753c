#include "cache/page_store.h"

#include <algorithm>

#include "absl/strings/str_cat.h"

namespace slimkv::cache {

namespace {

// Counts a page's layers into `modes` (add) or out of them.
void CountLayers(const Page& page, bool add, ModeUsageMap& modes) {
  const uint64_t layer_logical = page.geometry.LayerElems() * kernels::DTypeSize(page.dtype);
  for (const StoredLayer& l : page.layers) {
    ModeUsage& u = modes[{l.mode, l.quant}];
    u.stored_bytes = add ? u.stored_bytes + l.bytes : u.stored_bytes - l.bytes;
    u.logical_bytes = add ? u.logical_bytes + layer_logical : u.logical_bytes - layer_logical;
  }
}

}  // namespace

PageStore::PageStore(PageStoreOptions options) : options_(options) {}

void PageStore::SetQuota(const std::string& tenant, TenantQuota quota) {
  std::lock_guard<std::mutex> lock(mu_);
  tenants_[tenant].quota = quota;
}

TenantQuota PageStore::Quota(const std::string& tenant) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = tenants_.find(tenant);
  return it == tenants_.end() ? TenantQuota{} : it->second.quota;
}

absl::Status PageStore::CheckAdmissible(const std::string& tenant, uint64_t bytes) const {
  if (bytes > options_.budget_bytes) {
    return absl::ResourceExhaustedError(absl::StrCat("page of ", bytes,
                                                     " bytes exceeds the host budget of ",
                                                     options_.budget_bytes, " bytes"));
  }
  const TenantQuota quota = Quota(tenant);
  if (quota.bytes != 0 && bytes > quota.bytes) {
    return absl::ResourceExhaustedError(absl::StrCat("page of ", bytes, " bytes exceeds tenant ",
                                                     tenant, "'s host quota of ", quota.bytes,
                                                     " bytes"));
  }
  return absl::OkStatus();
}

absl::StatusOr<PageStore::InsertResult> PageStore::Insert(std::shared_ptr<const Page> page) {
  const uint64_t bytes = page->StoredBytes();
  if (absl::Status s = CheckAdmissible(page->tenant, bytes); !s.ok()) return s;
  std::lock_guard<std::mutex> lock(mu_);
  if (auto it = index_.find(page->key); it != index_.end()) {
    Lru& lru = it->second.tenant->lru;
    lru.splice(lru.begin(), lru, it->second.it);
    return InsertResult::kAlreadyPresent;
  }
  Tenant& t = tenants_[page->tenant];
  if (!MakeRoomLocked(t, bytes)) {
    const bool over_quota = t.quota.bytes != 0 && t.usage.stored_bytes + bytes > t.quota.bytes;
    return absl::ResourceExhaustedError(
        over_quota ? absl::StrCat("tenant ", page->tenant, " is at its host quota of ",
                                  t.quota.bytes, " bytes")
                   : absl::StrCat("host tier full (", used_bytes_, " of ", options_.budget_bytes,
                                  " bytes) with other tenants' pages"));
  }
  t.usage.Add(bytes, page->LogicalBytes());
  CountLayers(*page, /*add=*/true, t.modes);
  used_bytes_ += bytes;
  removed_.erase(page->key);  // its FIFO slot, if any, ages out harmlessly
  const PageKey key = page->key;
  t.lru.push_front(std::move(page));
  index_.emplace(key, Slot{&t, t.lru.begin()});
  return InsertResult::kInserted;
}

bool PageStore::MakeRoomLocked(Tenant& t, uint64_t bytes) {
  auto over = [&] {
    return (t.quota.bytes != 0 && t.usage.stored_bytes + bytes > t.quota.bytes) ||
           used_bytes_ + bytes > options_.budget_bytes;
  };
  if (t.quota.reject && t.quota.bytes != 0 && t.usage.stored_bytes + bytes > t.quota.bytes) {
    return false;
  }
  // Check first, evict after: a refused insert must change nothing. All of the tenant's own
  // pages, and only those, may go.
  const uint64_t freeable = t.usage.stored_bytes;
  const uint64_t quota_need =
      t.quota.bytes != 0 && t.usage.stored_bytes + bytes > t.quota.bytes
          ? t.usage.stored_bytes + bytes - t.quota.bytes : 0;
  const uint64_t budget_need =
      used_bytes_ + bytes > options_.budget_bytes ? used_bytes_ + bytes - options_.budget_bytes : 0;
  if (std::max(quota_need, budget_need) > freeable) return false;
  while (over()) RemoveLocked(t, std::prev(t.lru.end()), true);
  return true;
}

std::shared_ptr<const Page> PageStore::Get(const PageKey& key) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = index_.find(key);
  if (it == index_.end()) return nullptr;
  Lru& lru = it->second.tenant->lru;
  lru.splice(lru.begin(), lru, it->second.it);
  return *it->second.it;
}

bool PageStore::Touch(const PageKey& key) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = index_.find(key);
  if (it == index_.end()) return false;
  Lru& lru = it->second.tenant->lru;
  lru.splice(lru.begin(), lru, it->second.it);
  return true;
}

bool PageStore::Contains(const PageKey& key) const {
  std::lock_guard<std::mutex> lock(mu_);
  return index_.contains(key);
}

bool PageStore::Erase(const PageKey& key) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = index_.find(key);
  if (it == index_.end()) return false;
  RemoveLocked(*it->second.tenant, it->second.it, false);
  return true;
}

bool PageStore::WasRemoved(const PageKey& key) const {
  std::lock_guard<std::mutex> lock(mu_);
  return removed_.contains(key);
}

uint64_t PageStore::used_bytes() const {
  std::lock_guard<std::mutex> lock(mu_);
  return used_bytes_;
}

uint64_t PageStore::page_count() const {
  std::lock_guard<std::mutex> lock(mu_);
  return index_.size();
}

std::map<std::string, TenantUsage> PageStore::UsageByTenant() const {
  std::lock_guard<std::mutex> lock(mu_);
  std::map<std::string, TenantUsage> out;
  for (const auto& [id, t] : tenants_) out[id] = t.usage;
  return out;
}

std::map<std::string, ModeUsageMap> PageStore::ModeUsageByTenant() const {
  std::lock_guard<std::mutex> lock(mu_);
  std::map<std::string, ModeUsageMap> out;
  for (const auto& [id, t] : tenants_) out[id] = t.modes;
  return out;
}

void PageStore::RemoveLocked(Tenant& t, Lru::iterator it, bool evicted) {
  const Page& page = **it;
  const uint64_t bytes = page.StoredBytes();
  t.usage.Remove(bytes, page.LogicalBytes(), evicted);
  CountLayers(page, /*add=*/false, t.modes);
  used_bytes_ -= bytes;
  RememberRemovalLocked(page.key);
  index_.erase(page.key);
  t.lru.erase(it);
}

void PageStore::RememberRemovalLocked(const PageKey& key) {
  if (options_.remembered_removals == 0) return;
  if (removed_fifo_.size() == options_.remembered_removals) {
    const auto& [old_key, number] = removed_fifo_.front();
    if (auto it = removed_.find(old_key); it != removed_.end() && it->second == number) {
      removed_.erase(it);
    }
    removed_fifo_.pop_front();
  }
  removed_fifo_.emplace_back(key, ++removals_);
  removed_[key] = removals_;
}

}  // namespace slimkv::cache
