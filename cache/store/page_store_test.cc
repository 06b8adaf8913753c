#include "cache/store/page_store.h"

#include <atomic>
#include <random>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

namespace slimkv::cache {
namespace {

std::shared_ptr<Page> MakePage(uint32_t id, size_t payload_bytes, std::string tenant = "t") {
  auto p = std::make_shared<Page>();
  p->key = Sha256({{reinterpret_cast<const uint8_t*>(&id), sizeof(id)}});
  p->tenant = std::move(tenant);
  p->geometry = {.page_tokens = 1, .num_layers = 1, .num_kv_heads = 1,
                 .k_head_dim = static_cast<uint32_t>(payload_bytes / 8),
                 .v_head_dim = static_cast<uint32_t>(payload_bytes / 8)};
  p->payload.assign(payload_bytes, static_cast<uint8_t>(id));
  return p;
}

constexpr uint64_t kPage = 1024 - kPageOverheadBytes;  // payload of a page costing 1 KiB

TEST(PageStore, EvictsLeastRecentlyUsedWithinBudget) {
  PageStore store({.budget_bytes = 4096});
  for (uint32_t i = 0; i < 4; ++i) ASSERT_TRUE(store.Insert(MakePage(i, kPage)).ok());
  EXPECT_EQ(store.used_bytes(), 4096u);
  ASSERT_NE(store.Get(MakePage(0, kPage)->key), nullptr);  // 0 becomes most recent
  ASSERT_TRUE(store.Insert(MakePage(4, kPage)).ok());      // evicts 1, the LRU
  EXPECT_EQ(store.used_bytes(), 4096u);
  EXPECT_TRUE(store.Contains(MakePage(0, kPage)->key));
  EXPECT_FALSE(store.Contains(MakePage(1, kPage)->key));
  EXPECT_TRUE(store.WasRemoved(MakePage(1, kPage)->key));
  EXPECT_FALSE(store.WasRemoved(MakePage(2, kPage)->key));
  EXPECT_EQ(store.UsageByTenant()["t"].evictions, 1u);
}

TEST(PageStore, DuplicateInsertKeepsTheStoredPage) {
  PageStore store({.budget_bytes = 4096});
  auto first = MakePage(7, kPage);
  ASSERT_EQ(*store.Insert(first), PageStore::InsertResult::kInserted);
  auto again = MakePage(7, kPage);
  again->payload.assign(kPage, 0xee);
  ASSERT_EQ(*store.Insert(again), PageStore::InsertResult::kAlreadyPresent);
  EXPECT_EQ(store.Get(first->key)->payload, first->payload);
  EXPECT_EQ(store.page_count(), 1u);
}

TEST(PageStore, PageLargerThanBudgetIsRefusedAndChangesNothing) {
  PageStore store({.budget_bytes = 2048});
  ASSERT_TRUE(store.Insert(MakePage(1, kPage)).ok());
  auto s = store.Insert(MakePage(2, 4096));
  EXPECT_EQ(s.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(store.page_count(), 1u);
  EXPECT_EQ(store.used_bytes(), 1024u);
}

TEST(PageStore, RemovalMemoryIsBoundedAndForgetsReinsertedKeys) {
  PageStore store({.budget_bytes = 1 << 20, .remembered_removals = 2});
  for (uint32_t i = 0; i < 3; ++i) {
    ASSERT_TRUE(store.Insert(MakePage(i, kPage)).ok());
    ASSERT_TRUE(store.Erase(MakePage(i, kPage)->key));
  }
  EXPECT_FALSE(store.WasRemoved(MakePage(0, kPage)->key));  // aged out
  EXPECT_TRUE(store.WasRemoved(MakePage(2, kPage)->key));
  ASSERT_TRUE(store.Insert(MakePage(2, kPage)).ok());
  EXPECT_FALSE(store.WasRemoved(MakePage(2, kPage)->key));
}

TEST(PageStore, TenantsNeverEvictEachOther) {
  PageStore store({.budget_bytes = 4096});
  for (uint32_t i = 0; i < 3; ++i) ASSERT_TRUE(store.Insert(MakePage(i, kPage, "a")).ok());
  ASSERT_TRUE(store.Insert(MakePage(10, kPage, "b")).ok());
  // Full. b's next page evicts b's own LRU page, never a's.
  ASSERT_TRUE(store.Insert(MakePage(11, kPage, "b")).ok());
  EXPECT_FALSE(store.Contains(MakePage(10, kPage)->key));
  EXPECT_EQ(store.UsageByTenant()["a"].pages, 3u);
  // c has nothing to evict and the tier is full of others' pages: refused, nothing changes.
  auto c = store.Insert(MakePage(20, kPage, "c"));
  EXPECT_EQ(c.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_NE(c.status().message().find("other tenants"), std::string::npos) << c.status();
  EXPECT_EQ(store.page_count(), 4u);
}

TEST(PageStore, QuotaEvictsOwnPagesOrRejects) {
  PageStore store({.budget_bytes = 1 << 20});
  store.SetQuota("evicts", {.bytes = 2048, .reject = false});
  store.SetQuota("rejects", {.bytes = 2048, .reject = true});
  for (uint32_t i = 0; i < 3; ++i) {
    ASSERT_TRUE(store.Insert(MakePage(i, kPage, "evicts")).ok());
    const auto r = store.Insert(MakePage(100 + i, kPage, "rejects"));
    EXPECT_EQ(r.ok(), i < 2) << i;
    if (!r.ok()) {
      EXPECT_EQ(r.status().code(), absl::StatusCode::kResourceExhausted);
    }
  }
  EXPECT_EQ(store.UsageByTenant()["evicts"].stored_bytes, 2048u);
  EXPECT_EQ(store.UsageByTenant()["evicts"].evictions, 1u);
  EXPECT_FALSE(store.Contains(MakePage(0, kPage)->key));
  EXPECT_EQ(store.UsageByTenant()["rejects"].stored_bytes, 2048u);
  EXPECT_EQ(store.UsageByTenant()["rejects"].evictions, 0u);
  EXPECT_EQ(store.Insert(MakePage(9, 4096, "evicts")).status().code(),
            absl::StatusCode::kResourceExhausted);  // alone larger than the quota
}

// 16 threads insert, get and erase overlapping keys in a store a fraction of their working set:
// the budget holds at every observation, readers always see whole pages, and the per-tenant
// accounting adds up at the end. Also run under ThreadSanitizer (cache_test_tsan).
TEST(PageStore, ConcurrentMixedLoadKeepsInvariants) {
  constexpr uint64_t kBudget = 64 * 1024;
  PageStore store({.budget_bytes = kBudget});
  std::atomic<bool> failed{false};
  std::vector<std::thread> threads;
  for (int t = 0; t < 16; ++t) {
    threads.emplace_back([&, t] {
      std::mt19937 rng(t);
      for (int i = 0; i < 3000; ++i) {
        const uint32_t id = rng() % 256;
        switch (rng() % 4) {
          case 0:
          case 1:
            if (!store.Insert(MakePage(id, kPage, id % 2 ? "odd" : "even")).ok()) failed = true;
            break;
          case 2:
            if (auto p = store.Get(MakePage(id, kPage)->key)) {
              for (uint8_t b : p->payload) {
                if (b != static_cast<uint8_t>(id)) failed = true;
              }
            }
            break;
          case 3:
            store.Erase(MakePage(id, kPage)->key);
            break;
        }
        if (store.used_bytes() > kBudget) failed = true;
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_FALSE(failed);
  uint64_t bytes = 0, pages = 0;
  for (auto& [tenant, u] : store.UsageByTenant()) bytes += u.stored_bytes, pages += u.pages;
  EXPECT_EQ(bytes, store.used_bytes());
  EXPECT_EQ(pages, store.page_count());
}

// Two layers of 4 tokens × 1 head × 8 dims in bf16: 128 logical bytes per layer. Layer 0 in
// `mode0` (slim, K_raw only: 64 B), layer 1 in full (128 B), as after a per-layer fallback.
std::shared_ptr<Page> TwoModePage(uint32_t id, Mode mode0, Quant quant0) {
  auto p = std::make_shared<Page>();
  p->key = Sha256({{reinterpret_cast<const uint8_t*>(&id), sizeof(id)}});
  p->tenant = "t";
  p->dtype = kernels::DType::kBF16;
  p->geometry = {.page_tokens = 4, .num_layers = 2, .num_kv_heads = 1, .k_head_dim = 8,
                 .v_head_dim = 8};
  p->layers = {{.mode = mode0, .quant = quant0, .bytes = 64}, {.bytes = 128}};
  p->payload.assign(192, 0);
  return p;
}

TEST(PageStore, CountsLayerBytesByRepresentation) {
  PageStore store({.budget_bytes = 2 * (192 + kPageOverheadBytes)});
  ASSERT_TRUE(store.Insert(TwoModePage(1, Mode::kSlim, Quant::kNone)).ok());
  ASSERT_TRUE(store.Insert(TwoModePage(2, Mode::kSlim, Quant::kNone)).ok());
  const std::pair<Mode, Quant> slim{Mode::kSlim, Quant::kNone}, full{Mode::kFull, Quant::kNone},
      full_int8{Mode::kFull, Quant::kInt8};
  ModeUsageMap m = store.ModeUsageByTenant()["t"];
  EXPECT_EQ(m[slim].stored_bytes, 128u);
  EXPECT_EQ(m[slim].logical_bytes, 256u);
  EXPECT_EQ(m[full].stored_bytes, 256u);
  EXPECT_EQ(m[full].logical_bytes, 256u);
  // The budget holds two pages: a third, quantized one evicts page 1, and its layers leave.
  ASSERT_TRUE(store.Insert(TwoModePage(3, Mode::kFull, Quant::kInt8)).ok());
  m = store.ModeUsageByTenant()["t"];
  EXPECT_EQ(m[slim].stored_bytes, 64u);
  EXPECT_EQ(m[full_int8].stored_bytes, 64u);
  EXPECT_EQ(m[full_int8].logical_bytes, 128u);
  EXPECT_EQ(m[full].stored_bytes, 256u);
  ASSERT_TRUE(store.Erase(TwoModePage(2, Mode::kSlim, Quant::kNone)->key));
  ASSERT_TRUE(store.Erase(TwoModePage(3, Mode::kFull, Quant::kInt8)->key));
  m = store.ModeUsageByTenant()["t"];
  for (const auto& [mode, u] : m) {
    EXPECT_EQ(u.stored_bytes, 0u);
    EXPECT_EQ(u.logical_bytes, 0u);
  }
}

}  // namespace
}  // namespace slimkv::cache
