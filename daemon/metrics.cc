#include "daemon/metrics.h"

#include <exception>

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
};

// Turns the cache's own accounting into metric families at scrape time.
class Metrics::CacheCollector : public prometheus::Collectable {
 public:
  explicit CacheCollector(cache::KvCache* cache) : cache_(cache) {}

  std::vector<prometheus::MetricFamily> Collect() const override {
    using prometheus::MetricType;
    auto family = [](std::string name, std::string help, MetricType type) {
      prometheus::MetricFamily f;
      f.name = std::move(name);
      f.help = std::move(help);
      f.type = type;
      return f;
    };
    auto stored_bytes = family("slimkv_stored_bytes",
                               "Bytes the cached pages occupy, payload plus per-page overhead.",
                               MetricType::Gauge);
    auto stored_pages = family("slimkv_stored_pages", "Cached pages.", MetricType::Gauge);
    auto logical_bytes = family("slimkv_logical_bytes",
                                "Bytes the cached pages would occupy stored in full mode.",
                                MetricType::Gauge);
    auto evictions = family("slimkv_evictions_total", "Pages evicted to make room.",
                            MetricType::Counter);
    auto lookups = family("slimkv_lookups_total", "Lookup calls.", MetricType::Counter);
    auto hit_tokens = family("slimkv_hit_tokens_total",
                             "Prompt tokens that lookups found cached.", MetricType::Counter);
    auto miss_tokens = family("slimkv_miss_tokens_total",
                              "Prompt tokens that lookups did not find cached.",
                              MetricType::Counter);
    auto budget = family("slimkv_tier_budget_bytes", "Byte budget of each tier.",
                         MetricType::Gauge);
    auto models = family("slimkv_registered_models", "Models registered.", MetricType::Gauge);
    auto quota = family("slimkv_quota_bytes",
                        "Per-tenant byte quota of each tier (tenants without one: absent).",
                        MetricType::Gauge);
    auto demotions = family("slimkv_demotions_total",
                            "Pages written to the disk tier when the host tier evicted them.",
                            MetricType::Counter);
    auto promotions = family("slimkv_promotions_total",
                             "Pages read from the disk tier back into the host tier by a get.",
                             MetricType::Counter);
    auto disk_written = family("slimkv_disk_written_bytes_total",
                               "Record bytes written to the disk tier.", MetricType::Counter);
    auto disk_read = family("slimkv_disk_read_bytes_total",
                            "Record bytes read from the disk tier.", MetricType::Counter);
    auto checksum_failures = family(
        "slimkv_checksum_failures_total",
        "Stored records that failed their checksum; each was dropped, never served.",
        MetricType::Counter);
    auto disk_errors = family("slimkv_disk_errors_total",
                              "Disk tier operations that failed with an I/O error.",
                              MetricType::Counter);
    auto demotions_dropped = family(
        "slimkv_demotions_dropped_total",
        "Host-evicted pages never written to disk: demotion queue full, or no room for them.",
        MetricType::Counter);
    auto demotion_queue = family("slimkv_demotion_queue_bytes",
                                 "Bytes of evicted pages waiting for the disk writer.",
                                 MetricType::Gauge);

    auto add = [](prometheus::MetricFamily& f, std::vector<prometheus::ClientMetric::Label> labels,
                  double value) {
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
        add(stored_bytes, labels, u.stored_bytes);
        add(stored_pages, labels, u.pages);
        add(logical_bytes, labels, u.logical_bytes);
        add(evictions, labels, u.evictions);
        if (q.bytes != 0) add(quota, labels, q.bytes);
      };
      add_tier("host", s.host, s.host_quota);
      if (has_disk) add_tier("disk", s.disk, s.disk_quota);
      add(lookups, {{"tenant", tenant}}, s.lookups);
      add(hit_tokens, {{"tenant", tenant}}, s.hit_tokens);
      add(miss_tokens, {{"tenant", tenant}}, s.miss_tokens);
      if (has_disk) {
        add(demotions, {{"tenant", tenant}}, s.demotions);
        add(promotions, {{"tenant", tenant}}, s.promotions);
        add(disk_written, {{"tenant", tenant}}, s.disk_written_bytes);
        add(disk_read, {{"tenant", tenant}}, s.disk_read_bytes);
      }
    }
    add(budget, {{"tier", "host"}}, cache_->host().budget_bytes());
    add(models, {}, cache_->models().size());
    std::vector<prometheus::MetricFamily> out;
    if (has_disk) {
      const cache::DiskStats d = cache_->disk_stats();
      add(budget, {{"tier", "disk"}}, cache_->disk()->budget_bytes());
      add(checksum_failures, {{"tier", "disk"}}, d.checksum_failures);
      for (const char* op : {"insert", "read", "erase"}) {
        auto it = d.errors.find(op);
        add(disk_errors, {{"op", op}}, it == d.errors.end() ? 0 : it->second);
      }
      add(demotions_dropped, {}, d.demotions_dropped);
      add(demotion_queue, {}, d.queued_bytes);
      for (auto* f : {&demotions, &promotions, &disk_written, &disk_read, &checksum_failures,
                      &disk_errors, &demotions_dropped, &demotion_queue}) {
        out.push_back(std::move(*f));
      }
    }
    for (auto* f : {&stored_bytes, &stored_pages, &logical_bytes, &evictions, &lookups,
                    &hit_tokens, &miss_tokens, &budget, &models, &quota}) {
      out.push_back(std::move(*f));
    }
    return out;
  }

 private:
  cache::KvCache* const cache_;
};

