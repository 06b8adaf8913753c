// Loading and validating the daemon's configuration (slimkv.v1.DaemonConfig).
//
// Thread-safety: stateless functions.
#pragma once

#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "slimkv/v1/config.pb.h"

namespace slimkv::daemon {

// The embedded defaults (SPEC §7), as documented on each field of config.proto.
v1::DaemonConfig DefaultConfig();

// Parses a text-format config file and fills unset fields with their defaults.
// NOT_FOUND: unreadable file. INVALID_ARGUMENT: syntax error or unknown field (with line and
// column), or a bad value or unreadable TLS file (naming the field), prefixed with the path.
[[nodiscard]] absl::StatusOr<v1::DaemonConfig> LoadConfigFile(absl::string_view path);

// Fills unset fields with defaults, then checks every value, reading the TLS files it names
// (daemon/tls.h). INVALID_ARGUMENT names the field; NOT_FOUND names the field and the path of a
// file that cannot be read.
[[nodiscard]] absl::StatusOr<v1::DaemonConfig> Finalize(v1::DaemonConfig config);

// Fills the unset fields of a tenant policy with their defaults and checks the rest.
// INVALID_ARGUMENT names `field` and the bad sub-field.
[[nodiscard]] absl::Status FinalizePolicy(const std::string& field, v1::TenantPolicy* policy);

}  // namespace slimkv::daemon
