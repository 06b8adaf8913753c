// 16 client threads put, look up and get for a few seconds against one daemon whose budget is a
// fraction of their working set: no call fails, and every page that comes back is the one put.
// Built a second time with ThreadSanitizer, daemon included (slimkv_tsan in .ci/run).
#include <atomic>
#include <chrono>
#include <thread>

#include <gtest/gtest.h>

#include "tests/support/synthetic_model.h"
#include "tests/daemon_process.h"
#include "tests/support/test_pages.h"

namespace slimkv::testing {
namespace {

TEST(Concurrency, SixteenClientsPutAndGet) {
  auto d = DaemonProcess::Start("host_budget_bytes: 16777216");  // ~250 pages
  ASSERT_TRUE(d.ok()) << d.status();
  auto daemon = *std::move(d);
  ASSERT_TRUE(client::SyntheticModel{}.Write(daemon->dir() + "/model").ok());
  const client::ModelHandle model =
      *daemon->NewClient()->RegisterModelDir(daemon->dir() + "/model", 16);

  const std::vector<uint32_t> shared = Tokens(0, 32);  // two pages every prompt starts with
  std::atomic<int> errors{0}, wrong{0}, gets{0}, pages_back{0};
  const auto stop = std::chrono::steady_clock::now() + std::chrono::seconds(4);
  std::vector<std::thread> threads;
  for (int t = 0; t < 16; ++t) {
    threads.emplace_back([&, t] {
      auto client = daemon->NewClient();
      for (uint32_t i = 0; std::chrono::steady_clock::now() < stop && i < 100000; ++i) {
        std::vector<uint32_t> prompt = shared;
        const auto own = Tokens(t * 100000 + i % 64, 32);  // revisits its own prompts
        prompt.insert(prompt.end(), own.begin(), own.end());
        if (i % 3 != 2) {
          if (!client->Put(model, prompt, 0, MakePages(model, prompt)).ok()) ++errors;
          continue;
        }
        auto hit = client->Lookup(model, prompt);
        auto got = client->Get(model, prompt);
        if (!hit.ok() || !got.ok()) {
          ++errors;
          continue;
        }
        ++gets;
        pages_back += got->size();
        for (uint32_t p = 0; p < got->size(); ++p) {
          if ((*got)[p].bytes != MakePage(model, prompt, p).bytes) ++wrong;
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(errors, 0);
  EXPECT_EQ(wrong, 0);
  EXPECT_GT(gets, 16);
  EXPECT_GT(pages_back, 0);
  EXPECT_EQ(daemon->Stop(), 0);  // clean shutdown under load's aftermath
}

}  // namespace
}  // namespace slimkv::testing
