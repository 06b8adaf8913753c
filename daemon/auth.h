// Authenticator: which tenant a call acts for, from its bearer token.
//
// With no tenants configured every call is tenant "default" (the embedded defaults, meant for
// loopback). Otherwise a call must carry `authorization: Bearer <token>` metadata, and the
// token's SHA-256 must be a configured tenant's token_sha256. Tokens are compared by hash, so
// the daemon never holds one.
//
// Admin calls take the admin token instead (DaemonConfig.admin_token_sha256). With neither
// tenants nor an admin token configured (the loopback defaults), they are open too.
//
// Thread-safety: immutable after construction.
#pragma once

#include <map>
#include <string>

#include <grpcpp/support/string_ref.h>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "slimkv/v1/config.pb.h"

namespace slimkv::daemon {

inline constexpr char kDefaultTenant[] = "default";

class Authenticator {
 public:
  // REQUIRES: `config` passed Finalize (tenant ids and hashes valid and unique).
  explicit Authenticator(const v1::DaemonConfig& config);

  // The calling tenant. UNAUTHENTICATED: tenants are configured and the call carries no bearer
  // token, a malformed one, or one no tenant has.
  [[nodiscard]] absl::StatusOr<std::string> Authenticate(
      const std::multimap<grpc::string_ref, grpc::string_ref>& metadata) const;

  // "admin" when the call carries the admin token. UNAUTHENTICATED: no token, a malformed or
  // an unknown one. PERMISSION_DENIED: a tenant's token, or no admin token is configured.
  [[nodiscard]] absl::StatusOr<std::string> AuthenticateAdmin(
      const std::multimap<grpc::string_ref, grpc::string_ref>& metadata) const;

 private:
  // Hex SHA-256 of the bearer token in `metadata`.
  static absl::StatusOr<std::string> TokenHash(
      const std::multimap<grpc::string_ref, grpc::string_ref>& metadata);

  absl::flat_hash_map<std::string, std::string> tenant_by_token_sha256_;
  std::string admin_token_sha256_;
};

}  // namespace slimkv::daemon
