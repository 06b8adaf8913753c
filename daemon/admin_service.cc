#include "daemon/admin_service.h"

#include "daemon/cache_service.h"
#include "daemon/log.h"
#include "daemon/unary_call.h"

namespace slimkv::daemon {

template <typename Handler>
grpc::ServerUnaryReactor* AdminService::AdminUnary(grpc::CallbackServerContext* ctx,
                                                   const char* method, Handler handler) {
  return Unary(
      ctx, [this](const auto& metadata) { return auth_->AuthenticateAdmin(metadata); }, metrics_,
      method, std::move(handler));
}

grpc::ServerUnaryReactor* AdminService::ListTenants(grpc::CallbackServerContext* ctx,
                                                    const v1::ListTenantsRequest*,
                                                    v1::ListTenantsResponse* response) {
  return AdminUnary(ctx, "ListTenants", [&](const std::string&) -> absl::Status {
    for (v1::TenantInfo& info : settings_->List()) {
      *info.mutable_stats() = TenantStatsToProto(info.tenant(), cache_->Stats(info.tenant()),
                                                 *cache_);
      *response->add_tenants() = std::move(info);
    }
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* AdminService::SetTenant(grpc::CallbackServerContext* ctx,
                                                  const v1::SetTenantRequest* request,
                                                  v1::SetTenantResponse* response) {
  return AdminUnary(ctx, "SetTenant", [&](const std::string&) -> absl::Status {
    absl::StatusOr<v1::SetTenantResponse> r = settings_->Set(*request);
    if (!r.ok()) return r.status();
    *response = *std::move(r);
    const v1::TenantPolicy& p = response->current().policy();
    LogInfo("admin: tenant ", request->tenant(), " now ", v1::Mode_Name(p.mode()), " ",
            v1::Quant_Name(p.quant()), " tolerance ", p.error_tolerance(), ", quotas host ",
            response->current().quotas().host_quota_bytes(), " disk ",
            response->current().quotas().disk_quota_bytes(),
            request->reset() ? " (reset to the config)" : "");
    return absl::OkStatus();
  });
}

}  // namespace slimkv::daemon
