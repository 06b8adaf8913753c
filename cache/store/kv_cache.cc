#include "cache/store/kv_cache.h"

#include "absl/strings/str_cat.h"

namespace slimkv::cache {

KvCache::KvCache(const KvCacheOptions& options, std::unique_ptr<DiskTier> disk)
    : options_(options),
      models_(options.max_page_bytes, options.max_models, options.factor_dir, options.codec),
      host_(options.host),
      disk_(std::move(disk)) {
  if (disk_ != nullptr) writer_ = std::thread([this] { DemotionLoop(); });
}

KvCache::~KvCache() {
  if (!writer_.joinable()) return;
  {
    std::lock_guard<std::mutex> lock(queue_mu_);
    stop_ = true;
  }
  queue_cv_.notify_all();
  writer_.join();
}

std::string KvCache::NamespaceOf(absl::string_view tenant) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = namespaces_.find(tenant);
  return it == namespaces_.end() ? std::string(tenant) : it->second;
}

void KvCache::SetNamespace(const std::string& tenant, const std::string& key_namespace) {
  std::lock_guard<std::mutex> lock(mu_);
  namespaces_[tenant] = key_namespace;
}

absl::StatusOr<std::shared_ptr<const RegisteredModel>> KvCache::FindModel(
    absl::string_view model_id) const {
  Digest unused;
  if (!FromHex(model_id, &unused)) {
    return absl::InvalidArgumentError(
        absl::StrCat("model_id: expected 64 lower-case hex digits, got '",
                     model_id.substr(0, 80), "'"));
  }
  std::shared_ptr<const RegisteredModel> model = models_.Find(model_id);
  if (model == nullptr) {
    return absl::NotFoundError(absl::StrCat("model_id: ", model_id, " is not registered"));
  }
  return model;
}

absl::StatusOr<ResolvedPrefix> KvCache::Resolve(absl::string_view tenant,
                                                absl::string_view model_id,
                                                std::span<const uint32_t> tokens) const {
  ResolvedPrefix out;
  absl::StatusOr<std::shared_ptr<const RegisteredModel>> model = FindModel(model_id);
  if (!model.ok()) return model.status();
  out.model = *std::move(model);
  if (tokens.empty()) return absl::InvalidArgumentError("tokens: empty");
  if (tokens.size() > options_.max_tokens) {
    return absl::InvalidArgumentError(absl::StrCat("tokens: ", tokens.size(),
                                                   " tokens, over the limit of ",
                                                   options_.max_tokens));
  }
  out.keys = ChainPageKeys(RootKey(out.model->fingerprint, NamespaceOf(tenant)), tokens,
                           out.model->geometry.page_tokens);
  return out;
}

absl::StatusOr<LookupResult> KvCache::Lookup(absl::string_view tenant,
                                             absl::string_view model_id,
                                             std::span<const uint32_t> tokens) {
  auto prefix = Resolve(tenant, model_id, tokens);
  if (!prefix.ok()) return prefix.status();
  LookupResult result;
  for (const PageKey& key : prefix->keys) {
    std::optional<Tier> tier = Touch(key);
    if (!tier) break;
    result.tiers.push_back(*tier);
  }
  result.hit_tokens = uint64_t{result.tiers.size()} * prefix->model->geometry.page_tokens;

  std::lock_guard<std::mutex> lock(mu_);
  Counters& c = counters_[std::string(tenant)];
  ++c.lookups;
  c.hit_tokens += result.hit_tokens;
  c.miss_tokens += tokens.size() - result.hit_tokens;
  return result;
}

absl::StatusOr<InflightReservation> KvCache::ReserveInflight(const std::string& tenant,
                                                            uint64_t bytes) {
  if (absl::Status s = host_.CheckAdmissible(tenant, bytes); !s.ok()) return s;
  uint64_t held = inflight_bytes_.load();
  do {
    if (held + bytes > options_.max_put_inflight_bytes) {
      return absl::ResourceExhaustedError(absl::StrCat(
          "put: streams are receiving ", held, " bytes of pages; another page of ", bytes,
          " would exceed max_put_inflight_bytes ", options_.max_put_inflight_bytes,
          " (retry later)"));
    }
  } while (!inflight_bytes_.compare_exchange_weak(held, held + bytes));
  return InflightReservation(&inflight_bytes_, bytes);
}

