#include "daemon/metrics.h"

#include <exception>
#include <iterator>
#include <stdexcept>

#include <prometheus/collectable.h>
#include <prometheus/counter.h>
#include <prometheus/exposer.h>
#include <prometheus/family.h>
#include <prometheus/histogram.h>
#include <prometheus/metric_family.h>
#include <prometheus/registry.h>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace slimkv::daemon {

namespace {

using prometheus::MetricType;

// Every metric slimkvd exports, in one list: the enum names them in code, kMetrics gives each
// its exported name, type and help (docs/metrics.md documents each with its labels).
enum class Id {
  // Recorded as things happen: prometheus-cpp families in the registry.
  kRpcs,
  kRpcSeconds,
  kPayloadBytes,
  kFallbacks,
  kRelativeError,
  kReconstructionSeconds,
  kDispatches,
  kKernelFallbacks,
  kTierHitTokens,
  kServedLayers,
  kConfigReloads,
  // Read from the cache's own accounting at scrape time: CacheCollector.
  kStoredBytes,
  kStoredPages,
  kLogicalBytes,
  kModeStoredBytes,
  kModeLogicalBytes,
  kEvictions,
  kLookups,
  kHitTokens,
  kMissTokens,
  kBudget,
  kQuota,
  kErrorTolerance,
  kPolicyInfo,
  kRegisteredModels,
  kPutInflightBytes,
  kGpuMemoryUsed,
  kDemotions,
  kPromotions,
  kDiskWrittenBytes,
  kDiskReadBytes,
  kChecksumFailures,
  kDiskErrors,
  kDemotionsDropped,
  kDemotionQueueBytes,
  kCount
};

struct Def {
  Id id;
  const char* name;
  MetricType type;
  const char* help;
};

constexpr Def kMetrics[] = {
    {Id::kRpcs, "slimkv_rpcs_total", MetricType::Counter,
     "Finished RPCs by tenant, method and gRPC status code."},
    {Id::kRpcSeconds, "slimkv_rpc_duration_seconds", MetricType::Histogram,
     "Time from an RPC's start to its final status, by tenant and method."},
    {Id::kPayloadBytes, "slimkv_payload_bytes_total", MetricType::Counter,
     "Tensor bytes received by Put (direction=in) and sent by Get (out)."},
    {Id::kFallbacks, "slimkv_fallbacks_total", MetricType::Counter,
     "Page layers stored in full although another mode was asked for, by tenant, requested "
     "mode and reason."},
    {Id::kRelativeError, "slimkv_reconstruction_relative_error", MetricType::Histogram,
     "Relative Frobenius error of a layer's reconstruction measured at put, by tenant, mode and "
     "quantizer (the larger of K's and V's)."},
    {Id::kReconstructionSeconds, "slimkv_reconstruction_duration_seconds", MetricType::Histogram,
     "Time to reconstruct one page layer into the engine layout, by tenant and stored mode."},
    {Id::kDispatches, "slimkv_kernel_dispatches_total", MetricType::Counter,
     "Codec and attention kernel calls by device (cpu, gpu), operation (encode, decode, "
     "attend) and mode."},
    {Id::kKernelFallbacks, "slimkv_kernel_fallbacks_total", MetricType::Counter,
     "Kernel calls run on the CPU although the GPU path was tried first, by operation (attend, "
     "decode) and reason (no_gpu, unsupported, error, no_room)."},
    {Id::kTierHitTokens, "slimkv_tier_hit_tokens_total", MetricType::Counter,
     "Prompt tokens that lookups found cached, by tenant and the tier holding their page."},
    {Id::kServedLayers, "slimkv_served_layers_total", MetricType::Counter,
     "Page layers Get returned, by tenant, the tier the page came from, and the layer's stored "
     "mode and quantizer."},
    {Id::kConfigReloads, "slimkv_config_reloads_total", MetricType::Counter,
     "Config reloads on SIGHUP by result (ok: policies and quotas applied; error: the file was "
     "refused and the running ones kept)."},
    {Id::kStoredBytes, "slimkv_stored_bytes", MetricType::Gauge,
     "Bytes the cached pages occupy, payload plus per-page overhead."},
    {Id::kStoredPages, "slimkv_stored_pages", MetricType::Gauge, "Cached pages."},
    {Id::kLogicalBytes, "slimkv_logical_bytes", MetricType::Gauge,
     "Bytes the cached pages would occupy stored in full mode."},
    {Id::kModeStoredBytes, "slimkv_mode_stored_bytes", MetricType::Gauge,
     "Payload bytes of the cached page layers by stored mode and quantizer (no page overhead)."},
    {Id::kModeLogicalBytes, "slimkv_mode_logical_bytes", MetricType::Gauge,
     "Bytes the cached page layers of each stored mode and quantizer would occupy in full mode."},
    {Id::kEvictions, "slimkv_evictions_total", MetricType::Counter,
     "Pages evicted to make room."},
    {Id::kLookups, "slimkv_lookups_total", MetricType::Counter, "Lookup calls."},
    {Id::kHitTokens, "slimkv_hit_tokens_total", MetricType::Counter,
     "Prompt tokens that lookups found cached."},
    {Id::kMissTokens, "slimkv_miss_tokens_total", MetricType::Counter,
     "Prompt tokens that lookups did not find cached."},
    {Id::kBudget, "slimkv_tier_budget_bytes", MetricType::Gauge, "Byte budget of each tier."},
    {Id::kQuota, "slimkv_quota_bytes", MetricType::Gauge,
     "Per-tenant byte quota of each tier (tenants without one: absent)."},
    {Id::kErrorTolerance, "slimkv_error_tolerance", MetricType::Gauge,
     "Relative error a tenant's stored layers may add (its policy's error_tolerance)."},
    {Id::kPolicyInfo, "slimkv_tenant_policy_info", MetricType::Gauge,
     "A tenant's storage policy: always 1, labelled with its mode and quantizer."},
    {Id::kRegisteredModels, "slimkv_registered_models", MetricType::Gauge, "Models registered."},
    {Id::kPutInflightBytes, "slimkv_put_inflight_bytes", MetricType::Gauge,
     "Bytes of pages that Put streams are receiving (bounded by max_put_inflight_bytes)."},
    {Id::kGpuMemoryUsed, "slimkv_gpu_memory_used_bytes", MetricType::Gauge,
     "Device memory the GPU tier holds: resident pages and layer matrices (0: no GPU tier)."},
    {Id::kDemotions, "slimkv_demotions_total", MetricType::Counter,
     "Pages written to the disk tier when the host tier evicted them."},
    {Id::kPromotions, "slimkv_promotions_total", MetricType::Counter,
     "Pages read from the disk tier back into the host tier by a get."},
    {Id::kDiskWrittenBytes, "slimkv_disk_written_bytes_total", MetricType::Counter,
     "Record bytes written to the disk tier."},
    {Id::kDiskReadBytes, "slimkv_disk_read_bytes_total", MetricType::Counter,
     "Record bytes read from the disk tier."},
    {Id::kChecksumFailures, "slimkv_checksum_failures_total", MetricType::Counter,
     "Stored records that failed their checksum; each was dropped, never served."},
    {Id::kDiskErrors, "slimkv_disk_errors_total", MetricType::Counter,
     "Disk tier operations that failed with an I/O error, by operation."},
    {Id::kDemotionsDropped, "slimkv_demotions_dropped_total", MetricType::Counter,
     "Host-evicted pages never written to disk: demotion queue full, or no room for them."},
    {Id::kDemotionQueueBytes, "slimkv_demotion_queue_bytes", MetricType::Gauge,
     "Bytes of evicted pages waiting for the disk writer."},
};
static_assert(std::size(kMetrics) == static_cast<size_t>(Id::kCount));

constexpr bool InEnumOrder() {
  for (size_t i = 0; i < std::size(kMetrics); ++i) {
    if (kMetrics[i].id != static_cast<Id>(i)) return false;
  }
  return true;
}
static_assert(InEnumOrder(), "kMetrics must list the metrics in the order of Id");

const Def& DefOf(Id id) { return kMetrics[static_cast<size_t>(id)]; }

// RPC latency buckets: 50 µs to 10 s, about three per decade.
const prometheus::Histogram::BucketBoundaries kLatencyBuckets = {
    5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 1e-2, 2.5e-2, 5e-2,
    0.1,  0.25, 0.5,    1,    2.5,  5,      10};

// Relative error buckets: 1e-8 to 1, two per decade.
const prometheus::Histogram::BucketBoundaries kErrorBuckets = {
    1e-8, 3e-8, 1e-7, 3e-7, 1e-6, 3e-6, 1e-5, 3e-5, 1e-4, 3e-4,
    1e-3, 3e-3, 1e-2, 3e-2, 0.1,  0.3,  1};

// Per-layer reconstruction: 1 µs to 1 s.
const prometheus::Histogram::BucketBoundaries kCodecBuckets = {
    1e-6, 2.5e-6, 5e-6, 1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4,
    1e-3, 2.5e-3, 5e-3, 1e-2, 2.5e-2, 5e-2, 0.1,    0.25,   1};

// gRPC's canonical code names (OK, NOT_FOUND, ...), as the label value of `code`.
std::string CodeName(absl::StatusCode code) {
  std::string name = absl::StatusCodeToString(code);
  return name.empty() ? absl::StrCat(static_cast<int>(code)) : name;
}

}  // namespace

