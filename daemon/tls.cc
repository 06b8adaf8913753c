#include "daemon/tls.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace slimkv::daemon {

namespace {

struct BioFree {
  void operator()(BIO* b) const { BIO_free(b); }
};
struct X509Free {
  void operator()(X509* x) const { X509_free(x); }
};
struct PkeyFree {
  void operator()(EVP_PKEY* k) const { EVP_PKEY_free(k); }
};
using BioPtr = std::unique_ptr<BIO, BioFree>;
using X509Ptr = std::unique_ptr<X509, X509Free>;
using PkeyPtr = std::unique_ptr<EVP_PKEY, PkeyFree>;

// The contents of the files a TlsConfig names; all empty without TLS.
struct TlsFiles {
  std::string cert_chain;
  std::string private_key;
  std::string client_ca;
};

absl::StatusOr<std::string> ReadFile(absl::string_view field, const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return absl::NotFoundError(
        absl::StrCat(field, ": cannot read ", path, ": ", std::strerror(errno)));
  }
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

BioPtr MemoryBio(const std::string& pem) {
  return BioPtr(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
}

// The first PEM certificate in `pem` (for a chain, the leaf).
absl::StatusOr<X509Ptr> FirstCertificate(absl::string_view field, const std::string& path,
                                         const std::string& pem) {
  BioPtr bio = MemoryBio(pem);
  X509Ptr cert(bio ? PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr) : nullptr);
  if (cert == nullptr) {
    ERR_clear_error();
    return absl::InvalidArgumentError(
        absl::StrCat(field, ": ", path, " holds no PEM certificate"));
  }
  return cert;
}

// Checks the PEM contents: certificates where certificates are named, an unencrypted private
// key matching the leaf of the chain.
absl::Status CheckPem(const v1::TlsConfig& tls, const TlsFiles& files) {
  auto leaf = FirstCertificate("tls.cert_file", tls.cert_file(), files.cert_chain);
  if (!leaf.ok()) return leaf.status();
  BioPtr bio = MemoryBio(files.private_key);
  // A callback that supplies no passphrase: an encrypted key fails here instead of OpenSSL
  // prompting on the terminal (gRPC cannot use one either).
  PkeyPtr key(bio ? PEM_read_bio_PrivateKey(
                        bio.get(), nullptr, [](char*, int, int, void*) { return 0; }, nullptr)
                  : nullptr);
  if (key == nullptr) {
    ERR_clear_error();
    return absl::InvalidArgumentError(absl::StrCat(
        "tls.key_file: ", tls.key_file(), " holds no unencrypted PEM private key"));
  }
  if (X509_check_private_key(leaf->get(), key.get()) != 1) {
    ERR_clear_error();
    return absl::InvalidArgumentError(absl::StrCat("tls.key_file: ", tls.key_file(),
                                                   " is not the key of the certificate in ",
                                                   tls.cert_file()));
  }
  if (!tls.client_ca_file().empty()) {
    auto ca = FirstCertificate("tls.client_ca_file", tls.client_ca_file(), files.client_ca);
    if (!ca.ok()) return ca.status();
  }
  return absl::OkStatus();
}

absl::StatusOr<TlsFiles> ReadTlsFiles(const v1::TlsConfig& tls) {
  if (tls.cert_file().empty() && !tls.key_file().empty()) {
    return absl::InvalidArgumentError("tls.cert_file: required with tls.key_file");
  }
  if (!tls.cert_file().empty() && tls.key_file().empty()) {
    return absl::InvalidArgumentError("tls.key_file: required with tls.cert_file");
  }
  if (tls.cert_file().empty()) {
    if (!tls.client_ca_file().empty()) {
      return absl::InvalidArgumentError(
          "tls.client_ca_file: mutual TLS needs tls.cert_file and tls.key_file as well");
    }
    return TlsFiles{};
  }
  TlsFiles files;
  auto cert = ReadFile("tls.cert_file", tls.cert_file());
  if (!cert.ok()) return cert.status();
  files.cert_chain = *std::move(cert);
  auto key = ReadFile("tls.key_file", tls.key_file());
  if (!key.ok()) return key.status();
  files.private_key = *std::move(key);
  if (!tls.client_ca_file().empty()) {
    auto ca = ReadFile("tls.client_ca_file", tls.client_ca_file());
    if (!ca.ok()) return ca.status();
    files.client_ca = *std::move(ca);
  }
  if (auto s = CheckPem(tls, files); !s.ok()) return s;
  return files;
}

}  // namespace

bool IsLoopbackListen(absl::string_view listen) {
  if (absl::StartsWith(listen, "unix:") || absl::StartsWith(listen, "unix-abstract:")) {
    return true;
  }
  const size_t colon = listen.rfind(':');
  if (colon == absl::string_view::npos) return false;
  absl::string_view host = listen.substr(0, colon);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }
  if (absl::AsciiStrToLower(host) == "localhost") return true;
  const std::string h(host);
  in_addr v4;
  if (inet_pton(AF_INET, h.c_str(), &v4) == 1) return (ntohl(v4.s_addr) >> 24) == 127;
  in6_addr v6;
  if (inet_pton(AF_INET6, h.c_str(), &v6) == 1) {
    return IN6_IS_ADDR_LOOPBACK(&v6) || (IN6_IS_ADDR_V4MAPPED(&v6) && v6.s6_addr[12] == 127);
  }
  return false;  // a wildcard, a routable address, or a name that could resolve to one
}

absl::Status ValidateTls(const v1::DaemonConfig& config) {
  auto files = ReadTlsFiles(config.tls());
  if (!files.ok()) return files.status();
  if (config.tls().cert_file().empty() && !config.tls().allow_plaintext_non_loopback() &&
      !IsLoopbackListen(config.listen())) {
    return absl::InvalidArgumentError(absl::StrCat(
        "listen: \"", config.listen(),
        "\" is not a loopback address and tls.cert_file is not set: refusing to serve "
        "plaintext there; configure tls.cert_file and tls.key_file, or set "
        "tls.allow_plaintext_non_loopback: true"));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> ListenerCredentials(
    const v1::TlsConfig& tls) {
  auto files = ReadTlsFiles(tls);
  if (!files.ok()) return files.status();
  if (tls.cert_file().empty()) return grpc::InsecureServerCredentials();
  grpc::SslServerCredentialsOptions options(
      tls.client_ca_file().empty() ? GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE
                                   : GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY);
  options.pem_root_certs = files->client_ca;
  options.pem_key_cert_pairs.push_back(
      {.private_key = files->private_key, .cert_chain = files->cert_chain});
  return grpc::SslServerCredentials(options);
}

}  // namespace slimkv::daemon
