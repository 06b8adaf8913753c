#include "daemon/cache_service.h"

#include <memory>
#include <optional>
#include <string>

#include "absl/strings/str_cat.h"
#include "daemon/attend_handler.h"
#include "daemon/factors_handler.h"
#include "daemon/get_streamer.h"
#include "daemon/token_span.h"
#include "daemon/grpc_status.h"
#include "daemon/put_assembler.h"
#include "daemon/unary_call.h"
#include "daemon/wire_enums.h"

namespace slimkv::daemon {

namespace {

// Unary with the tenant authentication every Cache call takes.
template <typename Handler>
grpc::ServerUnaryReactor* TenantUnary(grpc::CallbackServerContext* ctx, const Authenticator& auth,
                                      Metrics* metrics, const char* method, Handler handler) {
  return Unary(
      ctx, [&](const auto& metadata) { return auth.Authenticate(metadata); }, metrics, method,
      std::move(handler));
}

v1::ModelGeometry ToProto(const cache::ModelConfig& c) {
  v1::ModelGeometry g;
  g.set_architecture(c.architecture);
  g.set_num_layers(c.num_layers);
  g.set_hidden_size(c.hidden_size);
  g.set_num_q_heads(c.num_q_heads);
  g.set_num_kv_heads(c.num_kv_heads);
  g.set_head_dim(c.k_head_dim);
  g.set_v_head_dim(c.v_head_dim);
  g.set_softmax_scale(c.softmax_scale);
  g.set_attn_logit_softcapping(c.attn_logit_softcapping);
  return g;
}

}  // namespace

v1::TenantStats TenantStatsToProto(const std::string& tenant, const cache::TenantStats& s,
                                   const cache::KvCache& cache) {
  v1::TenantStats t;
  t.set_tenant(tenant);
  t.set_host_quota_bytes(s.host_quota.bytes);
  t.set_pages(s.host.pages);
  t.set_stored_bytes(s.host.stored_bytes);
  t.set_logical_bytes(s.host.logical_bytes);
  t.set_lookups(s.lookups);
  t.set_hit_tokens(s.hit_tokens);
  t.set_miss_tokens(s.miss_tokens);
  t.set_evictions(s.host.evictions);
  t.set_demotions(s.demotions);
  t.set_promotions(s.promotions);
  auto add_tier = [&](v1::Tier tier, const cache::TenantUsage& u, const cache::TenantQuota& q,
                      uint64_t budget) {
    v1::TierUsage* out = t.add_tiers();
    out->set_tier(tier);
    out->set_pages(u.pages);
    out->set_stored_bytes(u.stored_bytes);
    out->set_logical_bytes(u.logical_bytes);
    out->set_evictions(u.evictions);
    out->set_quota_bytes(q.bytes);
    out->set_budget_bytes(budget);
  };
  add_tier(v1::TIER_HOST, s.host, s.host_quota, cache.options().host.budget_bytes);
  if (cache.disk() != nullptr) {
    add_tier(v1::TIER_DISK, s.disk, s.disk_quota, cache.disk()->budget_bytes());
  }
  return t;
}

CacheService::CacheService(cache::KvCache* cache, const Authenticator* auth, Metrics* metrics,
                           uint32_t get_chunk_bytes, uint32_t verify_one_in,
                           cache::GpuTier* gpu)
    : cache_(cache),
      auth_(auth),
      metrics_(metrics),
      gpu_(gpu),
      get_chunk_bytes_(get_chunk_bytes),
      verify_one_in_(verify_one_in) {}

grpc::ServerUnaryReactor* CacheService::RegisterModel(grpc::CallbackServerContext* ctx,
                                                      const v1::RegisterModelRequest* request,
                                                      v1::RegisterModelResponse* response) {
  return TenantUnary(ctx, *auth_, metrics_, "RegisterModel", [&](const std::string&) -> absl::Status {
    const uint32_t page_tokens = request->page_tokens() == 0 ? 16 : request->page_tokens();
    absl::StatusOr<cache::Registration> reg;
    switch (request->source_case()) {
      case v1::RegisterModelRequest::kModelDir:
        reg = cache_->models().RegisterDir(request->model_dir(), page_tokens);
        break;
      case v1::RegisterModelRequest::kConfigJson:
        reg = cache_->models().RegisterConfig(request->config_json(), page_tokens);
        break;
      default:
        return absl::InvalidArgumentError("source: set model_dir or config_json");
    }
    if (!reg.ok()) return reg.status();
    const cache::RegisteredModel& m = *reg->model;
    response->set_model_id(m.model_id);
    *response->mutable_geometry() = ToProto(m.config);
    response->mutable_geometry()->set_latent_dim(static_cast<uint32_t>(
        m.full_codec->InputCols(cache::PageInput::kLatent, cache::Role::kK)));
    response->set_page_tokens(m.geometry.page_tokens);
    response->set_page_bytes_16bit(m.geometry.PageElems() * 2);
    response->set_already_registered(reg->already_registered);
    std::string detail;
    switch (m.factors(&detail)) {
      case cache::FactorsState::kNoWeights:
        response->set_factors(v1::RegisterModelResponse::FACTORS_NO_WEIGHTS);
        break;
      case cache::FactorsState::kPending:
        response->set_factors(v1::RegisterModelResponse::FACTORS_PENDING);
        break;
      case cache::FactorsState::kReady:
        response->set_factors(v1::RegisterModelResponse::FACTORS_READY);
        break;
      case cache::FactorsState::kFailed:
        response->set_factors(v1::RegisterModelResponse::FACTORS_FAILED);
        break;
    }
    response->set_factors_detail(detail);
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* CacheService::Lookup(grpc::CallbackServerContext* ctx,
                                               const v1::LookupRequest* request,
                                               v1::LookupResponse* response) {
  return TenantUnary(ctx, *auth_, metrics_, "Lookup", [&](const std::string& tenant) -> absl::Status {
    auto r = cache_->Lookup(tenant, request->model_id(), TokenSpan(request->tokens()));
    if (!r.ok()) return r.status();
    response->set_hit_tokens(r->hit_tokens);
    for (cache::Tier t : r->tiers) response->add_page_tiers(ToWire(t));
    if (!r->tiers.empty()) {
      metrics_->RecordLookupHits(tenant, r->tiers,
                                 static_cast<uint32_t>(r->hit_tokens / r->tiers.size()));
    }
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* CacheService::Delete(grpc::CallbackServerContext* ctx,
                                               const v1::DeleteRequest* request,
                                               v1::DeleteResponse* response) {
  return TenantUnary(ctx, *auth_, metrics_, "Delete", [&](const std::string& tenant) -> absl::Status {
    auto n = cache_->Delete(tenant, request->model_id(), TokenSpan(request->tokens()),
                            request->first_page());
    if (!n.ok()) return n.status();
    response->set_pages_deleted(*n);
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* CacheService::Explain(grpc::CallbackServerContext* ctx,
                                                const v1::ExplainRequest* request,
                                                v1::ExplainResponse* response) {
  return TenantUnary(ctx, *auth_, metrics_, "Explain", [&](const std::string& tenant) -> absl::Status {
    absl::StatusOr<cache::ExplainResult> explained =
        cache_->Explain(tenant, request->model_id(), TokenSpan(request->tokens()));
    if (!explained.ok()) return explained.status();
    const cache::ExplainResult& r = *explained;
    using R = cache::ExplainResult::Reason;
    v1::ExplainResponse::Reason reason = v1::ExplainResponse::REASON_UNSPECIFIED;
    switch (r.reason) {
      case R::kAllHit: reason = v1::ExplainResponse::REASON_ALL_HIT; break;
      case R::kUnknownModel: reason = v1::ExplainResponse::REASON_UNKNOWN_MODEL; break;
      case R::kAbsent: reason = v1::ExplainResponse::REASON_ABSENT; break;
      case R::kEvicted: reason = v1::ExplainResponse::REASON_EVICTED; break;
      case R::kPartialPage: reason = v1::ExplainResponse::REASON_PARTIAL_PAGE; break;
    }
    response->set_hit_tokens(r.hit_tokens);
    response->set_first_missing_page(r.first_missing_page);
    response->set_reason(reason);
    response->set_detail(r.detail);
    // At most kExplainKeys, so that a long prompt's answer stays far below the message limit.
    constexpr size_t kExplainKeys = 1024;
    for (size_t i = 0; i < r.keys.size() && i < kExplainKeys; ++i) {
      response->add_page_keys(cache::ToHex(r.keys[i]));
    }
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* CacheService::Stats(grpc::CallbackServerContext* ctx,
                                              const v1::StatsRequest* request,
                                              v1::StatsResponse* response) {
  return TenantUnary(ctx, *auth_, metrics_, "Stats", [&](const std::string& tenant) -> absl::Status {
    *response->add_tenants() = TenantStatsToProto(tenant, cache_->Stats(tenant), *cache_);
    response->set_host_budget_bytes(cache_->host().budget_bytes());
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* CacheService::Attend(grpc::CallbackServerContext* ctx,
                                               const v1::AttendRequest* request,
                                               v1::AttendResponse* response) {
  return TenantUnary(ctx, *auth_, metrics_, "Attend", [&](const std::string& tenant) {
    return HandleAttend(cache_, gpu_, tenant, *request, response, metrics_);
  });
}

grpc::ServerWriteReactor<v1::GetLayerFactorsResponse>* CacheService::GetLayerFactors(
    grpc::CallbackServerContext* ctx, const v1::GetLayerFactorsRequest* request) {
  return StartLayerFactorsStream(ctx, *auth_, metrics_, *cache_, *request, get_chunk_bytes_);
}

// Reads a Put stream message by message into a PutAssembler.
class CacheService::PutReactor final : public grpc::ServerReadReactor<v1::PutRequest> {
 public:
  PutReactor(CacheService* service, grpc::CallbackServerContext* ctx, v1::PutResponse* response)
      : service_(service), ctx_(ctx), response_(response), timer_(service->metrics_, "Put") {
    absl::StatusOr<std::string> tenant = service->auth_->Authenticate(ctx->client_metadata());
    if (!tenant.ok()) {
      Finish(timer_.Done(tenant.status()));
      return;
    }
    tenant_ = *tenant;
    timer_.set_tenant(tenant_);
    assembler_.emplace(service->cache_, tenant_, service->metrics_, service->verify_one_in_);
    StartRead(&request_);
  }

  void OnReadDone(bool ok) override {
    if (!ok) {  // the client half-closed, or the call broke
      if (ctx_->IsCancelled()) return End(absl::CancelledError("put: cancelled by the client"));
      absl::Status s = assembler_->Finish();
      if (s.ok()) *response_ = assembler_->response();
      return End(s);
    }
    for (const auto& c : request_.chunks()) bytes_ += c.data().size();
    if (absl::Status s = assembler_->Add(request_); !s.ok()) {
      const uint32_t stored = assembler_->response().pages_stored();
      return End(stored == 0 ? s
                             : absl::Status(s.code(), absl::StrCat(s.message(), " (", stored,
                                                                   " earlier pages were stored)")));
    }
    StartRead(&request_);
  }

  void OnDone() override { delete this; }

 private:
  void End(const absl::Status& s) {
    service_->metrics_->RecordBytes(tenant_, "in", bytes_);
    Finish(timer_.Done(s));
  }

  CacheService* const service_;
  grpc::CallbackServerContext* const ctx_;
  v1::PutResponse* const response_;
  RpcTimer timer_;
  std::string tenant_;
  std::optional<PutAssembler> assembler_;  // set once the call is authenticated
  v1::PutRequest request_;
  uint64_t bytes_ = 0;
};

grpc::ServerReadReactor<v1::PutRequest>* CacheService::Put(grpc::CallbackServerContext* ctx,
                                                           v1::PutResponse* response) {
  return new PutReactor(this, ctx, response);
}

// Writes a Get stream one message at a time from a GetStreamer.
class CacheService::GetReactor final : public grpc::ServerWriteReactor<v1::GetResponse> {
 public:
  GetReactor(CacheService* service, grpc::CallbackServerContext* ctx,
             const v1::GetRequest& request)
      : service_(service), timer_(service->metrics_, "Get") {
    absl::StatusOr<std::string> tenant = service->auth_->Authenticate(ctx->client_metadata());
    if (!tenant.ok()) {
      Finish(timer_.Done(tenant.status()));
      return;
    }
    tenant_ = *tenant;
    timer_.set_tenant(tenant_);
    auto streamer = GetStreamer::Start(service->cache_, tenant_, request,
                                       service->get_chunk_bytes_, service->metrics_, service->gpu_);
    if (!streamer.ok()) {
      Finish(timer_.Done(streamer.status()));
      return;
    }
    streamer_ = *std::move(streamer);
    WriteNext();
  }

  void OnWriteDone(bool ok) override {
    if (!ok) return End(absl::CancelledError("get: the client went away mid-stream"));
    WriteNext();
  }

  void OnDone() override { delete this; }

 private:
  void WriteNext() {
    if (streamer_->Next(&response_)) {
      StartWrite(&response_);
    } else {
      End(streamer_->status());
    }
  }

  void End(const absl::Status& s) {
    service_->metrics_->RecordBytes(tenant_, "out", streamer_->bytes_sent());
    Finish(timer_.Done(s));
  }

  CacheService* const service_;
  RpcTimer timer_;
  std::string tenant_;
  std::unique_ptr<GetStreamer> streamer_;
  v1::GetResponse response_;
};

grpc::ServerWriteReactor<v1::GetResponse>* CacheService::Get(grpc::CallbackServerContext* ctx,
                                                             const v1::GetRequest* request) {
  return new GetReactor(this, ctx, *request);
}

}  // namespace slimkv::daemon