struct Metrics::Families {
  prometheus::Family<prometheus::Counter>& rpcs;
  prometheus::Family<prometheus::Histogram>& rpc_seconds;
  prometheus::Family<prometheus::Counter>& payload_bytes;
  prometheus::Family<prometheus::Counter>& fallbacks;
  prometheus::Family<prometheus::Histogram>& relative_error;
  prometheus::Family<prometheus::Histogram>& reconstruction_seconds;
  prometheus::Family<prometheus::Counter>& dispatches;
  prometheus::Family<prometheus::Counter>& kernel_fallbacks;
  prometheus::Family<prometheus::Counter>& tier_hit_tokens;
  prometheus::Family<prometheus::Counter>& served_layers;
  prometheus::Family<prometheus::Counter>& config_reloads;
};

// Turns the cache's own accounting into metric families at scrape time.
class Metrics::CacheCollector : public prometheus::Collectable {
 public:
  CacheCollector(cache::KvCache* cache, const cache::GpuTier* gpu) : cache_(cache), gpu_(gpu) {}

  std::vector<prometheus::MetricFamily> Collect() const override {
    std::vector<prometheus::MetricFamily> out;
    for (size_t i = static_cast<size_t>(Id::kStoredBytes); i < std::size(kMetrics); ++i) {
      prometheus::MetricFamily f;
      f.name = kMetrics[i].name;
      f.help = kMetrics[i].help;
      f.type = kMetrics[i].type;
      out.push_back(std::move(f));
    }
    auto add = [&out](Id id, std::vector<prometheus::ClientMetric::Label> labels, double value) {
      prometheus::MetricFamily& f = out[static_cast<size_t>(id) - static_cast<size_t>(Id::kStoredBytes)];
      prometheus::ClientMetric m;
      m.label = std::move(labels);
      (f.type == MetricType::Counter ? m.counter.value : m.gauge.value) = value;
      f.metric.push_back(std::move(m));
    };

    const bool has_disk = cache_->disk() != nullptr;
    for (const auto& [tenant, s] : cache_->AllStats()) {
      auto add_tier = [&](const char* tier, const cache::TenantUsage& u,
                          const cache::TenantQuota& q) {
        const std::vector<prometheus::ClientMetric::Label> labels = {{"tenant", tenant},
                                                                     {"tier", tier}};
        add(Id::kStoredBytes, labels, u.stored_bytes);
        add(Id::kStoredPages, labels, u.pages);
        add(Id::kLogicalBytes, labels, u.logical_bytes);
        add(Id::kEvictions, labels, u.evictions);
        if (q.bytes != 0) add(Id::kQuota, labels, q.bytes);
      };
      add_tier("host", s.host, s.host_quota);
      if (has_disk) add_tier("disk", s.disk, s.disk_quota);
      add(Id::kLookups, {{"tenant", tenant}}, s.lookups);
      add(Id::kHitTokens, {{"tenant", tenant}}, s.hit_tokens);
      add(Id::kMissTokens, {{"tenant", tenant}}, s.miss_tokens);
      if (has_disk) {
        add(Id::kDemotions, {{"tenant", tenant}}, s.demotions);
        add(Id::kPromotions, {{"tenant", tenant}}, s.promotions);
        add(Id::kDiskWrittenBytes, {{"tenant", tenant}}, s.disk_written_bytes);
        add(Id::kDiskReadBytes, {{"tenant", tenant}}, s.disk_read_bytes);
      }
    }
    if (has_disk) {
      const cache::DiskStats d = cache_->disk_stats();
      add(Id::kBudget, {{"tier", "disk"}}, cache_->disk()->budget_bytes());
      add(Id::kChecksumFailures, {{"tier", "disk"}}, d.checksum_failures);
      for (const char* op : {"insert", "read", "erase"}) {
        auto it = d.errors.find(op);
        add(Id::kDiskErrors, {{"op", op}}, it == d.errors.end() ? 0 : it->second);
      }
      add(Id::kDemotionsDropped, {}, d.demotions_dropped);
      add(Id::kDemotionQueueBytes, {}, d.queued_bytes);
    }
    for (const auto& [tenant, modes] : cache_->host().ModeUsageByTenant()) {
      for (const auto& [mode_quant, u] : modes) {
        const std::vector<prometheus::ClientMetric::Label> labels = {
            {"tenant", tenant},
            {"tier", "host"},
            {"mode", cache::ModeName(mode_quant.first)},
            {"quant", cache::QuantName(mode_quant.second)}};
        add(Id::kModeStoredBytes, labels, u.stored_bytes);
        add(Id::kModeLogicalBytes, labels, u.logical_bytes);
      }
    }
    for (const auto& [tenant, p] : cache_->Policies()) {
      add(Id::kErrorTolerance, {{"tenant", tenant}}, p.tolerance);
      add(Id::kPolicyInfo,
          {{"tenant", tenant}, {"mode", cache::ModeName(p.mode)}, {"quant", cache::QuantName(p.quant)}},
          1);
    }
    add(Id::kBudget, {{"tier", "host"}}, cache_->host().budget_bytes());
    add(Id::kRegisteredModels, {}, cache_->models().size());
    add(Id::kPutInflightBytes, {}, cache_->inflight_bytes());
    if (gpu_ != nullptr) {
      const cache::GpuTier::Stats g = gpu_->stats();
      add(Id::kBudget, {{"tier", "gpu"}}, g.budget_bytes);
      add(Id::kGpuMemoryUsed, {}, g.used_bytes);
    } else {
      add(Id::kGpuMemoryUsed, {}, 0);
    }
    return out;
  }

