// Tenants end to end: every call authenticates by bearer token, tenants never see or evict each
// other's pages, and quotas reject or evict the tenant's own pages as configured.
#include <gtest/gtest.h>

#include "absl/strings/str_cat.h"
#include "tests/support/synthetic_model.h"
#include "tests/daemon_process.h"
#include "tests/support/test_pages.h"

namespace slimkv::testing {
namespace {

// SyntheticModel{} pages of 16 tokens in bf16 cost 65792 bytes each (tests/budget_test.cc).
constexpr uint64_t kPageCost = 4 * 2 * 16 * 256 * 2 + 256;

std::string TenantConfig(const std::string& id, uint64_t quota = 0, bool reject = false) {
  return TenantBlock(id, absl::StrCat("host_quota_bytes: ", quota,
                                      reject ? " over_quota: OVER_QUOTA_REJECT" : ""));
}

class Tenants : public ::testing::Test {
 protected:
  void SetUp() override {
    auto d = DaemonProcess::Start(TenantConfig("alpha") + TenantConfig("beta") +
                                  TenantConfig("capped", 3 * kPageCost, /*reject=*/true) +
                                  TenantConfig("rolling", 3 * kPageCost));
    ASSERT_TRUE(d.ok()) << d.status();
    daemon_ = *std::move(d);
    ASSERT_TRUE(client::SyntheticModel{}.Write(daemon_->dir() + "/model").ok());
    for (const char* id : {"alpha", "beta", "capped", "rolling"}) {
      clients_[id] = As(std::string(id) + "-secret");
      auto m = clients_[id]->RegisterModelDir(daemon_->dir() + "/model", 16);
      ASSERT_TRUE(m.ok()) << id << ": " << m.status();
      model_ = *m;
    }
  }

  std::unique_ptr<client::Client> As(const std::string& token) {
    client::ClientOptions o;
    o.token = token;
    return daemon_->NewClient(o);
  }

  std::unique_ptr<DaemonProcess> daemon_;
  std::map<std::string, std::unique_ptr<client::Client>> clients_;
  client::ModelHandle model_;
};

TEST_F(Tenants, EveryCallNeedsAKnownToken) {
  const auto prompt = Tokens(1, 32);
  for (const std::string& token : {std::string(), std::string("wrong"), std::string("alpha")}) {
    auto c = As(token);
    EXPECT_EQ(c->Lookup(model_, prompt).status().code(), absl::StatusCode::kUnauthenticated) << token;
    EXPECT_EQ(c->Put(model_, prompt, 0, MakePages(model_, prompt)).status().code(),
              absl::StatusCode::kUnauthenticated);
    EXPECT_EQ(c->Get(model_, prompt).status().code(), absl::StatusCode::kUnauthenticated);
    EXPECT_EQ(c->Stats().status().code(), absl::StatusCode::kUnauthenticated);
    EXPECT_EQ(c->RegisterModelDir(daemon_->dir() + "/model", 16).status().code(),
              absl::StatusCode::kUnauthenticated);
  }
  auto scrape = ScrapeMetrics(daemon_->metrics_port());
  ASSERT_TRUE(scrape.ok());
  EXPECT_EQ(MetricValue(*scrape, R"(slimkv_rpcs_total{code="UNAUTHENTICATED",method="Put",tenant="unauthenticated"})"), 3);
}

TEST_F(Tenants, IdenticalTokensNeverCrossTenants) {
  const auto prompt = Tokens(2, 48);
  ASSERT_TRUE(clients_["alpha"]->Put(model_, prompt, 0, MakePages(model_, prompt)).ok());
  EXPECT_EQ(clients_["alpha"]->Lookup(model_, prompt)->hit_tokens(), 48u);
  EXPECT_EQ(clients_["beta"]->Lookup(model_, prompt)->hit_tokens(), 0u);
  auto got = clients_["beta"]->Get(model_, prompt);
  ASSERT_TRUE(got.ok());
  EXPECT_TRUE(got->empty());
  auto why = clients_["beta"]->Explain(model_.model_id, prompt);
  EXPECT_EQ(why->reason(), v1::ExplainResponse::REASON_ABSENT);  // not "evicted": reveals nothing
  EXPECT_NE(why->page_keys(0), clients_["alpha"]->Explain(model_.model_id, prompt)->page_keys(0));
  EXPECT_EQ(clients_["beta"]->Delete(model_, prompt, 0).value(), 0u);
  EXPECT_EQ(clients_["alpha"]->Lookup(model_, prompt)->hit_tokens(), 48u);
  auto stats = clients_["beta"]->Stats();
  ASSERT_EQ(stats->tenants_size(), 1);
  EXPECT_EQ(stats->tenants(0).tenant(), "beta");
  EXPECT_EQ(stats->tenants(0).pages(), 0u);
}

TEST_F(Tenants, QuotaRejectsOrEvictsOwnPagesOnly) {
  const auto beta_prompt = Tokens(3, 32);
  ASSERT_TRUE(clients_["beta"]->Put(model_, beta_prompt, 0, MakePages(model_, beta_prompt)).ok());

  // capped: 3 pages fit; the 4th is refused and nothing of it is stored.
  const auto four = Tokens(4, 64);
  auto put = clients_["capped"]->Put(model_, four, 0, MakePages(model_, four));
  EXPECT_EQ(put.status().code(), absl::StatusCode::kResourceExhausted) << put.status();
  EXPECT_NE(put.status().message().find("quota"), std::string::npos) << put.status();
  EXPECT_EQ(clients_["capped"]->Lookup(model_, four)->hit_tokens(), 48u);
  EXPECT_EQ(clients_["capped"]->Stats()->tenants(0).host_quota_bytes(), 3 * kPageCost);

  // rolling: puts keep succeeding, evicting its own oldest pages.
  for (uint32_t i = 0; i < 4; ++i) {
    const auto p = Tokens(10 + i, 32);
    ASSERT_TRUE(clients_["rolling"]->Put(model_, p, 0, MakePages(model_, p)).ok()) << i;
  }
  auto rolling = clients_["rolling"]->Stats()->tenants(0);
  EXPECT_LE(rolling.stored_bytes(), 3 * kPageCost);
  EXPECT_EQ(rolling.evictions(), 5u);  // 8 pages through a 3-page quota
  EXPECT_EQ(clients_["rolling"]->Lookup(model_, Tokens(13, 32))->hit_tokens(), 32u);

  // beta was untouched throughout: same pages, same bytes, no evictions.
  EXPECT_EQ(clients_["beta"]->Lookup(model_, beta_prompt)->hit_tokens(), 32u);
  auto got = clients_["beta"]->Get(model_, beta_prompt);
  ASSERT_TRUE(got.ok());
  ASSERT_EQ(got->size(), 2u);
  EXPECT_EQ((*got)[1].bytes, MakePage(model_, beta_prompt, 1).bytes);
  EXPECT_EQ(clients_["beta"]->Stats()->tenants(0).evictions(), 0u);
}

}  // namespace
}  // namespace slimkv::testing
