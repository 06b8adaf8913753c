#include "daemon/tenant_settings.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <google/protobuf/text_format.h>

#include "absl/strings/str_cat.h"
#include "daemon/auth.h"
#include "daemon/config.h"
#include "daemon/wire_enums.h"

namespace slimkv::daemon {
namespace {

cache::TenantPolicy ToCache(const v1::TenantPolicy& p) {
  return {.mode = FromWire(p.mode()),
          .quant = FromWire(p.quant()),
          .tolerance = p.error_tolerance()};
}

cache::TenantQuota QuotaOf(const v1::TenantQuotas& q, uint64_t bytes) {
  return {.bytes = bytes, .reject = q.over_quota() == v1::TenantConfig::OVER_QUOTA_REJECT};
}

absl::Status CheckQuotas(const std::string& field, v1::TenantQuotas* q) {
  if (q->over_quota() == v1::TenantConfig::OVER_QUOTA_UNSPECIFIED) {
    q->set_over_quota(v1::TenantConfig::OVER_QUOTA_EVICT_OWN);
  }
  if (!v1::TenantConfig::OverQuota_IsValid(q->over_quota())) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, ".over_quota: ", q->over_quota(), " is not an over-quota behaviour"));
  }
  return absl::OkStatus();
}

// Writes `text` to `path` so that a crash leaves either the old file or the new one.
absl::Status WriteFileAtomically(const std::string& path, const std::string& text) {
  const std::string tmp = path + ".tmp";
  auto fail = [&](const char* what) {
    return absl::UnavailableError(absl::StrCat(what, " ", tmp, ": ", std::strerror(errno)));
  };
  const int fd = open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return fail("cannot create");
  size_t done = 0;
  while (done < text.size()) {
    const ssize_t n = write(fd, text.data() + done, text.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      close(fd);
      return fail("cannot write");
    }
    done += static_cast<size_t>(n);
  }
  if (fsync(fd) != 0) {
    close(fd);
    return fail("cannot sync");
  }
  close(fd);
  if (rename(tmp.c_str(), path.c_str()) != 0) return fail("cannot rename");
  const std::string dir = std::filesystem::path(path).parent_path().string();
  const int dfd = open(dir.empty() ? "." : dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    fsync(dfd);
    close(dfd);
  }
  return absl::OkStatus();
}

}  // namespace

std::map<std::string, v1::TenantOverride> TenantSettings::FromConfig(
    const v1::DaemonConfig& config) {
  std::map<std::string, v1::TenantOverride> out;
  if (config.tenants().empty()) {
    v1::TenantOverride& t = out[kDefaultTenant];
    t.set_tenant(kDefaultTenant);
    *t.mutable_policy() = config.default_policy();
    t.mutable_quotas()->set_over_quota(v1::TenantConfig::OVER_QUOTA_EVICT_OWN);
  }
  for (const v1::TenantConfig& c : config.tenants()) {
    v1::TenantOverride& t = out[c.id()];
    t.set_tenant(c.id());
    *t.mutable_policy() = c.policy();
    v1::TenantQuotas& q = *t.mutable_quotas();
    q.set_host_quota_bytes(c.host_quota_bytes());
    q.set_disk_quota_bytes(c.disk_quota_bytes());
    q.set_over_quota(c.over_quota() == v1::TenantConfig::OVER_QUOTA_REJECT
                         ? v1::TenantConfig::OVER_QUOTA_REJECT
                         : v1::TenantConfig::OVER_QUOTA_EVICT_OWN);
  }
  return out;
}

absl::StatusOr<std::unique_ptr<TenantSettings>> TenantSettings::Load(
    const v1::DaemonConfig& config) {
  std::unique_ptr<TenantSettings> s(new TenantSettings(
      (std::filesystem::path(config.data_dir()) / "tenant_overrides.txtpb").string()));
  std::ifstream in(s->path_);
  if (in) {
    std::stringstream text;
    text << in.rdbuf();
    v1::TenantOverrides file;
    if (!google::protobuf::TextFormat::ParseFromString(text.str(), &file)) {
      return absl::InvalidArgumentError(
          absl::StrCat(s->path_, ": not a text-format slimkv.v1.TenantOverrides"));
    }
    for (v1::TenantOverride& o : *file.mutable_tenants()) {
      const std::string field = absl::StrCat(s->path_, ": tenant ", o.tenant());
      if (o.has_policy()) {
        if (absl::Status st = FinalizePolicy(field + " policy", o.mutable_policy()); !st.ok()) {
          return st;
        }
      }
      if (o.has_quotas()) {
        if (absl::Status st = CheckQuotas(field + " quotas", o.mutable_quotas()); !st.ok()) {
          return st;
        }
      }
      s->overrides_[o.tenant()] = std::move(o);
    }
  }
  s->Reload(config);
  return s;
}

