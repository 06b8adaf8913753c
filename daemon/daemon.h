// Daemon: one running slimkvd — the cache, its metrics endpoint and the gRPC server (cache
// service, health checking, reflection) — assembled from a finalized DaemonConfig.
//
// Thread-safety: Shutdown() and Reload() may be called from any thread, any number of times;
// Wait() from one thread; the rest is constant after Start(). The server is destroyed only with
// the Daemon.
#pragma once

#include <atomic>
#include <memory>
#include <mutex>
#include <string>

#include <grpcpp/server.h>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "cache/codec/gpu_tier.h"
#include "cache/store/kv_cache.h"
#include "daemon/admin_service.h"
#include "daemon/auth.h"
#include "daemon/cache_service.h"
#include "daemon/metrics.h"
#include "daemon/tenant_settings.h"
#include "slimkv/v1/config.pb.h"

namespace slimkv::daemon {

class Daemon {
 public:
  // Builds everything and starts serving. UNAVAILABLE when an address cannot be bound or the
  // disk tier cannot be opened (another daemon holds data_dir); DATA_LOSS when RocksDB finds
  // its files corrupt; PERMISSION_DENIED when data_dir cannot be created; NOT_FOUND or
  // INVALID_ARGUMENT when a TLS file or the tenant overrides cannot be read or used.
  [[nodiscard]] static absl::StatusOr<std::unique_ptr<Daemon>> Start(
      const v1::DaemonConfig& config);
  ~Daemon();

  // Ports actually bound (differ from the config when it asked for port 0).
  int port() const { return port_; }
  int metrics_port() const { return metrics_->port(); }

  // Applies the tenant policies and quotas of `next` — the config as it would now be started
  // (file loaded, flags applied, Finalize'd) — to the running daemon, without dropping a page:
  //   - default_policy (when no tenants are configured) and each running tenant's policy
  //     (mode, quant, error_tolerance): puts from now on take them; stored pages keep the mode
  //     they were stored in;
  //   - each running tenant's host_quota_bytes, disk_quota_bytes and over_quota: checked at
  //     its next insert into that tier (a lowered quota evicts the tenant's own pages then, or
  //     refuses, as over_quota says).
  // What the Admin service set still wins over the file (TenantSettings).
  // Everything else is read at start-up only. A field that differs from the running config
  // there (listen, tls, budgets, a tenant added or removed, a token changed, ...) is named in a
  // warning and ignored until restart; the rest of `next` is still applied.
  // When `next` is an error (the file did not load or a value is bad), nothing changes and the
  // error is logged, naming the field. Every outcome is logged and counted
  // (slimkv_config_reloads_total). Returns `next`'s status.
  [[nodiscard]] absl::Status Reload(const absl::StatusOr<v1::DaemonConfig>& next);

  // Blocks until Shutdown().
  void Wait();
  // Stops accepting calls and lets calls in flight finish (up to 5 s); Wait() then returns.
  void Shutdown();

 private:
  Daemon() = default;

  std::mutex reload_mu_;
  // As started, with the policies and quotas of the last successful reload.
  v1::DaemonConfig config_ ABSL_GUARDED_BY(reload_mu_);
  std::unique_ptr<cache::KvCache> cache_;
  std::unique_ptr<cache::GpuTier> gpu_;  // null: no usable GPU, or gpu_budget_bytes 0
  std::unique_ptr<Authenticator> auth_;
  std::unique_ptr<Metrics> metrics_;
  std::unique_ptr<TenantSettings> settings_;
  std::unique_ptr<CacheService> service_;
  std::unique_ptr<AdminService> admin_;
  std::unique_ptr<grpc::Server> server_;
  int port_ = 0;
  std::atomic<bool> stopping_{false};
};

}  // namespace slimkv::daemon
