#include "cache/kv_cache.h"

#include "absl/strings/str_cat.h"

namespace slimkv::cache {

KvCache::KvCache(const KvCacheOptions& options)
    : options_(options),
      models_(options.max_page_bytes, options.max_models, options.factor_dir, options.codec),
      host_(options.host) {}

absl::StatusOr<ResolvedPrefix> KvCache::Resolve(absl::string_view tenant,
                                                absl::string_view model_id,
                                                std::span<const uint32_t> tokens) const {
  Digest unused;
  if (!FromHex(model_id, &unused)) {
    return absl::InvalidArgumentError(
        absl::StrCat("model_id: expected 64 lower-case hex digits, got '",
                     model_id.substr(0, 80), "'"));
  }
  ResolvedPrefix out;
  out.model = models_.Find(model_id);
  if (out.model == nullptr) {
    return absl::NotFoundError(absl::StrCat("model_id: ", model_id, " is not registered"));
  }
  if (tokens.empty()) return absl::InvalidArgumentError("tokens: empty");
  if (tokens.size() > options_.max_tokens) {
    return absl::InvalidArgumentError(absl::StrCat("tokens: ", tokens.size(),
                                                   " tokens, over the limit of ",
                                                   options_.max_tokens));
  }
  out.keys = ChainPageKeys(RootKey(out.model->fingerprint, tenant), tokens,
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
    if (!host_.Touch(key)) break;
    result.tiers.push_back(Tier::kHost);
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
  return host_.Insert(std::move(page));
}

std::shared_ptr<const Page> KvCache::Get(const PageKey& key, Tier* tier) {
  *tier = Tier::kHost;
  return host_.Get(key);
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
  uint32_t deleted = 0;
  for (size_t i = first_page; i < prefix->keys.size(); ++i) deleted += host_.Erase(prefix->keys[i]);
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
         host_.Contains(r.keys[r.first_missing_page])) {
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
  TenantStats s;
  auto usage = host_.UsageByTenant();
  if (auto it = usage.find(std::string(tenant)); it != usage.end()) s.host = it->second;
  s.host_quota = host_.Quota(std::string(tenant));
  std::lock_guard<std::mutex> lock(mu_);
  if (auto it = counters_.find(tenant); it != counters_.end()) {
    s.lookups = it->second.lookups;
    s.hit_tokens = it->second.hit_tokens;
    s.miss_tokens = it->second.miss_tokens;
  }
  return s;
}

std::map<std::string, TenantStats> KvCache::AllStats() const {
  std::map<std::string, TenantStats> out;
  for (auto& [tenant, usage] : host_.UsageByTenant()) {
    out[tenant].host = usage;
    out[tenant].host_quota = host_.Quota(tenant);
  }
  std::lock_guard<std::mutex> lock(mu_);
  for (auto& [tenant, c] : counters_) {
    TenantStats& s = out[tenant];
    s.lookups = c.lookups;
    s.hit_tokens = c.hit_tokens;
    s.miss_tokens = c.miss_tokens;
  }
  return out;
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
