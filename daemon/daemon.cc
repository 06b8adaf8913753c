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
  options.demotion_queue_bytes = config.disk().demotion_queue_bytes();
  options.write_through = config.disk().sync() && !config.disk().disabled();
  std::unique_ptr<cache::DiskTier> disk;
  if (!config.disk().disabled()) {
    cache::DiskTierOptions o{.path = (std::filesystem::path(config.data_dir()) / "pages").string(),
                             .budget_bytes = config.disk().budget_bytes(),
                             .sync = config.disk().sync()};
    for (const v1::TenantConfig& t : config.tenants()) {
      o.quotas[t.id()] = {.bytes = t.disk_quota_bytes(),
                          .reject = t.over_quota() == v1::TenantConfig::OVER_QUOTA_REJECT};
    }
    auto opened = cache::DiskTier::Open(std::move(o));
    if (!opened.ok()) return opened.status();
    disk = *std::move(opened);
    const cache::DiskRebuildStats& r = disk->rebuild_stats();
    LogInfo("disk tier: ", r.records, " pages (", disk->used_bytes(), " bytes) indexed in ",
            r.seconds, " s; ", r.dropped, " records failed their check and were dropped, ",
            r.evicted, " evicted to fit the budget and quotas");
  }
  d->cache_ = std::make_unique<cache::KvCache>(options, std::move(disk));
  for (const v1::TenantConfig& t : config.tenants()) {
    if (!t.share_group().empty()) d->cache_->SetNamespace(t.id(), "group:" + t.share_group());
  }
  auto settings = TenantSettings::Load(config, d->cache_.get());
  if (!settings.ok()) return settings.status();
  d->settings_ = *std::move(settings);
  d->auth_ = std::make_unique<Authenticator>(config);

  auto metrics = Metrics::Create(config.metrics_listen(), d->cache_.get());
  if (!metrics.ok()) return metrics.status();
  d->metrics_ = *std::move(metrics);
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
  d->admin_ = std::make_unique<AdminService>(d->cache_.get(), d->settings_.get(), d->auth_.get(),
                                             d->metrics_.get());
  builder.RegisterService(d->admin_.get());
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
