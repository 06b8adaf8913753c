// SIGHUP reloads tenant policies and host quotas through a real slimkvd: puts after a reload
// take the new mode and quantizer, pages stored before stay (in the mode they were stored in),
// a bad file keeps the running policies and the log names the field, and fields that only take
// effect on restart are named and ignored.
#include <signal.h>

#include <chrono>
#include <thread>

#include <gtest/gtest.h>

#include "absl/strings/str_cat.h"
#include "tests/support/synthetic_model.h"
#include "tests/daemon_process.h"
#include "tests/support/model_pages.h"
#include "tests/support/test_pages.h"

namespace slimkv::testing {
namespace {

using client::ModelHandle;
using client::PageData;

constexpr uint32_t kPageTokens = 16;

// Tenant alpha (token "alpha-secret") with `policy` and `extra` fields, plus `rest`.
std::string Config(const std::string& policy, const std::string& extra = "",
                   const std::string& rest = "") {
  return absl::StrCat("tenants { id: \"alpha\" token_sha256: \"", TokenSha256("alpha-secret"),
                      "\" policy { ", policy, " } ", extra, " }\n", rest);
}

class Reload : public ::testing::Test {
 protected:
  void SetUp() override {
    auto d = DaemonProcess::Start(Config("mode: MODE_FULL", "host_quota_bytes: 8388608"));
    ASSERT_TRUE(d.ok()) << d.status();
    daemon_ = *std::move(d);
    client_ = daemon_->NewClient({.token = "alpha-secret"});
    // d = e = 64: slim applies and is exact up to conditioning.
    ASSERT_TRUE(model_.Write(daemon_->dir() + "/model").ok());
    auto m = RegisterWithFactors(*client_, daemon_->dir() + "/model", kPageTokens);
    ASSERT_TRUE(m.ok()) << m.status();
    handle_ = *m;
  }

  // Writes `config`, sends SIGHUP and waits (at most 10 s) until the daemon has counted one more
  // reload with `result` ("ok" or "error").
  void ReloadWith(const std::string& config, const std::string& result) {
    const std::string series = absl::StrCat("slimkv_config_reloads_total{result=\"", result, "\"}");
    const double before = Metric(series);
    ASSERT_TRUE(daemon_->WriteConfig(config).ok());
    daemon_->Signal(SIGHUP);
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (Metric(series) == before) {
      ASSERT_LT(std::chrono::steady_clock::now(), deadline)
          << "no reload counted as " << result << "; log:\n" << daemon_->Log();
      std::this_thread::sleep_for(std::chrono::milliseconds(20));  // polling the daemon's state
    }
  }

  double Metric(const std::string& series) {
    auto scrape = ScrapeMetrics(daemon_->metrics_port());
    EXPECT_TRUE(scrape.ok()) << scrape.status();
    return scrape.ok() ? MetricValue(*scrape, series) : -1;
  }

  // Puts the pages of a fresh prompt with the tenant's policy (no mode or quant in the put).
  std::vector<uint32_t> PutPrompt() {
    const uint32_t seed = next_seed_++;
    std::vector<uint32_t> tokens = Tokens(seed, 2 * kPageTokens);
    auto put = client_->Put(handle_, tokens, 0, EnginePages(model_, handle_, tokens, seed));
    EXPECT_TRUE(put.ok()) << put.status();
    if (put.ok()) {
      EXPECT_EQ(put->pages_stored(), 2u);
      EXPECT_EQ(put->layers_fallen_back(), 0u) << "well-conditioned weights in fp32";
    }
    return tokens;
  }

  // Every stored layer of the prompt's pages is in `mode` and `quant` (raw Get).
  void ExpectStored(const std::vector<uint32_t>& tokens, v1::Mode mode, v1::Quant quant) {
    auto raw = client_->Get(handle_, tokens, 0, std::nullopt, /*raw=*/true);
    ASSERT_TRUE(raw.ok()) << raw.status();
    ASSERT_EQ(raw->size(), 2u) << "pages dropped";
    for (const PageData& page : *raw) {
      ASSERT_EQ(page.layer_modes.size(), handle_.num_layers);
      for (uint32_t l = 0; l < handle_.num_layers; ++l) {
        EXPECT_EQ(page.layer_modes[l], mode) << "layer " << l;
        EXPECT_EQ(page.layer_quants[l], quant) << "layer " << l;
      }
    }
  }

