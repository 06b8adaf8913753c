#include "daemon/auth.h"

#include "absl/strings/match.h"
#include "cache/page_key.h"

namespace slimkv::daemon {

Authenticator::Authenticator(const v1::DaemonConfig& config) {
  for (const v1::TenantConfig& t : config.tenants()) tenant_by_token_sha256_[t.token_sha256()] = t.id();
}

absl::StatusOr<std::string> Authenticator::Authenticate(
    const std::multimap<grpc::string_ref, grpc::string_ref>& metadata) const {
  if (tenant_by_token_sha256_.empty()) return std::string(kDefaultTenant);
  auto it = metadata.find("authorization");
  if (it == metadata.end()) {
    return absl::UnauthenticatedError("authorization: missing; send 'Bearer <token>'");
  }
  absl::string_view value(it->second.data(), it->second.size());
  if (!absl::StartsWithIgnoreCase(value, "bearer ") || value.size() == 7) {  // RFC 6750: any case
    return absl::UnauthenticatedError("authorization: expected 'Bearer <token>'");
  }
  value.remove_prefix(7);
  const cache::Digest digest =
      cache::Sha256({{reinterpret_cast<const uint8_t*>(value.data()), value.size()}});
  auto tenant = tenant_by_token_sha256_.find(cache::ToHex(digest));
  if (tenant == tenant_by_token_sha256_.end()) {
    return absl::UnauthenticatedError("authorization: unknown token");
  }
  return tenant->second;
}

}  // namespace slimkv::daemon