absl::StatusOr<PageStore::InsertResult> KvCache::Insert(std::shared_ptr<const Page> page) {
  absl::StatusOr<PageStore::InsertResult> r;
  {
    // Evicted pages leave the host tier and enter the queue in one step as far as Delete sees.
    std::lock_guard<std::mutex> lock(move_mu_);
    std::vector<std::shared_ptr<const Page>> evicted;
    r = host_.Insert(page, &evicted);
    Demote(std::move(evicted));
  }
  if (r.ok() && options_.write_through && disk_ != nullptr) {
    absl::StatusOr<DiskTier::InsertResult> d = disk_->Insert(*page);
    if (!d.ok()) {
      if (absl::IsUnavailable(d.status())) CountDiskError("insert");
      if (*r == PageStore::InsertResult::kInserted) host_.Erase(page->key);
      r = d.status();
    } else if (*d == DiskTier::InsertResult::kInserted) {
      CountDiskWrite(*page, /*demotion=*/false);
    }
  }
  return r;
}

bool KvCache::Queued(const PageKey& key) const {
  std::lock_guard<std::mutex> lock(queue_mu_);
  return queued_.contains(key);
}

std::optional<Tier> KvCache::Touch(const PageKey& key) {
  if (host_.Touch(key) || Queued(key)) return Tier::kHost;
  if (disk_ != nullptr && disk_->Touch(key)) return Tier::kDisk;
  return std::nullopt;
}

std::optional<Tier> KvCache::Find(const PageKey& key) const {
  if (host_.Contains(key) || Queued(key)) return Tier::kHost;
  if (disk_ != nullptr && disk_->Contains(key)) return Tier::kDisk;
  return std::nullopt;
}

std::shared_ptr<const Page> KvCache::Get(const PageKey& key, Tier* tier) {
  *tier = Tier::kHost;
  if (auto page = host_.Get(key)) return page;
  {
    std::lock_guard<std::mutex> lock(queue_mu_);
    if (auto it = queued_.find(key); it != queued_.end()) return it->second;
  }
  if (disk_ == nullptr) return nullptr;
  uint64_t deletions;
  {
    std::lock_guard<std::mutex> lock(move_mu_);
    deletions = deletions_;
  }
  absl::StatusOr<std::shared_ptr<const Page>> page = disk_->Get(key);
  if (!page.ok()) {
    CountDiskError("read");
    return nullptr;
  }
  if (*page == nullptr) return nullptr;
  *tier = Tier::kDisk;
  bool promoted = false;
  {
    // A delete while we read may have missed the page in every tier; promoting it now would
    // bring it back. Any delete meanwhile skips the promotion (the page is still returned).
    std::lock_guard<std::mutex> lock(move_mu_);
    if (deletions_ == deletions) {
      std::vector<std::shared_ptr<const Page>> evicted;
      promoted = host_.Insert(*page, &evicted).ok();
      Demote(std::move(evicted));
    }
  }
  std::lock_guard<std::mutex> lock(mu_);
  Counters& c = counters_[(*page)->tenant];
  c.disk_read_bytes += DiskTier::DiskBytes(**page);
  c.promotions += promoted;
  return *page;
}

void KvCache::Demote(std::vector<std::shared_ptr<const Page>> pages) {
  if (disk_ == nullptr) return;
  // Tiers are inclusive: a page promoted from disk, or written through, is still there. Marking
  // it recent (as the writer's insert would) spares a queue slot, a wake-up of the writer and,
  // when the queue is full, dropping a page that really waits for disk.
  std::erase_if(pages, [this](const auto& page) { return disk_->Touch(page->key); });
  if (pages.empty()) return;
  uint64_t dropped = 0;
  {
    std::lock_guard<std::mutex> lock(queue_mu_);
    for (auto& page : pages) {
      const uint64_t bytes = page->StoredBytes();
      if (auto it = queued_.find(page->key); it != queued_.end()) {
        // Evicted again while still waiting: one entry, the latest page.
        queued_bytes_ -= it->second->StoredBytes();
        queued_.erase(it);
      }
      // Make room by dropping the oldest waiting pages; a page larger than the whole queue is
      // dropped itself.
      while (queued_bytes_ + bytes > options_.demotion_queue_bytes && !order_.empty()) {
        auto it = queued_.find(order_.front());
        order_.pop_front();
        if (it == queued_.end()) continue;
        queued_bytes_ -= it->second->StoredBytes();
        queued_.erase(it);
        ++dropped;
      }
      if (queued_bytes_ + bytes > options_.demotion_queue_bytes) {
        ++dropped;
        continue;
      }
      queued_bytes_ += bytes;
      order_.push_back(page->key);
      queued_.emplace(page->key, std::move(page));
    }
  }
  queue_cv_.notify_all();  // the writer, and FlushDemotions callers share the variable
  if (dropped > 0) {
    std::lock_guard<std::mutex> lock(mu_);
    demotions_dropped_ += dropped;
  }
}

