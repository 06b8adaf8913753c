// AdminService: slimkv.v1.Admin on gRPC's callback API — tenant policies and quotas at run time
// (TenantSettings) and every tenant's figures. Every call needs the admin token (auth.h).
//
// Thread-safety: internally synchronized.
#pragma once

#include "cache/store/kv_cache.h"
#include "daemon/auth.h"
#include "daemon/metrics.h"
#include "daemon/tenant_settings.h"
#include "slimkv/v1/admin.grpc.pb.h"

namespace slimkv::daemon {

class AdminService final : public v1::Admin::CallbackService {
 public:
  // Every pointer must outlive the service.
  AdminService(cache::KvCache* cache, TenantSettings* settings, const Authenticator* auth,
               Metrics* metrics)
      : cache_(cache), settings_(settings), auth_(auth), metrics_(metrics) {}

  grpc::ServerUnaryReactor* ListTenants(grpc::CallbackServerContext* ctx,
                                        const v1::ListTenantsRequest* request,
                                        v1::ListTenantsResponse* response) override;
  grpc::ServerUnaryReactor* SetTenant(grpc::CallbackServerContext* ctx,
                                      const v1::SetTenantRequest* request,
                                      v1::SetTenantResponse* response) override;

 private:
  template <typename Handler>
  grpc::ServerUnaryReactor* AdminUnary(grpc::CallbackServerContext* ctx, const char* method,
                                       Handler handler);

  cache::KvCache* const cache_;
  TenantSettings* const settings_;
  const Authenticator* const auth_;
  Metrics* const metrics_;
};

}  // namespace slimkv::daemon