absl::StatusOr<std::unique_ptr<Metrics>> Metrics::Create(absl::string_view listen,
                                                         cache::KvCache* cache) {
  std::unique_ptr<Metrics> m(new Metrics());
  // prometheus-cpp reports bad names and bind failures by throwing: this is the one place
  // metrics are built, so it is the one place that catches.
  try {
    m->registry_ = std::make_shared<prometheus::Registry>();
    auto& r = *m->registry_;
    m->families_.reset(new Families{
        prometheus::BuildCounter()
            .Name("slimkv_rpcs_total")
            .Help("Finished RPCs by tenant, method and gRPC status code.")
            .Register(r),
        prometheus::BuildHistogram()
            .Name("slimkv_rpc_duration_seconds")
            .Help("Time from an RPC's start to its final status, by tenant and method.")
            .Register(r),
        prometheus::BuildCounter()
            .Name("slimkv_payload_bytes_total")
            .Help("Tensor bytes received by Put (direction=in) and sent by Get (out).")
            .Register(r),
        prometheus::BuildCounter()
            .Name("slimkv_fallbacks_total")
            .Help("Page layers stored in full although another mode was asked for, by tenant, "
                  "requested mode and reason.")
            .Register(r),
        prometheus::BuildHistogram()
            .Name("slimkv_reconstruction_relative_error")
            .Help("Relative Frobenius error of a layer's reconstruction measured at put, by "
                  "tenant, mode and quantizer (the larger of K's and V's).")
            .Register(r),
        prometheus::BuildHistogram()
            .Name("slimkv_reconstruction_duration_seconds")
            .Help("Time to reconstruct one page layer into the engine layout, by tenant and "
                  "stored mode.")
            .Register(r),
        prometheus::BuildCounter()
            .Name("slimkv_kernel_dispatches_total")
            .Help("Codec calls by device (cpu, gpu), operation and mode.")
            .Register(r),
    });
    m->cache_collector_ = std::make_shared<CacheCollector>(cache);
    m->exposer_ = std::make_unique<prometheus::Exposer>(std::string(listen));
    m->exposer_->RegisterCollectable(m->registry_);
    m->exposer_->RegisterCollectable(m->cache_collector_);
  } catch (const std::exception& e) {
    return absl::UnavailableError(absl::StrCat("metrics_listen: ", listen, ": ", e.what()));
  }
  return m;
}

Metrics::~Metrics() = default;

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

void Metrics::RecordReconstruction(absl::string_view tenant, cache::Mode mode, double seconds) {
  families_->reconstruction_seconds
      .Add({{"tenant", std::string(tenant)}, {"mode", cache::ModeName(mode)}}, kCodecBuckets)
      .Observe(seconds);
  families_->dispatches
      .Add({{"device", "cpu"}, {"op", "decode"}, {"mode", cache::ModeName(mode)}})
      .Increment();
}

int Metrics::port() const { return exposer_->GetListeningPorts().front(); }

}  // namespace slimkv::daemon