void KvCache::DemotionLoop() {
  std::unique_lock<std::mutex> lock(queue_mu_);
  while (true) {
    queue_cv_.wait(lock, [this] { return stop_ || !order_.empty(); });
    if (order_.empty()) return;  // stopping, and everything queued is written
    const PageKey key = order_.front();
    order_.pop_front();
    auto it = queued_.find(key);
    if (it == queued_.end()) continue;
    std::shared_ptr<const Page> page = it->second;
    writing_ = key;
    writing_deleted_ = false;
    lock.unlock();

    absl::StatusOr<DiskTier::InsertResult> r = disk_->Insert(*page);
    if (r.ok() && *r == DiskTier::InsertResult::kInserted) {
      CountDiskWrite(*page, /*demotion=*/true);
    } else if (!r.ok()) {
      if (absl::IsUnavailable(r.status())) CountDiskError("insert");
      std::lock_guard<std::mutex> counters(mu_);
      ++demotions_dropped_;
    }

    lock.lock();
    if (writing_deleted_ && r.ok()) {
      // Deleted while being written: the delete may have run before the write landed.
      lock.unlock();
      if (!disk_->Erase(key).ok()) CountDiskError("erase");
      lock.lock();
    }
    writing_.reset();  // only now: FlushDemotions waits for the erase too
    it = queued_.find(key);
    if (it != queued_.end() && it->second == page) {  // else replaced or deleted meanwhile
      queued_bytes_ -= page->StoredBytes();
      queued_.erase(it);
    }
    queue_cv_.notify_all();  // FlushDemotions
    // The queue's reference is gone: the last one may free a page of megabytes (munmap), which
    // must not hold up the gets and evictions that take queue_mu_.
    lock.unlock();
    page.reset();
    lock.lock();
  }
}

void KvCache::FlushDemotions() {
  std::unique_lock<std::mutex> lock(queue_mu_);
  queue_cv_.wait(lock, [this] { return queued_.empty() && !writing_.has_value(); });
}

void KvCache::CountDiskWrite(const Page& page, bool demotion) {
  std::lock_guard<std::mutex> lock(mu_);
  Counters& c = counters_[page.tenant];
  c.disk_written_bytes += DiskTier::DiskBytes(page);
  c.demotions += demotion;
}

void KvCache::CountDiskError(const char* op) {
  std::lock_guard<std::mutex> lock(mu_);
  ++disk_errors_[op];
}

absl::StatusOr<uint32_t> KvCache::Delete(absl::string_view tenant, absl::string_view model_id,
                                         std::span<const uint32_t> tokens,
                                         uint32_t first_page) {
  auto prefix = Resolve(tenant, model_id, tokens);
  if (!prefix.ok()) return prefix.status();
  if (first_page >= prefix->keys.size()) {
    return absl::InvalidArgumentError(absl::StrCat("first_page: ", first_page,
                                                   " but tokens hold ", prefix->keys.size(),
                                                   " whole pages"));
  }
  std::vector<bool> found(prefix->keys.size(), false);
  {
    std::lock_guard<std::mutex> move_lock(move_mu_);
    ++deletions_;
    std::lock_guard<std::mutex> lock(queue_mu_);
    for (size_t i = first_page; i < prefix->keys.size(); ++i) {
      const PageKey& key = prefix->keys[i];
      found[i] = host_.Erase(key);
      if (auto it = queued_.find(key); it != queued_.end()) {
        queued_bytes_ -= it->second->StoredBytes();
        queued_.erase(it);
        found[i] = true;
      }
      if (writing_ == key) writing_deleted_ = true;
    }
  }
  uint32_t deleted = 0;
  for (size_t i = first_page; i < prefix->keys.size(); ++i) {
    if (disk_ != nullptr) {
      absl::StatusOr<bool> erased = disk_->Erase(prefix->keys[i]);
      if (!erased.ok()) {
        CountDiskError("erase");
        return erased.status();
      }
      found[i] = found[i] || *erased;
    }
    deleted += found[i];
  }
  queue_cv_.notify_all();  // FlushDemotions waits on queued_
  return deleted;
}

