#include "daemon/daemon.h"

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <system_error>

#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/health_check_service_interface.h>
#include <grpcpp/security/server_credentials.h>
#include <grpcpp/server_builder.h>
#include <google/protobuf/util/message_differencer.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "daemon/log.h"
#include "daemon/tls.h"
#include "kernels/gpu.h"

namespace slimkv::daemon {

namespace {

std::string Describe(const v1::TenantPolicy& p) {
  return absl::StrCat(v1::Mode_Name(p.mode()), " ", v1::Quant_Name(p.quant()),
                      " error_tolerance ", p.error_tolerance());
}

std::string DescribeQuota(const v1::TenantConfig& t) {
  return absl::StrCat("host ", t.host_quota_bytes(), " disk ", t.disk_quota_bytes(), " ",
                      v1::TenantConfig::OverQuota_Name(t.over_quota()));
}

// Collects the paths of the fields two configs differ in ("listen", "tenants[1].token_sha256").
class FieldPaths : public google::protobuf::util::MessageDifferencer::Reporter {
 public:
  using SpecificField = google::protobuf::util::MessageDifferencer::SpecificField;
  void ReportAdded(const google::protobuf::Message&, const google::protobuf::Message&,
                   const std::vector<SpecificField>& path) override {
    Add(path, " (added)");
  }
  void ReportDeleted(const google::protobuf::Message&, const google::protobuf::Message&,
                     const std::vector<SpecificField>& path) override {
    Add(path, " (removed)");
  }
  void ReportModified(const google::protobuf::Message&, const google::protobuf::Message&,
                      const std::vector<SpecificField>& path) override {
    Add(path, "");
  }
  const std::vector<std::string>& paths() const { return paths_; }

