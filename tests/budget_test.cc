// With a small host budget and no disk tier, puts beyond it evict least-recently-used pages, the
// budget is never exceeded (sampled from /metrics), and lookups and gets stay correct. (With a
// disk tier the evicted pages are demoted instead: tests/tiers_test.cc.)
#include <gtest/gtest.h>

#include "tests/support/synthetic_model.h"
#include "tests/daemon_process.h"
#include "tests/support/test_pages.h"

namespace slimkv::testing {
namespace {

// SyntheticModel{} pages of 16 tokens in bf16: 4 layers × (K + V) × 16 × 256 × 2 B, plus the
// per-page overhead the budget counts (cache/store/page.h).
constexpr uint64_t kPageCost = 4 * 2 * 16 * 256 * 2 + 256;
constexpr uint64_t kBudget = 10 * kPageCost;

TEST(Budget, EvictsLeastRecentlyUsedAndNeverExceeds) {
  auto d = DaemonProcess::Start("host_budget_bytes: " + std::to_string(kBudget) +
                                " disk { disabled: true }");
  ASSERT_TRUE(d.ok()) << d.status();
  auto daemon = *std::move(d);
  auto client = daemon->NewClient();
  ASSERT_TRUE(client::SyntheticModel{}.Write(daemon->dir() + "/model").ok());
  auto model = *client->RegisterModelDir(daemon->dir() + "/model", 16);

  auto stored_bytes = [&] {
    auto scrape = ScrapeMetrics(daemon->metrics_port());
    return scrape.ok() ? MetricValue(*scrape, R"(slimkv_stored_bytes{tenant="default",tier="host"})") : -2;
  };
  const auto a = Tokens(1, 64), b = Tokens(2, 64), c = Tokens(3, 64);
  ASSERT_TRUE(client->Put(model, a, 0, MakePages(model, a)).ok());
  ASSERT_TRUE(client->Put(model, b, 0, MakePages(model, b)).ok());
  EXPECT_EQ(stored_bytes(), 8 * kPageCost);
  EXPECT_EQ(client->Lookup(model, a)->hit_tokens(), 64u);  // a becomes most recently used
  ASSERT_TRUE(client->Put(model, c, 0, MakePages(model, c)).ok());
  EXPECT_EQ(stored_bytes(), 10 * kPageCost);
  // b's first two pages were the least recently used.
  EXPECT_EQ(client->Lookup(model, b)->hit_tokens(), 0u);
  EXPECT_EQ(client->Explain(model.model_id, b)->reason(), v1::ExplainResponse::REASON_EVICTED);
  EXPECT_EQ(client->Lookup(model, a)->hit_tokens(), 64u);
  EXPECT_EQ(client->Lookup(model, c)->hit_tokens(), 64u);
  auto got_b = client->Get(model, b, 2);  // b's pages 2 and 3 survive
  ASSERT_TRUE(got_b.ok());
  ASSERT_EQ(got_b->size(), 2u);
  EXPECT_EQ((*got_b)[1].bytes, MakePage(model, b, 3).bytes);

  // Many more prompts: the budget holds after every put, and every hit is the right data.
  for (uint32_t i = 10; i < 40; ++i) {
    const auto p = Tokens(i, 48);
    ASSERT_TRUE(client->Put(model, p, 0, MakePages(model, p)).ok());
    ASSERT_LE(stored_bytes(), kBudget);
    const auto older = Tokens(i - 3, 48);
    const uint64_t hit = client->Lookup(model, older)->hit_tokens();
    auto got = client->Get(model, older);
    ASSERT_TRUE(got.ok());
    ASSERT_EQ(got->size(), hit / 16);
    for (uint32_t k = 0; k < got->size(); ++k) ASSERT_EQ((*got)[k].bytes, MakePage(model, older, k).bytes);
  }
  auto scrape = ScrapeMetrics(daemon->metrics_port());
  ASSERT_TRUE(scrape.ok());
  EXPECT_GT(MetricValue(*scrape, R"(slimkv_evictions_total{tenant="default",tier="host"})"), 80);
}

// A page larger than the whole budget is refused with RESOURCE_EXHAUSTED and stores nothing.
TEST(Budget, PageLargerThanBudgetIsRefused) {
  // The model registers (max_page_bytes set above the budget); its pages are refused at put.
  auto d = DaemonProcess::Start("host_budget_bytes: " + std::to_string(kPageCost / 2) +
                                "\nmax_page_bytes: 1048576");
  ASSERT_TRUE(d.ok()) << d.status();
  auto client = (*d)->NewClient();
  ASSERT_TRUE(client::SyntheticModel{}.Write((*d)->dir() + "/model").ok());
  auto model = *client->RegisterModelDir((*d)->dir() + "/model", 16);
  const auto p = Tokens(1, 16);
  auto put = client->Put(model, p, 0, MakePages(model, p));
  EXPECT_EQ(put.status().code(), absl::StatusCode::kResourceExhausted) << put.status();
  EXPECT_EQ(client->Stats()->tenants(0).pages(), 0u);
}

}  // namespace
}  // namespace slimkv::testing
