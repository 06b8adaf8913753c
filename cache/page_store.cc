#include "cache/page_store.h"

#include "absl/strings/str_cat.h"

namespace slimkv::cache {

PageStore::PageStore(PageStoreOptions options) : options_(options) {}

absl::StatusOr<PageStore::InsertResult> PageStore::Insert(std::shared_ptr<const Page> page) {
  const uint64_t bytes = page->StoredBytes();
  if (bytes > options_.budget_bytes) {
    return absl::ResourceExhaustedError(absl::StrCat("page of ", bytes,
                                                     " bytes exceeds the host budget of ",
                                                     options_.budget_bytes, " bytes"));
  }
  std::lock_guard<std::mutex> lock(mu_);
  if (auto it = index_.find(page->key); it != index_.end()) {
    lru_.splice(lru_.begin(), lru_, it->second);
    return InsertResult::kAlreadyPresent;
  }
  while (used_bytes_ + bytes > options_.budget_bytes) RemoveLocked(std::prev(lru_.end()), true);

  TenantUsage& u = usage_[page->tenant];
  ++u.pages;
  u.stored_bytes += bytes;
  u.logical_bytes += page->LogicalBytes();
  used_bytes_ += bytes;
  removed_.erase(page->key);  // its FIFO slot, if any, ages out harmlessly
  const PageKey key = page->key;
  lru_.push_front(std::move(page));
  index_.emplace(key, lru_.begin());
  return InsertResult::kInserted;
}

std::shared_ptr<const Page> PageStore::Get(const PageKey& key) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = index_.find(key);
  if (it == index_.end()) return nullptr;
  lru_.splice(lru_.begin(), lru_, it->second);
  return *it->second;
}

bool PageStore::Touch(const PageKey& key) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = index_.find(key);
  if (it == index_.end()) return false;
  lru_.splice(lru_.begin(), lru_, it->second);
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
  RemoveLocked(it->second, false);
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
  return usage_;
}

void PageStore::RemoveLocked(Lru::iterator it, bool evicted) {
  const Page& page = **it;
  const uint64_t bytes = page.StoredBytes();
  TenantUsage& u = usage_[page.tenant];
  --u.pages;
  u.stored_bytes -= bytes;
  u.logical_bytes -= page.LogicalBytes();
  if (evicted) ++u.evictions;
  used_bytes_ -= bytes;
  RememberRemovalLocked(page.key);
  index_.erase(page.key);
  lru_.erase(it);
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
