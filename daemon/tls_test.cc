// The TLS checks that need no certificates; tests/tls_test.sh covers real certificates, key
// mismatches and the handshakes.
#include "daemon/tls.h"

#include <unistd.h>

#include <filesystem>
#include <fstream>

#include <google/protobuf/text_format.h>
#include <gtest/gtest.h>

#include "daemon/config.h"

namespace slimkv::daemon {
namespace {

TEST(Tls, LoopbackAddresses) {
  for (const char* a : {"127.0.0.1:50551", "127.1.2.3:0", "localhost:1", "LocalHost:1",
                        "[::1]:50551", "[::ffff:127.0.0.1]:5", "unix:/run/slimkv.sock",
                        "unix-abstract:slimkv"}) {
    EXPECT_TRUE(IsLoopbackListen(a)) << a;
  }
  for (const char* a : {"0.0.0.0:50551", "[::]:50551", ":50551", "10.0.0.7:50551",
                        "[fe80::1]:1", "[::ffff:10.0.0.1]:5", "cache.example:50551",
                        "localhost.example:1", "127.0.0.1", ""}) {
    EXPECT_FALSE(IsLoopbackListen(a)) << a;
  }
}

v1::DaemonConfig WithTls(const std::string& listen, const std::string& tls_text) {
  v1::DaemonConfig c = DefaultConfig();
  c.set_listen(listen);
  EXPECT_TRUE(google::protobuf::TextFormat::ParseFromString(tls_text, c.mutable_tls()));
  return c;
}

TEST(Tls, PlaintextOffLoopbackNeedsTheExplicitField) {
  EXPECT_TRUE(ValidateTls(WithTls("127.0.0.1:50551", "")).ok());
  const absl::Status refused = ValidateTls(WithTls("0.0.0.0:50551", ""));
  EXPECT_EQ(refused.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(refused.message().find("tls.allow_plaintext_non_loopback"), std::string::npos)
      << refused;
  EXPECT_TRUE(
      ValidateTls(WithTls("0.0.0.0:50551", "allow_plaintext_non_loopback: true")).ok());
}

TEST(Tls, FilesComeInTheRightCombinations) {
  const std::pair<const char*, const char*> bad[] = {
      {"key_file: \"/k.pem\"", "tls.cert_file"},
      {"cert_file: \"/c.pem\"", "tls.key_file"},
      {"client_ca_file: \"/ca.pem\"", "tls.client_ca_file"},
  };
  for (const auto& [text, field] : bad) {
    const absl::Status s = ValidateTls(WithTls("127.0.0.1:1", text));
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << text;
    EXPECT_NE(s.message().find(field), std::string::npos) << s;
  }
}

TEST(Tls, UnreadableOrWrongFilesNameTheFieldAndPath) {
  const std::string dir = ::testing::TempDir();
  const std::string missing = dir + "/slimkv-no-such-cert.pem";
  const absl::Status gone = ValidateTls(WithTls(
      "127.0.0.1:1", "cert_file: \"" + missing + "\" key_file: \"" + missing + "\""));
  EXPECT_EQ(gone.code(), absl::StatusCode::kNotFound);
  EXPECT_NE(gone.message().find("tls.cert_file: cannot read " + missing), std::string::npos)
      << gone;

  const std::string junk = dir + "/slimkv-tls-test-" + std::to_string(getpid()) + ".pem";
  std::ofstream(junk) << "not a certificate\n";
  const absl::Status wrong = ValidateTls(
      WithTls("127.0.0.1:1", "cert_file: \"" + junk + "\" key_file: \"" + junk + "\""));
  EXPECT_EQ(wrong.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(wrong.message().find("tls.cert_file: " + junk + " holds no PEM certificate"),
            std::string::npos)
      << wrong;
  std::filesystem::remove(junk);

  // Finalize runs the same checks, so a config file fails to load.
  auto loaded = Finalize(WithTls("127.0.0.1:1", "cert_file: \"" + missing + "\" key_file: \"" +
                                                    missing + "\""));
  EXPECT_EQ(loaded.status().code(), absl::StatusCode::kNotFound);
}

}  // namespace
}  // namespace slimkv::daemon
