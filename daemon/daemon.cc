#include "daemon/daemon.h"

#include <chrono>
#include <filesystem>
#include <system_error>

#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/health_check_service_interface.h>
#include <grpcpp/security/server_credentials.h>
#include <grpcpp/server_builder.h>

#include "absl/strings/str_cat.h"
#include "daemon/log.h"

namespace slimkv::daemon {

absl::StatusOr<std::unique_ptr<Daemon>> Daemon::Start(const v1::DaemonConfig& config) {
  std::unique_ptr<Daemon> d(new Daemon());
  d->config_ = config;

  std::error_code ec;
  std::filesystem::create_directories(config.data_dir(), ec);
  if (ec) {
    return absl::PermissionDeniedError(
        absl::StrCat("data_dir: cannot create ", config.data_dir(), ": ", ec.message()));
  }

  cache::KvCacheOptions options;
  options.host.budget_bytes = config.host_budget_bytes();
  options.host.remembered_removals = config.explain_evicted_keys();
  options.max_page_bytes = config.max_page_bytes();
  options.max_models = config.max_models();
  options.max_put_inflight_bytes = config.max_put_inflight_bytes();
  d->cache_ = std::make_unique<cache::KvCache>(options);
  for (const v1::TenantConfig& t : config.tenants()) {
    d->cache_->host().SetQuota(
        t.id(), {.bytes = t.host_quota_bytes(),
                 .reject = t.over_quota() == v1::TenantConfig::OVER_QUOTA_REJECT});
  }
  d->auth_ = std::make_unique<Authenticator>(config);

  auto metrics = Metrics::Create(config.metrics_listen(), d->cache_.get());
  if (!metrics.ok()) return metrics.status();
  d->metrics_ = *std::move(metrics);
  d->service_ = std::make_unique<CacheService>(d->cache_.get(), d->auth_.get(),
                                               d->metrics_.get(), config.get_chunk_bytes());

  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  builder.AddListeningPort(config.listen(), grpc::InsecureServerCredentials(), &d->port_);
  builder.RegisterService(d->service_.get());
  builder.SetMaxReceiveMessageSize(static_cast<int>(config.max_message_bytes()));
  builder.SetMaxSendMessageSize(static_cast<int>(config.max_message_bytes()));
  d->server_ = builder.BuildAndStart();
  if (d->server_ == nullptr || d->port_ == 0) {
    return absl::UnavailableError(absl::StrCat("listen: cannot serve on ", config.listen()));
  }
  d->server_->GetHealthCheckService()->SetServingStatus(true);
  LogInfo("slimkvd serving slimkv.v1.Cache on port ", d->port_, ", metrics on port ",
          d->metrics_port(), ", host budget ", config.host_budget_bytes(), " bytes, ",
          config.tenants_size() == 0 ? std::string("no tenants configured (all calls are "
                                                   "tenant 'default', unauthenticated)")
                                     : absl::StrCat(config.tenants_size(), " tenants"));
  return d;
}

Daemon::~Daemon() {
  if (server_ == nullptr) return;
  Shutdown();
  server_->Wait();
}

void Daemon::Wait() { server_->Wait(); }

void Daemon::Shutdown() {
  if (stopping_.exchange(true)) return;
  server_->GetHealthCheckService()->SetServingStatus(false);
  server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(5));
}

}  // namespace slimkv::daemon
