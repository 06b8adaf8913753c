#include "daemon/auth.h"

#include "absl/strings/match.h"
#include "cache/store/page_key.h"

namespace slimkv::daemon {

Authenticator::Authenticator(const v1::DaemonConfig& config)
    : admin_token_sha256_(config.admin_token_sha256()) {
  for (const v1::TenantConfig& t : config.tenants()) tenant_by_token_sha256_[t.token_sha256()] = t.id();
}

absl::StatusOr<std::string> Authenticator::TokenHash(
    const std::multimap<grpc::string_ref, grpc::string_ref>& metadata) {
  auto it = metadata.find("authorization");
  if (it == metadata.end()) {
    return absl::UnauthenticatedError("authorization: missing; send 'Bearer <token>'");
  }
  absl::string_view value(it->second.data(), it->second.size());
  if (!absl::StartsWithIgnoreCase(value, "bearer ") || value.size() == 7) {  // RFC 6750: any case
    return absl::UnauthenticatedError("authorization: expected 'Bearer <token>'");
  }
  value.remove_prefix(7);
  return cache::ToHex(
      cache::Sha256({{reinterpret_cast<const uint8_t*>(value.data()), value.size()}}));
}

absl::StatusOr<std::string> Authenticator::Authenticate(
    const std::multimap<grpc::string_ref, grpc::string_ref>& metadata) const {
  if (tenant_by_token_sha256_.empty()) return std::string(kDefaultTenant);
  absl::StatusOr<std::string> hash = TokenHash(metadata);
  if (!hash.ok()) return hash.status();
  auto tenant = tenant_by_token_sha256_.find(*hash);
  if (tenant == tenant_by_token_sha256_.end()) {
    return absl::UnauthenticatedError("authorization: unknown token");
  }
  return tenant->second;
}

absl::StatusOr<std::string> Authenticator::AuthenticateAdmin(
    const std::multimap<grpc::string_ref, grpc::string_ref>& metadata) const {
  if (admin_token_sha256_.empty()) {
    if (tenant_by_token_sha256_.empty()) return std::string("admin");
    return absl::PermissionDeniedError(
        "admin: no admin_token_sha256 is configured, so the Admin service is disabled");
  }
  absl::StatusOr<std::string> hash = TokenHash(metadata);
  if (!hash.ok()) return hash.status();
  if (*hash == admin_token_sha256_) return std::string("admin");
  if (tenant_by_token_sha256_.contains(*hash)) {
    return absl::PermissionDeniedError("authorization: a tenant token cannot make admin calls");
  }
  return absl::UnauthenticatedError("authorization: unknown token");
}

}  // namespace slimkv::daemon
