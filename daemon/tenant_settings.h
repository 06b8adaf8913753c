// TenantSettings: each tenant's policy and quotas as the cache applies them — the config's,
// overridden by what the Admin service set.
//
// Overrides persist in `data_dir/tenant_overrides.txtpb` (text-format slimkv.v1.TenantOverrides),
// replaced atomically (write, fsync, rename, fsync the directory) before a change is applied, so
// an acknowledged change survives a crash and a restart. A reload of the config (SIGHUP)
// replaces the config's part; overrides still win.
//
// Thread-safety: internally synchronized.
#pragma once

#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "cache/store/kv_cache.h"
#include "slimkv/v1/admin.pb.h"
#include "slimkv/v1/config.pb.h"

namespace slimkv::daemon {

class TenantSettings {
 public:
  // The config's settings with the overrides under config.data_dir on top (none when the file
  // is missing). INVALID_ARGUMENT naming the file when it cannot be parsed or holds a bad value;
  // overrides of tenants no longer configured are ignored (and kept in the file).
  [[nodiscard]] static absl::StatusOr<std::unique_ptr<TenantSettings>> Load(
      const v1::DaemonConfig& config);

  // Each tenant's disk quota in effect, for opening the disk tier (which evicts down to them).
  std::map<std::string, cache::TenantQuota> DiskQuotas() const;

  // Applies every tenant's settings to `cache`, and from then on every change. `cache` must
  // outlive this object. REQUIRES: called once, before Set and Reload.
  void ApplyTo(cache::KvCache* cache);

  // Every configured tenant ("default" when none is), with what is in effect; no stats.
  std::vector<v1::TenantInfo> List() const;

  // Changes a tenant's overrides (SetTenantRequest's rules), persists them, then applies them.
  // NOT_FOUND: tenant not configured; INVALID_ARGUMENT naming the field; UNAVAILABLE when the
  // file cannot be written (nothing changes).
  [[nodiscard]] absl::StatusOr<v1::SetTenantResponse> Set(const v1::SetTenantRequest& request);

  // Replaces the config's policies and quotas with `config`'s (finalized) and reapplies.
  void Reload(const v1::DaemonConfig& config);

 private:
  explicit TenantSettings(std::string path) : path_(std::move(path)) {}

  // The config's settings of each tenant, as overrides would state them.
  static std::map<std::string, v1::TenantOverride> FromConfig(const v1::DaemonConfig& config);
  v1::TenantInfo InfoLocked(const std::string& tenant) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void ApplyLocked(const std::string& tenant) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status PersistLocked(const std::map<std::string, v1::TenantOverride>& overrides) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const std::string path_;

  mutable std::mutex mu_;
  cache::KvCache* cache_ ABSL_GUARDED_BY(mu_) = nullptr;
  std::map<std::string, v1::TenantOverride> configured_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, v1::TenantOverride> overrides_ ABSL_GUARDED_BY(mu_);
};

}  // namespace slimkv::daemon