 private:
  void Add(const std::vector<SpecificField>& path, const char* what) {
    std::string p;
    for (const SpecificField& f : path) {
      if (f.field == nullptr) continue;
      absl::StrAppend(&p, p.empty() ? "" : ".", f.field->name());
      if (f.field->is_repeated()) {
        absl::StrAppend(&p, "[", f.new_index >= 0 ? f.new_index : f.index, "]");
      }
    }
    paths_.push_back(absl::StrCat(p, what));
  }
  std::vector<std::string> paths_;
};

// The fields of `next` that differ from `running` other than those Reload applies.
std::vector<std::string> FixedFieldChanges(v1::DaemonConfig running, v1::DaemonConfig next) {
  for (v1::DaemonConfig* c : {&running, &next}) {
    c->clear_default_policy();
    for (v1::TenantConfig& t : *c->mutable_tenants()) {
      t.clear_policy();
      t.clear_host_quota_bytes();
      t.clear_disk_quota_bytes();
      t.clear_over_quota();
    }
  }
  google::protobuf::util::MessageDifferencer differ;
  const auto* tenants = v1::DaemonConfig::descriptor()->FindFieldByName("tenants");
  differ.TreatAsMap(tenants, v1::TenantConfig::descriptor()->FindFieldByName("id"));
  FieldPaths paths;
  differ.ReportDifferencesTo(&paths);
  differ.Compare(running, next);
  return paths.paths();
}

// The GPU tier when the device can serve Attend and Get, else null; logs one line saying which.
std::unique_ptr<cache::GpuTier> MakeGpuTier(uint64_t budget_bytes) {
  const kernels::gpu::DeviceInfo& gpu = kernels::gpu::Device();
  if (!gpu.usable) {
    LogInfo("GPU: not used (", gpu.reason, "); Attend and Get run on the CPU");
    return nullptr;
  }
  const std::string device = absl::StrCat(gpu.name, " (", gpu.sm_count, " SMs, ",
                                          gpu.memory_bytes, " bytes)");
  if (absl::Status s = kernels::gpu::SelfTest(); !s.ok()) {
    LogWarning("GPU: ", device, " failed its self-test, not used (", s.message(),
               "); Attend and Get run on the CPU");
    return nullptr;
  }
  if (budget_bytes == 0) {
    LogInfo("GPU: ", device, " passed its self-test; gpu_budget_bytes is 0, so Attend and Get "
            "run on the CPU");
    return nullptr;
  }
  LogInfo("GPU: ", device, " passed its self-test; GPU tier budget ", budget_bytes, " bytes");
  return std::make_unique<cache::GpuTier>(budget_bytes);
}

}  // namespace

absl::StatusOr<std::unique_ptr<Daemon>> Daemon::Start(const v1::DaemonConfig& config) {
  std::unique_ptr<Daemon> d(new Daemon());
  {
    std::lock_guard<std::mutex> lock(d->reload_mu_);
    d->config_ = config;
  }

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
  auto settings = TenantSettings::Load(config);
  if (!settings.ok()) return settings.status();
  d->settings_ = *std::move(settings);
  std::unique_ptr<cache::DiskTier> disk;
  if (!config.disk().disabled()) {
    auto opened = cache::DiskTier::Open(
        {.path = (std::filesystem::path(config.data_dir()) / "pages").string(),
         .budget_bytes = config.disk().budget_bytes(),
         .sync = config.disk().sync(),
         .quotas = d->settings_->DiskQuotas()});
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
  d->settings_->ApplyTo(d->cache_.get());
  d->auth_ = std::make_unique<Authenticator>(config);

  d->gpu_ = MakeGpuTier(config.gpu_budget_bytes());

  auto metrics = Metrics::Create(config.metrics_listen(), d->cache_.get(), d->gpu_.get());
  if (!metrics.ok()) return metrics.status();
  d->metrics_ = *std::move(metrics);
  d->service_ = std::make_unique<CacheService>(d->cache_.get(), d->auth_.get(),
                                               d->metrics_.get(), config.get_chunk_bytes(),
                                               config.verify_one_in(), d->gpu_.get());

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

absl::Status Daemon::Reload(const absl::StatusOr<v1::DaemonConfig>& next) {
  if (!next.ok()) {
    LogError("config reload refused, keeping the running policies and quotas: ",
             next.status().message());
    metrics_->RecordReload(false);
    return next.status();
  }
  std::lock_guard<std::mutex> lock(reload_mu_);
  if (const std::vector<std::string> ignored = FixedFieldChanges(config_, *next);
      !ignored.empty()) {
    LogWarning("config reload: ignored until restart (only tenant policies and quotas reload): ",
               absl::StrJoin(ignored, ", "));
  }
  v1::DaemonConfig applied = config_;
  std::vector<std::string> changes;
  if (Describe(applied.default_policy()) != Describe(next->default_policy())) {
    if (applied.tenants().empty()) {
      changes.push_back(absl::StrCat("default_policy ", Describe(applied.default_policy()),
                                     " -> ", Describe(next->default_policy())));
    }
    *applied.mutable_default_policy() = next->default_policy();
  }
  for (v1::TenantConfig& t : *applied.mutable_tenants()) {
    const auto n = std::find_if(next->tenants().begin(), next->tenants().end(),
                                [&](const v1::TenantConfig& n) { return n.id() == t.id(); });
    if (n == next->tenants().end()) continue;  // removed: reported above, kept as it runs
    if (Describe(t.policy()) != Describe(n->policy())) {
      changes.push_back(absl::StrCat("tenant ", t.id(), " policy ", Describe(t.policy()), " -> ",
                                     Describe(n->policy())));
    }
    if (DescribeQuota(t) != DescribeQuota(*n)) {
      changes.push_back(absl::StrCat("tenant ", t.id(), " quotas ", DescribeQuota(t), " -> ",
                                     DescribeQuota(*n)));
    }
    *t.mutable_policy() = n->policy();
    t.set_host_quota_bytes(n->host_quota_bytes());
    t.set_disk_quota_bytes(n->disk_quota_bytes());
    t.set_over_quota(n->over_quota());
  }
  settings_->Reload(applied);
  config_ = std::move(applied);
  metrics_->RecordReload(true);
  LogInfo("config reloaded: ",
          changes.empty() ? std::string("no policy or quota changed") : absl::StrJoin(changes, "; "));
  return absl::OkStatus();
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