absl::StatusOr<ExplainResult> KvCache::Explain(absl::string_view tenant,
                                               absl::string_view model_id,
                                               std::span<const uint32_t> tokens) const {
  ExplainResult r;
  auto prefix = Resolve(tenant, model_id, tokens);
  if (!prefix.ok()) {
    if (!absl::IsNotFound(prefix.status())) return prefix.status();
    r.reason = ExplainResult::Reason::kUnknownModel;
    r.detail = std::string(prefix.status().message());
    return r;
  }
  r.keys = prefix->keys;
  const uint32_t page_tokens = prefix->model->geometry.page_tokens;
  // Explain must not reorder the LRU: it observes, it does not announce a get.
  while (r.first_missing_page < r.keys.size() &&
         Find(r.keys[r.first_missing_page])) {
    ++r.first_missing_page;
  }
  r.hit_tokens = uint64_t{r.first_missing_page} * page_tokens;
  if (r.first_missing_page < r.keys.size()) {
    const bool removed = host_.WasRemoved(r.keys[r.first_missing_page]);
    r.reason = removed ? ExplainResult::Reason::kEvicted : ExplainResult::Reason::kAbsent;
    r.detail = absl::StrCat("page ", r.first_missing_page, " (tokens ",
                            r.first_missing_page * page_tokens, "..",
                            (r.first_missing_page + 1) * page_tokens - 1, ") ",
                            removed ? "was stored and has since been evicted or deleted"
                                    : "was never stored for this tenant and model");
  } else if (tokens.size() % page_tokens != 0) {
    r.reason = ExplainResult::Reason::kPartialPage;
    r.detail = absl::StrCat("all ", r.keys.size(), " whole pages are stored; the last ",
                            tokens.size() % page_tokens, " tokens do not fill a page of ",
                            page_tokens, " and are never cached");
  } else {
    r.reason = ExplainResult::Reason::kAllHit;
    r.detail = absl::StrCat("all ", r.keys.size(), " pages are stored");
  }
  return r;
}

TenantStats KvCache::Stats(absl::string_view tenant) const {
  const std::string id(tenant);
  TenantStats s;
  auto host = host_.UsageByTenant();
  if (auto it = host.find(id); it != host.end()) s.host = it->second;
  s.host_quota = host_.Quota(id);
  if (disk_ != nullptr) {
    auto disk = disk_->UsageByTenant();
    if (auto it = disk.find(id); it != disk.end()) s.disk = it->second;
    s.disk_quota = disk_->Quota(id);
  }
  std::lock_guard<std::mutex> lock(mu_);
  AddCountersLocked(id, s);
  return s;
}

std::map<std::string, TenantStats> KvCache::AllStats() const {
  std::map<std::string, TenantStats> out;
  for (auto& [tenant, usage] : host_.UsageByTenant()) {
    out[tenant].host = usage;
    out[tenant].host_quota = host_.Quota(tenant);
  }
  if (disk_ != nullptr) {
    for (auto& [tenant, usage] : disk_->UsageByTenant()) {
      out[tenant].disk = usage;
      out[tenant].disk_quota = disk_->Quota(tenant);
    }
  }
  std::lock_guard<std::mutex> lock(mu_);
  for (const auto& [tenant, c] : counters_) AddCountersLocked(tenant, out[tenant]);
  return out;
}

void KvCache::AddCountersLocked(const std::string& tenant, TenantStats& s) const {
  auto it = counters_.find(tenant);
  if (it == counters_.end()) return;
  const Counters& c = it->second;
  s.lookups = c.lookups;
  s.hit_tokens = c.hit_tokens;
  s.miss_tokens = c.miss_tokens;
  s.demotions = c.demotions;
  s.promotions = c.promotions;
  s.disk_written_bytes = c.disk_written_bytes;
  s.disk_read_bytes = c.disk_read_bytes;
}

DiskStats KvCache::disk_stats() const {
  DiskStats s;
  if (disk_ != nullptr) {
    s.checksum_failures = disk_->checksum_failures();
  }
  {
    std::lock_guard<std::mutex> lock(queue_mu_);
    s.queued_bytes = queued_bytes_;
  }
  std::lock_guard<std::mutex> lock(mu_);
  s.errors = disk_errors_;
  s.demotions_dropped = demotions_dropped_;
  return s;
}

void KvCache::SetPolicy(const std::string& tenant, const TenantPolicy& policy) {
  std::lock_guard<std::mutex> lock(mu_);
  policies_[tenant] = policy;
}

TenantPolicy KvCache::Policy(absl::string_view tenant) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = policies_.find(tenant);
  return it == policies_.end() ? TenantPolicy{} : it->second;
}

std::map<std::string, TenantPolicy> KvCache::Policies() const {
  std::lock_guard<std::mutex> lock(mu_);
  return {policies_.begin(), policies_.end()};
}

}  // namespace slimkv::cache