std::map<std::string, cache::TenantQuota> TenantSettings::DiskQuotas() const {
  std::lock_guard<std::mutex> lock(mu_);
  std::map<std::string, cache::TenantQuota> out;
  for (const auto& [tenant, unused] : configured_) {
    const v1::TenantQuotas q = InfoLocked(tenant).quotas();
    out[tenant] = QuotaOf(q, q.disk_quota_bytes());
  }
  return out;
}

void TenantSettings::ApplyTo(cache::KvCache* cache) {
  std::lock_guard<std::mutex> lock(mu_);
  cache_ = cache;
  for (const auto& [tenant, unused] : configured_) ApplyLocked(tenant);
}

void TenantSettings::Reload(const v1::DaemonConfig& config) {
  std::lock_guard<std::mutex> lock(mu_);
  configured_ = FromConfig(config);
  for (const auto& [tenant, unused] : configured_) ApplyLocked(tenant);
}

v1::TenantInfo TenantSettings::InfoLocked(const std::string& tenant) const {
  v1::TenantInfo info;
  info.set_tenant(tenant);
  const v1::TenantOverride& base = configured_.at(tenant);
  *info.mutable_policy() = base.policy();
  *info.mutable_quotas() = base.quotas();
  if (auto it = overrides_.find(tenant); it != overrides_.end()) {
    info.set_overridden(true);
    if (it->second.has_policy()) *info.mutable_policy() = it->second.policy();
    if (it->second.has_quotas()) *info.mutable_quotas() = it->second.quotas();
  }
  return info;
}

void TenantSettings::ApplyLocked(const std::string& tenant) {
  if (cache_ == nullptr) return;  // not attached yet: ApplyTo applies everything
  const v1::TenantInfo info = InfoLocked(tenant);
  const v1::TenantQuotas& q = info.quotas();
  cache_->SetPolicy(tenant, ToCache(info.policy()));
  cache_->host().SetQuota(tenant, QuotaOf(q, q.host_quota_bytes()));
  if (cache_->disk() != nullptr) {
    cache_->disk()->SetQuota(tenant, QuotaOf(q, q.disk_quota_bytes()));
  }
}

std::vector<v1::TenantInfo> TenantSettings::List() const {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<v1::TenantInfo> out;
  for (const auto& [tenant, unused] : configured_) out.push_back(InfoLocked(tenant));
  return out;
}

absl::StatusOr<v1::SetTenantResponse> TenantSettings::Set(const v1::SetTenantRequest& request) {
  if (request.reset() && (request.has_policy() || request.has_quotas())) {
    return absl::InvalidArgumentError("reset: excludes policy and quotas");
  }
  v1::TenantOverride change;
  change.set_tenant(request.tenant());
  if (request.has_policy()) {
    *change.mutable_policy() = request.policy();
    if (absl::Status s = FinalizePolicy("policy", change.mutable_policy()); !s.ok()) return s;
  }
  if (request.has_quotas()) {
    *change.mutable_quotas() = request.quotas();
    if (absl::Status s = CheckQuotas("quotas", change.mutable_quotas()); !s.ok()) return s;
  }

  std::lock_guard<std::mutex> lock(mu_);
  if (!configured_.contains(request.tenant())) {
    return absl::NotFoundError(
        absl::StrCat("tenant: '", request.tenant().substr(0, 80), "' is not configured"));
  }
  v1::SetTenantResponse response;
  *response.mutable_previous() = InfoLocked(request.tenant());
  std::map<std::string, v1::TenantOverride> next = overrides_;
  if (request.reset()) {
    next.erase(request.tenant());
  } else {
    v1::TenantOverride& o = next[request.tenant()];
    o.set_tenant(request.tenant());
    if (change.has_policy()) *o.mutable_policy() = change.policy();
    if (change.has_quotas()) *o.mutable_quotas() = change.quotas();
  }
  if (absl::Status s = PersistLocked(next); !s.ok()) return s;
  overrides_ = std::move(next);
  ApplyLocked(request.tenant());
  *response.mutable_current() = InfoLocked(request.tenant());
  return response;
}

absl::Status TenantSettings::PersistLocked(
    const std::map<std::string, v1::TenantOverride>& overrides) const {
  v1::TenantOverrides file;
  for (const auto& [tenant, o] : overrides) *file.add_tenants() = o;
  std::string text =
      "# slimkvd: tenant policies and quotas set through the Admin service (slimkv.v1.\n"
      "# TenantOverrides). They win over the config file. Written by the daemon; use\n"
      "# `slimkv admin` to change them.\n";
  std::string body;
  google::protobuf::TextFormat::PrintToString(file, &body);
  return WriteFileAtomically(path_, text + body);
}

}  // namespace slimkv::daemon
