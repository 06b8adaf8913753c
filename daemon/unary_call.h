// What every slimkvd RPC does around its handler: authenticate the call, time it, record it in
// the metrics under its principal, and translate the final status (grpc_status.h).
//
// Thread-safety: RpcTimer is used by one call; Unary is reentrant.
#pragma once

#include <string>
#include <utility>

#include <grpcpp/server_context.h>

#include "absl/status/statusor.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "daemon/grpc_status.h"
#include "daemon/metrics.h"

namespace slimkv::daemon {

// Times one RPC and records it, under its tenant, when its final status is known.
class RpcTimer {
 public:
  RpcTimer(Metrics* metrics, const char* method)
      : metrics_(metrics), method_(method), start_(absl::Now()) {}

  void set_tenant(const std::string& tenant) { tenant_ = tenant; }

  grpc::Status Done(const absl::Status& status) {
    metrics_->RecordRpc(tenant_, method_, status.code(),
                        absl::ToDoubleSeconds(absl::Now() - start_));
    return ToGrpcStatus(status);
  }

 private:
  Metrics* const metrics_;
  const char* const method_;
  const absl::Time start_;
  std::string tenant_ = "unauthenticated";
};

// Authenticates the call with `authenticate(ctx->client_metadata())` → StatusOr<principal>,
// then runs `handler(principal)` → Status to completion on the calling gRPC thread.
template <typename Authenticate, typename Handler>
grpc::ServerUnaryReactor* Unary(grpc::CallbackServerContext* ctx, Authenticate&& authenticate,
                                Metrics* metrics, const char* method, Handler&& handler) {
  RpcTimer timer(metrics, method);
  auto* reactor = ctx->DefaultReactor();
  absl::StatusOr<std::string> principal = authenticate(ctx->client_metadata());
  if (!principal.ok()) {
    reactor->Finish(timer.Done(principal.status()));
    return reactor;
  }
  timer.set_tenant(*principal);
  reactor->Finish(timer.Done(handler(*principal)));
  return reactor;
}

}  // namespace slimkv::daemon
