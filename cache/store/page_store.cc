#include "cache/store/page_store.h"

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

PageStore::PageStore(PageStoreOptions options)
    : options_(options), lru_("host", options.budget_bytes) {}

void PageStore::SetQuota(const std::string& tenant, TenantQuota quota) {
  std::lock_guard<std::mutex> lock(mu_);
  lru_.SetQuota(tenant, quota);
}

TenantQuota PageStore::Quota(const std::string& tenant) const {
  std::lock_guard<std::mutex> lock(mu_);
  return lru_.Quota(tenant);
}

absl::Status PageStore::CheckAdmissible(const std::string& tenant, uint64_t bytes) const {
  std::lock_guard<std::mutex> lock(mu_);
  return lru_.CheckAdmissible(tenant, bytes);
}

absl::StatusOr<PageStore::InsertResult> PageStore::Insert(
    std::shared_ptr<const Page> page, std::vector<std::shared_ptr<const Page>>* evicted) {
  const uint64_t bytes = page->StoredBytes();
  std::lock_guard<std::mutex> lock(mu_);
  if (lru_.Touch(page->key)) return InsertResult::kAlreadyPresent;
  absl::StatusOr<std::vector<PageKey>> victims = lru_.PlanRoom(page->tenant, bytes);
  if (!victims.ok()) return victims.status();
  for (const PageKey& v : *victims) {
    if (evicted != nullptr) evicted->push_back(pages_.at(v));
    RemoveLocked(v, /*evicted=*/true);
  }
  lru_.Add(page->key, page->tenant, bytes, page->LogicalBytes());
  CountLayers(*page, /*add=*/true, modes_[page->tenant]);
  removed_.erase(page->key);  // its FIFO slot, if any, ages out harmlessly
  const PageKey key = page->key;
  pages_.emplace(key, std::move(page));
  return InsertResult::kInserted;
}

std::shared_ptr<const Page> PageStore::Get(const PageKey& key) {
  std::lock_guard<std::mutex> lock(mu_);
  if (!lru_.Touch(key)) return nullptr;
  return pages_.at(key);
}

bool PageStore::Touch(const PageKey& key) {
  std::lock_guard<std::mutex> lock(mu_);
  return lru_.Touch(key);
}

bool PageStore::Contains(const PageKey& key) const {
  std::lock_guard<std::mutex> lock(mu_);
  return lru_.Contains(key);
}

bool PageStore::Erase(const PageKey& key) {
  std::lock_guard<std::mutex> lock(mu_);
  if (!lru_.Contains(key)) return false;
  RemoveLocked(key, /*evicted=*/false);
  return true;
}

bool PageStore::WasRemoved(const PageKey& key) const {
  std::lock_guard<std::mutex> lock(mu_);
  return removed_.contains(key);
}

uint64_t PageStore::used_bytes() const {
  std::lock_guard<std::mutex> lock(mu_);
  return lru_.used_bytes();
}

uint64_t PageStore::page_count() const {
  std::lock_guard<std::mutex> lock(mu_);
  return lru_.page_count();
}

std::map<std::string, TenantUsage> PageStore::UsageByTenant() const {
  std::lock_guard<std::mutex> lock(mu_);
  return lru_.UsageByTenant();
}

std::map<std::string, ModeUsageMap> PageStore::ModeUsageByTenant() const {
  std::lock_guard<std::mutex> lock(mu_);
  return modes_;
}

void PageStore::RemoveLocked(const PageKey& key, bool evicted) {
  auto it = pages_.find(key);
  CountLayers(*it->second, /*add=*/false, modes_[it->second->tenant]);
  lru_.Remove(key, evicted);
  pages_.erase(it);
  RememberRemovalLocked(key);
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
