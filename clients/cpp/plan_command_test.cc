// Runs the real `slimkv plan --json` binary on model directories written here and checks what
// a script reading its JSON relies on.
#include <cstdio>
#include <cstdlib>
#include <sys/wait.h>
#include <filesystem>
#include <fstream>
#include <string>

#include "tests/support/synthetic_model.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"

namespace slimkv::client {
namespace {

class TempDir {
 public:
  TempDir() {
    std::string t = (std::filesystem::temp_directory_path() / "slimkv-plan-XXXXXX").string();
    path_ = ::mkdtemp(t.data()) ? t : "";
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

struct Result {
  int status = -1;
  std::string out;
};

Result RunCli(const std::string& args) {
  Result r;
  const std::string cmd = std::string(SLIMKV_CLI_PATH) + " plan " + args + " 2>/dev/null";
  FILE* p = ::popen(cmd.c_str(), "r");
  if (p == nullptr) return r;
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) r.out.append(buf, n);
  const int st = ::pclose(p);
  r.status = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
  return r;
}

TEST(PlanCommand, ConfigOnlyJsonGivesSizes) {
  TempDir dir;
  std::ofstream(dir.path() + "/config.json") << R"({
    "architectures": ["LlamaForCausalLM"], "hidden_size": 4096, "intermediate_size": 11008,
    "max_position_embeddings": 4096, "model_type": "llama", "num_attention_heads": 32,
    "num_hidden_layers": 32, "num_key_value_heads": 32, "torch_dtype": "float16"})";
  const Result r = RunCli(dir.path() + " --json --rank 1024");
  ASSERT_EQ(r.status, 0) << r.out;
  const nlohmann::json j = nlohmann::json::parse(r.out);
  EXPECT_FALSE(j["has_weights"].get<bool>());
  ASSERT_EQ(j["layers"].size(), 32u);
  const auto& modes = j["layers"][0]["modes"];
  EXPECT_EQ(modes["full"]["elements"].get<int>(), 8192);
  EXPECT_EQ(modes["slim"]["elements"].get<int>(), 4096);
  EXPECT_DOUBLE_EQ(modes["slim"]["ratio_to_full"]["none"].get<double>(), 0.5);
  EXPECT_DOUBLE_EQ(modes["xcache"]["ratio_to_full"]["none"].get<double>(), 0.5);
  EXPECT_EQ(modes["projected"]["elements"].get<int>(), 1024);
  EXPECT_FALSE(modes["latent"]["applicable"].get<bool>());
  EXPECT_DOUBLE_EQ(j["bytes_per_token_all_layers"]["full"]["none"].get<double>(), 32 * 16384.0);
  EXPECT_TRUE(j["bytes_per_token_all_layers"]["latent"]["none"].is_null());
}

// The published configs of the issue's six models (clients/cpp/testdata/models): the papers'
// arithmetic through the real binary and files, and the capacity table built from it.
std::string Model(const std::string& name) { return std::string(SLIMKV_MODELS_DIR) + "/" + name; }

nlohmann::json PlanJson(const std::string& name) {
  const Result r = RunCli(Model(name) + " --json");
  EXPECT_EQ(r.status, 0) << r.out;
  return r.status == 0 ? nlohmann::json::parse(r.out) : nlohmann::json::object();
}

double Ratio(const nlohmann::json& plan, const char* mode) {
  return plan["layers"][0]["modes"][mode]["ratio_to_full"]["none"].get<double>();
}

TEST(PlanCommand, PublishedConfigsGiveThePapersArithmetic) {
  EXPECT_DOUBLE_EQ(Ratio(PlanJson("llama-2-7b"), "slim"), 0.5);
  EXPECT_DOUBLE_EQ(Ratio(PlanJson("llama-2-7b"), "xcache"), 0.5);
  EXPECT_DOUBLE_EQ(Ratio(PlanJson("t5-11b"), "xcache"), 1.0 / 32);
  EXPECT_EQ(PlanJson("deepseek-v3")["layers"][0]["modes"]["latent"]["elements"].get<int>(), 576);
  const struct {
    const char* dir;
    double reduction, int4_reduction;  // %, int4 at 4 bits per value against 16-bit full
  } mha2mla[] = {{"mha2mla-llama-2-7b-dkv16", 87.5, 96.875},
                 {"mha2mla-llama-2-7b-dkv32", 81.25, 95.3125},
                 {"mha2mla-llama-2-7b-dkv64", 68.75, 92.1875}};
  for (const auto& m : mha2mla) {
    SCOPED_TRACE(m.dir);
    const nlohmann::json plan = PlanJson(m.dir);
    const auto& latent = plan["layers"][0]["modes"]["latent"];
    const double full_bytes = plan["layers"][0]["modes"]["full"]["bytes"]["none"].get<double>();
    EXPECT_DOUBLE_EQ(100 * (1 - Ratio(plan, "latent")), m.reduction);
    EXPECT_DOUBLE_EQ(100 * (1 - latent["bytes_4bit_no_scales"].get<double>() / full_bytes),
                     m.int4_reduction);
  }
}

TEST(PlanCommand, CapacityTableCountsTokensPerGiB) {
  const Result r = RunCli("--capacity " + Model("llama-2-7b") + " " + Model("t5-11b/"));
  ASSERT_EQ(r.status, 0) << r.out;
  // 2^30 / (32 layers × 8192 elements × 2 bytes) = 2048 tokens in full bf16; slim twice that.
  EXPECT_NE(r.out.find("| llama-2-7b | 32 | full | 8192 | 2048 |"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("| llama-2-7b | 32 | slim | 4096 | 4096 |"), std::string::npos) << r.out;
  // T5-11B: 24 layers × 1024 elements × 2 bytes: 21845 tokens, 32× full's 682.
  EXPECT_NE(r.out.find("| t5-11b | 24 | xcache | 1024 | 21845 |"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("| t5-11b | 24 | full | 32768 | 682 |"), std::string::npos) << r.out;
  EXPECT_EQ(RunCli("--capacity " + Model("no-such-model")).status, 1);
  EXPECT_EQ(RunCli("--capacity --json " + Model("t5-11b")).status, 2);
}

TEST(PlanCommand, GqaReasonInJson) {
  TempDir dir;
  std::ofstream(dir.path() + "/config.json") << R"({"model_type": "llama", "hidden_size": 4096,
    "num_attention_heads": 32, "num_hidden_layers": 2, "num_key_value_heads": 8,
    "max_position_embeddings": 8192})";
  const Result r = RunCli(dir.path() + " --json");
  ASSERT_EQ(r.status, 0) << r.out;
  const auto slim = nlohmann::json::parse(r.out)["layers"][1]["modes"]["slim"];
  EXPECT_FALSE(slim["applicable"].get<bool>());
  EXPECT_NE(slim["reason"].get<std::string>().find("GQA"), std::string::npos);
}

TEST(PlanCommand, WithWeightsGivesKappaErrorsAndModes) {
  TempDir dir, data;
  SyntheticModel m;
  m.num_layers = 2;
  m.hidden_size = 64;
  m.num_heads = m.num_kv_heads = 4;
  m.head_dim = 16;
  ASSERT_TRUE(m.Write(dir.path()).ok());
  const std::string args = dir.path() + " --json --energy 0.9 --data_dir " + data.path();
  const Result r = RunCli(args);
  ASSERT_EQ(r.status, 0) << r.out;
  const nlohmann::json j = nlohmann::json::parse(r.out);
  EXPECT_TRUE(j["has_weights"].get<bool>());
  ASSERT_EQ(j["layers"].size(), 2u);
  for (const auto& l : j["layers"]) {
    EXPECT_TRUE(l["analyzed"].get<bool>());
    EXPECT_FALSE(l["from_cache"].get<bool>());
    EXPECT_GE(l["kappa"]["k"].get<double>(), 1.0);
    const double slim_bf16 = l["modes"]["slim"]["predicted_error"]["bf16"].get<double>();
    EXPECT_DOUBLE_EQ(slim_bf16, l["kappa"]["k"].get<double>() / 256);
    const double xcache_bf16 = l["modes"]["xcache"]["predicted_error"]["bf16"].get<double>();
    // d = e: slim on a tie, then xcache, then full.
    const char* want = slim_bf16 <= 1e-2 ? "slim" : xcache_bf16 <= 1e-2 ? "xcache" : "full";
    EXPECT_EQ(l["mode"]["bf16"].get<std::string>(), want);
    const double slim_fp32 = l["modes"]["slim"]["predicted_error"]["fp32"].get<double>();
    EXPECT_EQ(l["mode"]["fp32"].get<std::string>(), slim_fp32 <= 1e-2 ? "slim" : "xcache");
    const int rank = l["projected_rank"].get<int>();
    EXPECT_GT(rank, 0);
    EXPECT_LE(rank, 64);
  }
  // Second run: the factorizations come from DATA_DIR.
  const nlohmann::json again = nlohmann::json::parse(RunCli(args).out);
  EXPECT_TRUE(again["layers"][0]["from_cache"].get<bool>());
  EXPECT_EQ(again["layers"][0]["kappa"], j["layers"][0]["kappa"]);
  // Usage errors exit 2.
  EXPECT_EQ(RunCli("").status, 2);
  EXPECT_EQ(RunCli(dir.path() + " --bogus").status, 2);
}

}  // namespace
}  // namespace slimkv::client