 private:
  cache::KvCache* const cache_;
  const cache::GpuTier* const gpu_;
};

absl::StatusOr<std::unique_ptr<Metrics>> Metrics::Create(absl::string_view listen,
                                                         cache::KvCache* cache,
                                                         const cache::GpuTier* gpu) {
  std::unique_ptr<Metrics> m(new Metrics());
  // prometheus-cpp reports bad names and bind failures by throwing: this is the one place
  // metrics are built, so it is the one place that catches.
  try {
    m->registry_ = std::make_shared<prometheus::Registry>();
    auto& r = *m->registry_;
    auto checked = [](Id id, MetricType type) -> const Def& {
      if (DefOf(id).type != type) {
        throw std::logic_error(absl::StrCat(DefOf(id).name, " is not declared with this type"));
      }
      return DefOf(id);
    };
    auto counter = [&](Id id) -> prometheus::Family<prometheus::Counter>& {
      const Def& d = checked(id, MetricType::Counter);
      return prometheus::BuildCounter().Name(d.name).Help(d.help).Register(r);
    };
    auto histogram = [&](Id id) -> prometheus::Family<prometheus::Histogram>& {
      const Def& d = checked(id, MetricType::Histogram);
      return prometheus::BuildHistogram().Name(d.name).Help(d.help).Register(r);
    };
    m->families_.reset(new Families{
        counter(Id::kRpcs),
        histogram(Id::kRpcSeconds),
        counter(Id::kPayloadBytes),
        counter(Id::kFallbacks),
        histogram(Id::kRelativeError),
        histogram(Id::kReconstructionSeconds),
        counter(Id::kDispatches),
        counter(Id::kKernelFallbacks),
        counter(Id::kTierHitTokens),
        counter(Id::kServedLayers),
        counter(Id::kConfigReloads),
    });
    // Both results exist from the start, so that an alert on failed reloads has a series.
    m->families_->config_reloads.Add({{"result", "ok"}});
    m->families_->config_reloads.Add({{"result", "error"}});
    // Every GPU fallback reason of Attend and Get exists from the start, so that a rate over them
    // has series.
    for (const char* op : {"attend", "decode"}) {
      for (cache::GpuFallback r : {cache::GpuFallback::kNoGpu, cache::GpuFallback::kUnsupported,
                                   cache::GpuFallback::kError, cache::GpuFallback::kNoRoom}) {
        m->families_->kernel_fallbacks.Add({{"op", op}, {"reason", cache::GpuFallbackName(r)}});
      }
    }
    m->cache_collector_ = std::make_shared<CacheCollector>(cache, gpu);
    m->exposer_ = std::make_unique<prometheus::Exposer>(std::string(listen));
    m->exposer_->RegisterCollectable(m->registry_);
    m->exposer_->RegisterCollectable(m->cache_collector_);
  } catch (const std::exception& e) {
    return absl::UnavailableError(absl::StrCat("metrics_listen: ", listen, ": ", e.what()));
  }
  return m;
}

