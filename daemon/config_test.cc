#include "daemon/config.h"

#include <filesystem>
#include <fstream>

#include <gtest/gtest.h>

namespace slimkv::daemon {
namespace {

std::string WriteTemp(const std::string& text) {
  static int n = 0;
  const std::string path = (std::filesystem::temp_directory_path() /
                            ("slimkv-config-test-" + std::to_string(getpid()) + "-" +
                             std::to_string(n++) + ".conf")).string();
  std::ofstream(path) << text;
  return path;
}

TEST(Config, EmptyFileGivesTheEmbeddedDefaults) {
  auto c = LoadConfigFile(WriteTemp(""));
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->listen(), "127.0.0.1:50551");
  EXPECT_EQ(c->metrics_listen(), "127.0.0.1:9551");
  EXPECT_EQ(c->data_dir(), "./slimkv-data");
  EXPECT_EQ(c->host_budget_bytes(), 4ull << 30);
  EXPECT_EQ(c->explain_evicted_keys(), 65536u);
}

TEST(Config, FieldsOverrideDefaults) {
  auto c = LoadConfigFile(WriteTemp("listen: \"127.0.0.1:0\"\nhost_budget_bytes: 1048576\n"
                                    "explain_evicted_keys: 0\n"));
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->listen(), "127.0.0.1:0");
  EXPECT_EQ(c->host_budget_bytes(), 1048576u);
  EXPECT_EQ(c->explain_evicted_keys(), 0u);  // explicitly none, not the default
}

TEST(Config, UnknownFieldNamesItAndTheLine) {
  auto c = LoadConfigFile(WriteTemp("listen: \"127.0.0.1:1\"\nhost_budget: 5\n"));
  ASSERT_EQ(c.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(c.status().message().find("line 2"), std::string::npos) << c.status();
  EXPECT_NE(c.status().message().find("host_budget"), std::string::npos) << c.status();
}

TEST(Config, BadValuesNameTheField) {
  auto wrong_type = LoadConfigFile(WriteTemp("host_budget_bytes: \"lots\"\n"));
  EXPECT_EQ(wrong_type.status().code(), absl::StatusCode::kInvalidArgument);
  auto small = LoadConfigFile(WriteTemp("max_message_bytes: 1000\n"));
  ASSERT_EQ(small.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(small.status().message().find("max_message_bytes"), std::string::npos);
  auto chunk = LoadConfigFile(WriteTemp("get_chunk_bytes: 4194304\n"));
  ASSERT_EQ(chunk.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(chunk.status().message().find("get_chunk_bytes"), std::string::npos);
  EXPECT_EQ(LoadConfigFile("/nonexistent/slimkv.conf").status().code(), absl::StatusCode::kNotFound);
}

TEST(Config, TenantsAreValidated) {
  const std::string hash(64, 'a');
  auto ok = LoadConfigFile(WriteTemp("tenants { id: \"a-1.b_2\" token_sha256: \"" + hash + "\" }"));
  EXPECT_TRUE(ok.ok()) << ok.status();
  const std::pair<std::string, std::string> bad[] = {
      {"tenants { id: \"\" token_sha256: \"" + hash + "\" }", "tenants[0].id"},
      {"tenants { id: \"a b\" token_sha256: \"" + hash + "\" }", "tenants[0].id"},
      {"tenants { id: \"a\" token_sha256: \"ABC\" }", "tenants[0].token_sha256"},
      {"tenants { id: \"a\" token_sha256: \"" + std::string(64, 'A') + "\" }",
       "tenants[0].token_sha256"},
      {"tenants { id: \"a\" token_sha256: \"" + hash + "\" } tenants { id: \"a\" token_sha256: \"" +
           std::string(64, 'b') + "\" }",
       "tenants[1].id"},
      {"tenants { id: \"a\" token_sha256: \"" + hash + "\" } tenants { id: \"b\" token_sha256: \"" +
           hash + "\" }",
       "tenants[1].token_sha256"},
      {"tenants { id: \"a\" over_quota: SOMETIMES }", "SOMETIMES"},
  };
  for (const auto& [text, field] : bad) {
    auto c = LoadConfigFile(WriteTemp(text));
    EXPECT_EQ(c.status().code(), absl::StatusCode::kInvalidArgument) << text;
    EXPECT_NE(c.status().message().find(field), std::string::npos) << c.status();
  }
}

// The sample config in ops/ documents every field at its default: loading it must give exactly
// the embedded defaults, so the sample cannot drift from the code.
TEST(Config, SampleConfigIsTheDefaults) {
  auto c = LoadConfigFile(SLIMKV_SAMPLE_CONFIG);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->DebugString(), DefaultConfig().DebugString());
  const auto* d = v1::DaemonConfig::descriptor();
  std::ifstream in(SLIMKV_SAMPLE_CONFIG);
  const std::string text((std::istreambuf_iterator<char>(in)), {});
  for (int i = 0; i < d->field_count(); ++i) {
    const std::string& name = d->field(i)->name();
    // Set at its default, or, for a repeated field whose default is empty, shown commented out.
    const bool documented = text.find("\n" + name + ":") != std::string::npos ||
                            (d->field(i)->is_repeated() &&
                             text.find("\n# " + name + " {") != std::string::npos);
    EXPECT_TRUE(documented) << "ops/slimkvd.conf does not document " << name;
    // A singular message field is set as a block whose every field is set at its default.
    if (const auto* m = d->field(i)->message_type(); m != nullptr && !d->field(i)->is_repeated()) {
      for (int j = 0; j < m->field_count(); ++j) {
        EXPECT_NE(text.find("\n  " + m->field(j)->name() + ":"), std::string::npos)
            << "ops/slimkvd.conf does not document " << name << "." << m->field(j)->name();
      }
    }
  }
}

}  // namespace
}  // namespace slimkv::daemon
