// TLS on the gRPC listener (DaemonConfig.tls): checking the PEM files the config names, and
// gRPC's server credentials built from them — plaintext, TLS, or mutual TLS.
//
// Thread-safety: stateless functions.
#pragma once

#include <memory>

#include <grpcpp/security/server_credentials.h>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "slimkv/v1/config.pb.h"

namespace slimkv::daemon {

// True when `listen` (a gRPC listening address) can only be reached from this host: an IPv4
// address in 127.0.0.0/8, ::1 (also v4-mapped), "localhost", or a unix socket.
bool IsLoopbackListen(absl::string_view listen);

// OK when config.tls is usable with config.listen: cert_file and key_file both set or both
// empty, client_ca_file only with them; each file readable and holding what its field names
// (PEM certificates, a PEM private key that matches cert_file's leaf); and, without TLS, a
// loopback listen address unless tls.allow_plaintext_non_loopback.
// NOT_FOUND: a file cannot be read (names the field and the path). INVALID_ARGUMENT: any other
// mismatch (names the field).
[[nodiscard]] absl::Status ValidateTls(const v1::DaemonConfig& config);

// Reads tls's files and builds the listener's credentials: insecure when cert_file is empty,
// else TLS with cert_file/key_file, requiring and verifying client certificates against
// client_ca_file when it is set. Errors as ValidateTls, which should have passed (the files
// may have changed since).
[[nodiscard]] absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> ListenerCredentials(
    const v1::TlsConfig& tls);

}  // namespace slimkv::daemon