Metrics::~Metrics() = default;

std::vector<std::string> Metrics::Names() {
  std::vector<std::string> names;
  for (const Def& d : kMetrics) names.push_back(d.name);
  return names;
}

void Metrics::RecordRpc(absl::string_view tenant, absl::string_view method,
                        absl::StatusCode code, double seconds) {
  const std::string t(tenant), meth(method);
  families_->rpcs.Add({{"tenant", t}, {"method", meth}, {"code", CodeName(code)}}).Increment();
  families_->rpc_seconds.Add({{"tenant", t}, {"method", meth}}, kLatencyBuckets).Observe(seconds);
}

void Metrics::RecordBytes(absl::string_view tenant, absl::string_view direction,
                          uint64_t bytes) {
  families_->payload_bytes
      .Add({{"tenant", std::string(tenant)}, {"direction", std::string(direction)}})
      .Increment(static_cast<double>(bytes));
}

void Metrics::RecordLayer(absl::string_view tenant, cache::Mode requested,
                          const cache::LayerOutcome& o) {
  const std::string t(tenant);
  if (o.fallback != cache::FallbackReason::kNone) {
    families_->fallbacks
        .Add({{"tenant", t},
              {"mode", cache::ModeName(requested)},
              {"reason", cache::FallbackReasonName(o.fallback)}})
        .Increment();
  }
  if (o.measured_error >= 0) {
    families_->relative_error
        .Add({{"tenant", t},
              {"mode", cache::ModeName(o.measured_mode)},
              {"quant", cache::QuantName(o.measured_quant)}},
             kErrorBuckets)
        .Observe(o.measured_error);
  }
  families_->dispatches
      .Add({{"device", "cpu"}, {"op", "encode"}, {"mode", cache::ModeName(o.stored)}})
      .Increment();
}