  const client::SyntheticModel model_ = client::SyntheticModel::Small("llama", 64, 4, 4, 16);
  std::unique_ptr<DaemonProcess> daemon_;
  std::unique_ptr<client::Client> client_;
  ModelHandle handle_;
  uint32_t next_seed_ = 1;
};

TEST_F(Reload, SighupAppliesPoliciesAndQuotasWithoutDroppingPages) {
  const std::vector<uint32_t> before = PutPrompt();
  ExpectStored(before, v1::MODE_FULL, v1::QUANT_NONE);

  ReloadWith(Config("mode: MODE_SLIM error_tolerance: 0.05", "host_quota_bytes: 4194304"), "ok");
  const std::vector<uint32_t> after = PutPrompt();
  ExpectStored(after, v1::MODE_SLIM, v1::QUANT_NONE);
  ExpectStored(before, v1::MODE_FULL, v1::QUANT_NONE);  // still there, as stored
  EXPECT_EQ(Metric("slimkv_error_tolerance{tenant=\"alpha\"}"), 0.05);
  EXPECT_EQ(Metric("slimkv_tenant_policy_info{tenant=\"alpha\",mode=\"slim\",quant=\"none\"}"), 1);
  auto stats = client_->Stats();
  ASSERT_TRUE(stats.ok()) << stats.status();
  EXPECT_EQ(stats->tenants(0).host_quota_bytes(), 4194304u);
  EXPECT_EQ(stats->tenants(0).pages(), 4u);
  const std::string log = daemon_->Log();
  EXPECT_NE(log.find("tenant alpha policy MODE_FULL QUANT_NONE error_tolerance 0.01 -> "
                     "MODE_SLIM QUANT_NONE error_tolerance 0.05"),
            std::string::npos)
      << log;
  EXPECT_NE(log.find("tenant alpha quotas host 8388608 disk 0 OVER_QUOTA_EVICT_OWN -> host 4194304"),
            std::string::npos)
      << log;
}

TEST_F(Reload, BadFilesKeepTheRunningPoliciesAndSayWhy) {
  ReloadWith(Config("mode: MODE_SLIM"), "ok");
  const std::pair<std::string, std::string> bad[] = {
      {Config("mode: MODE_FULL error_tolerance: 7"),
       "tenants[0].policy.error_tolerance: 7 is not in (0, 1]"},
      {Config("mode: MODE_FULL", "polcy { mode: MODE_FULL }"), "no field named \"polcy\""},
      {Config("mode: MODE_SIDEWAYS"), "MODE_SIDEWAYS"},
  };
  for (const auto& [config, reason] : bad) {
    SCOPED_TRACE(reason);
    ReloadWith(config, "error");
    const std::string log = daemon_->Log();
    const size_t refused = log.rfind("config reload refused, keeping the running policies");
    ASSERT_NE(refused, std::string::npos) << log;
    EXPECT_NE(log.find(reason, refused), std::string::npos) << log;
    ExpectStored(PutPrompt(), v1::MODE_SLIM, v1::QUANT_NONE);
    EXPECT_EQ(Metric("slimkv_tenant_policy_info{tenant=\"alpha\",mode=\"slim\",quant=\"none\"}"),
              1);
  }
}

TEST_F(Reload, FieldsReadOnlyAtStartUpAreNamedAndIgnored) {
  // A new tenant, a new budget and a new policy: the policy applies, the rest waits for a
  // restart (beta cannot authenticate; the budget stays).
  ReloadWith(Config("mode: MODE_FULL quant: QUANT_INT8 error_tolerance: 0.1", "",
                    absl::StrCat("tenants { id: \"beta\" token_sha256: \"",
                                 TokenSha256("beta-secret"), "\" }\nhost_budget_bytes: 1048576\n")),
             "ok");
  const std::string log = daemon_->Log();
  EXPECT_NE(log.find("ignored until restart"), std::string::npos) << log;
  EXPECT_NE(log.find("host_budget_bytes"), std::string::npos) << log;
  EXPECT_NE(log.find("tenants[1] (added)"), std::string::npos) << log;
  ExpectStored(PutPrompt(), v1::MODE_FULL, v1::QUANT_INT8);
  auto beta = daemon_->NewClient({.token = "beta-secret"})->Stats();
  EXPECT_EQ(beta.status().code(), absl::StatusCode::kUnauthenticated);
  auto stats = client_->Stats();
  ASSERT_TRUE(stats.ok()) << stats.status();
  EXPECT_EQ(stats->host_budget_bytes(), 4ull << 30);
}

}  // namespace
}  // namespace slimkv::testing
