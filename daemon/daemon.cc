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
#include "daemon/tls.h"

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
  options.factor_dir = (std::filesystem::path(config.data_dir()) / "factors").string();
  options.codec.latent_rank =
      config.latent_rank() != 0
          ? kernels::RankRule{.fixed_rank = static_cast<int>(config.latent_rank())}
          : kernels::RankRule{.energy = config.latent_energy()};
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
  auto policy_of = [](const v1::TenantPolicy& p) {
    return cache::TenantPolicy{.mode = static_cast<cache::Mode>(p.mode()),
                               .quant = static_cast<cache::Quant>(p.quant()),
                               .tolerance = p.error_tolerance()};
  };
  d->cache_->SetPolicy(std::string(kDefaultTenant), policy_of(config.default_policy()));
  for (const v1::TenantConfig& t : config.tenants()) {
    d->cache_->SetPolicy(t.id(), policy_of(t.policy()));
  }
  d->service_ = std::make_unique<CacheService>(d->cache_.get(), d->auth_.get(),
                                               d->metrics_.get(), config.get_chunk_bytes(),
                                               config.verify_one_in());

  auto credentials = ListenerCredentials(config.tls());
  if (!credentials.ok()) return credentials.status();

  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  builder.AddListeningPort(config.listen(), *credentials, &d->port_);
  builder.RegisterService(d->service_.get());
  builder.SetMaxReceiveMessageSize(static_cast<int>(config.max_message_bytes()));
  builder.SetMaxSendMessageSize(static_cast<int>(config.max_message_bytes()));
  d->server_ = builder.BuildAndStart();
  if (d->server_ == nullptr || d->port_ == 0) {
    return absl::UnavailableError(absl::StrCat("listen: cannot serve on ", config.listen()));
  }
  d->server_->GetHealthCheckService()->SetServingStatus(true);
  if (config.tls().cert_file().empty() && !IsLoopbackListen(config.listen())) {
    LogWarning("listen: serving plaintext on non-loopback ", config.listen(),
               " (tls.allow_plaintext_non_loopback): tokens and pages cross the network in the "
               "clear");
  }
  const char* transport = config.tls().cert_file().empty()         ? "plaintext"
                          : config.tls().client_ca_file().empty() ? "TLS"
                                                                  : "mutual TLS";
  LogInfo("slimkvd serving slimkv.v1.Cache (", transport, ") on port ", d->port_,
          ", metrics on port ", d->metrics_port(), ", host budget ", config.host_budget_bytes(),
          " bytes, ",
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