void Metrics::RecordFallbacks(absl::string_view tenant, cache::Mode requested,
                              absl::string_view reason, uint64_t layers) {
  families_->fallbacks
      .Add({{"tenant", std::string(tenant)},
            {"mode", cache::ModeName(requested)},
            {"reason", std::string(reason)}})
      .Increment(static_cast<double>(layers));
}

void Metrics::RecordKernelCall(const char* op, cache::Mode mode, cache::KernelDevice device,
                               cache::GpuFallback fallback) {
  families_->dispatches
      .Add({{"device", cache::KernelDeviceName(device)}, {"op", op}, {"mode", cache::ModeName(mode)}})
      .Increment();
  if (fallback != cache::GpuFallback::kNone) {
    families_->kernel_fallbacks.Add({{"op", op}, {"reason", cache::GpuFallbackName(fallback)}})
        .Increment();
  }
}

void Metrics::RecordReconstruction(absl::string_view tenant, cache::Mode mode,
                                   const cache::DecodeWhere& where, double seconds) {
  families_->reconstruction_seconds
      .Add({{"tenant", std::string(tenant)}, {"mode", cache::ModeName(mode)}}, kCodecBuckets)
      .Observe(seconds);
  RecordKernelCall("decode", mode, where.device, where.fallback);
}

void Metrics::RecordAttendCalls(const cache::AttendCalls& calls) {
  for (const cache::AttendRun& r : calls.runs) {
    RecordKernelCall("attend", r.mode, r.device, r.fallback);
  }
}

void Metrics::RecordLookupHits(absl::string_view tenant, std::span<const cache::Tier> page_tiers,
                               uint32_t page_tokens) {
  for (const cache::Tier tier : page_tiers) {
    families_->tier_hit_tokens
        .Add({{"tenant", std::string(tenant)}, {"tier", cache::TierName(tier)}})
        .Increment(page_tokens);
  }
}

void Metrics::RecordServedPage(absl::string_view tenant, cache::Tier tier,
                               const cache::Page& page) {
  for (const cache::StoredLayer& l : page.layers) {
    families_->served_layers
        .Add({{"tenant", std::string(tenant)},
              {"tier", cache::TierName(tier)},
              {"mode", cache::ModeName(l.mode)},
              {"quant", cache::QuantName(l.quant)}})
        .Increment();
  }
}

void Metrics::RecordReload(bool ok) {
  families_->config_reloads.Add({{"result", ok ? "ok" : "error"}}).Increment();
}

int Metrics::port() const { return exposer_->GetListeningPorts().front(); }

}  // namespace slimkv::daemon
