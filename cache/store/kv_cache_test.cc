#include "cache/store/kv_cache.h"

#include <atomic>
#include <filesystem>
#include <memory>
#include <numeric>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>
#include <rocksdb/file_checksum.h>

#include "kernels/crc32c.h"

namespace slimkv::cache {
namespace {

constexpr char kConfig[] = R"({
  "model_type": "llama", "num_hidden_layers": 2, "hidden_size": 64,
  "num_attention_heads": 4, "num_key_value_heads": 2, "max_position_embeddings": 4096,
  "rope_theta": 10000.0
})";

class KvCacheTest : public ::testing::Test {
 protected:
  KvCacheTest() : cache_(KvCacheOptions{.host = {.budget_bytes = 1 << 20}}) {
    auto reg = cache_.models().RegisterConfig(kConfig, 4);
    EXPECT_TRUE(reg.ok()) << reg.status();
    model_ = reg->model;
  }

  // Stores the whole pages of `tokens` for `tenant`, each filled with its page index.
  void PutAll(const std::string& tenant, const std::vector<uint32_t>& tokens) {
    auto prefix = cache_.Resolve(tenant, model_->model_id, tokens);
    ASSERT_TRUE(prefix.ok()) << prefix.status();
    for (size_t i = 0; i < prefix->keys.size(); ++i) {
      auto p = std::make_shared<Page>();
      p->key = prefix->keys[i];
      p->tenant = tenant;
      p->geometry = model_->geometry;
      p->payload.assign(p->LogicalBytes(), static_cast<uint8_t>(i));
      ASSERT_TRUE(cache_.Insert(p).ok());
    }
  }

  KvCache cache_;
  std::shared_ptr<const RegisteredModel> model_;
};

TEST_F(KvCacheTest, RegistrationIsIdempotentAndKeyedByPageSize) {
  auto again = cache_.models().RegisterConfig(kConfig, 4);
  ASSERT_TRUE(again.ok());
  EXPECT_TRUE(again->already_registered);
  EXPECT_EQ(again->model->model_id, model_->model_id);
  auto other = cache_.models().RegisterConfig(kConfig, 8);
  ASSERT_TRUE(other.ok());
  EXPECT_NE(other->model->model_id, model_->model_id);
  EXPECT_EQ(cache_.models().RegisterConfig(kConfig, 3).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(model_->geometry.PageElems(), 2u * 2 * 4 * 2 * 16);  // layers × K,V × T × h_kv × d_h
}

TEST_F(KvCacheTest, RegistrationIsBoundedByMaxModels) {
  KvCacheOptions options;
  options.max_models = 1;
  KvCache small(options);
  ASSERT_TRUE(small.models().RegisterConfig(kConfig, 4).ok());
  EXPECT_TRUE(small.models().RegisterConfig(kConfig, 4)->already_registered);  // not a new one
  EXPECT_EQ(small.models().RegisterConfig(kConfig, 8).status().code(),
            absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(small.models().RegisterDir("relative/dir", 4).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST_F(KvCacheTest, LookupFindsLongestWholePagePrefix) {
  std::vector<uint32_t> prompt(10);
  std::iota(prompt.begin(), prompt.end(), 100);
  PutAll("a", {prompt.begin(), prompt.begin() + 8});
  auto r = cache_.Lookup("a", model_->model_id, prompt);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->hit_tokens, 8u);
  EXPECT_EQ(r->tiers.size(), 2u);
  prompt[5] = 7;  // diverges inside page 1
  EXPECT_EQ(cache_.Lookup("a", model_->model_id, prompt)->hit_tokens, 4u);
  EXPECT_EQ(cache_.Lookup("b", model_->model_id, prompt)->hit_tokens, 0u);  // other tenant
  const TenantStats s = cache_.Stats("a");
  EXPECT_EQ(s.lookups, 2u);
  EXPECT_EQ(s.hit_tokens, 12u);
  EXPECT_EQ(s.miss_tokens, 8u);
  EXPECT_EQ(s.host.pages, 2u);
}

TEST_F(KvCacheTest, ExplainNamesFirstMissingPageAndWhy) {
  std::vector<uint32_t> prompt(13);
  std::iota(prompt.begin(), prompt.end(), 1);
  PutAll("a", {prompt.begin(), prompt.begin() + 12});
  auto all = cache_.Explain("a", model_->model_id, prompt);
  EXPECT_EQ(all->reason, ExplainResult::Reason::kPartialPage);
  EXPECT_EQ(all->hit_tokens, 12u);
  ASSERT_TRUE(cache_.Delete("a", model_->model_id, prompt, 1).ok());
  auto evicted = cache_.Explain("a", model_->model_id, prompt);
  EXPECT_EQ(evicted->reason, ExplainResult::Reason::kEvicted);
  EXPECT_EQ(evicted->first_missing_page, 1u);
  EXPECT_NE(evicted->detail.find("page 1 (tokens 4..7)"), std::string::npos) << evicted->detail;
  prompt[0] = 999;
  EXPECT_EQ(cache_.Explain("a", model_->model_id, prompt)->reason, ExplainResult::Reason::kAbsent);
  EXPECT_EQ(cache_.Explain("a", std::string(64, 'a'), prompt)->reason,
            ExplainResult::Reason::kUnknownModel);
  // Malformed input is an error, not a reason.
  EXPECT_EQ(cache_.Explain("a", model_->model_id, {}).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(cache_.Explain("a", "nope", prompt).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(KvCacheTest, ResolveRejectsBadInput) {
  EXPECT_EQ(cache_.Resolve("a", "xyz", std::vector<uint32_t>{1}).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(cache_.Resolve("a", std::string(64, '0'), std::vector<uint32_t>{1}).status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(cache_.Resolve("a", model_->model_id, {}).status().code(),
            absl::StatusCode::kInvalidArgument);
}

// Our CRC32C agrees with RocksDB's (an independent implementation) on random data.
// A host tier of three pages over a disk tier: the tiers as KvCache composes them.
class TieredKvCacheTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/slimkv-kvcache-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    Open(/*write_through=*/false);
  }
  void TearDown() override {
    cache_.reset();
    std::filesystem::remove_all(dir_);
  }

  void Open(bool write_through, uint64_t queue_bytes = 1 << 20) {
    cache_.reset();  // closes the database first
    auto disk = DiskTier::Open({.path = dir_, .budget_bytes = 1 << 20, .sync = write_through});
    ASSERT_TRUE(disk.ok()) << disk.status();
    KvCacheOptions o{.host = {.budget_bytes = 3 * kStored}};
    o.write_through = write_through;
    o.demotion_queue_bytes = queue_bytes;
    cache_ = std::make_unique<KvCache>(o, *std::move(disk));
    auto reg = cache_->models().RegisterConfig(kConfig, 4);
    ASSERT_TRUE(reg.ok()) << reg.status();
    model_ = reg->model;
  }

  // Page i of the prompt 0..39, its payload bytes derived from i.
  std::shared_ptr<Page> MakePage(uint32_t i, const std::string& tenant = "a") {
    auto prefix = cache_->Resolve(tenant, model_->model_id, Prompt());
    EXPECT_TRUE(prefix.ok());
    auto p = std::make_shared<Page>();
    p->key = prefix->keys.at(i);
    p->tenant = tenant;
    p->model = model_->fingerprint;
    p->geometry = model_->geometry;
    p->payload.resize(p->LogicalBytes());
    std::mt19937 rng(i);
    for (auto& b : p->payload) b = static_cast<uint8_t>(rng());
    SetFullLayers(p.get());
    return p;
  }
  static std::vector<uint32_t> Prompt() {
    std::vector<uint32_t> t(40);
    std::iota(t.begin(), t.end(), 7);
    return t;
  }

  static constexpr uint64_t kStored = 2 * 2 * 4 * 2 * 16 * 4 + kPageOverheadBytes;
  std::string dir_;
  std::unique_ptr<KvCache> cache_;
  std::shared_ptr<const RegisteredModel> model_;
};

TEST_F(TieredKvCacheTest, EvictedPagesDemoteAndPromoteBackByteIdentical) {
  for (uint32_t i = 0; i < 8; ++i) {
    ASSERT_TRUE(cache_->Insert(MakePage(i)).ok());
    EXPECT_LE(cache_->host().used_bytes(), cache_->host().budget_bytes());
  }
  cache_->FlushDemotions();
  TenantStats s = cache_->Stats("a");
  EXPECT_EQ(s.host.pages, 3u);
  EXPECT_EQ(s.demotions, 5u);
  EXPECT_EQ(s.disk.pages, 5u);
  EXPECT_EQ(s.disk_written_bytes, 5 * DiskTier::DiskBytes(*MakePage(0)));

  auto lookup = cache_->Lookup("a", model_->model_id, Prompt());
  ASSERT_TRUE(lookup.ok());
  EXPECT_EQ(lookup->hit_tokens, 32u);
  EXPECT_EQ(lookup->tiers.front(), Tier::kDisk);
  EXPECT_EQ(lookup->tiers.back(), Tier::kHost);

  for (uint32_t i = 0; i < 8; ++i) {
    Tier tier;
    auto got = cache_->Get(MakePage(i)->key, &tier);
    ASSERT_NE(got, nullptr) << i;
    EXPECT_TRUE(got->payload == MakePage(i)->payload) << i;
    EXPECT_LE(cache_->host().used_bytes(), cache_->host().budget_bytes());
  }
  cache_->FlushDemotions();
  s = cache_->Stats("a");
  EXPECT_GE(s.promotions, 5u);
  EXPECT_GT(s.disk_read_bytes, 0u);
  EXPECT_EQ(cache_->disk_stats().checksum_failures, 0u);
}

TEST_F(TieredKvCacheTest, DeleteRemovesThePageFromEveryTier) {
  for (uint32_t i = 0; i < 6; ++i) ASSERT_TRUE(cache_->Insert(MakePage(i)).ok());
  auto deleted = cache_->Delete("a", model_->model_id, Prompt(), 0);
  ASSERT_TRUE(deleted.ok()) << deleted.status();
  EXPECT_EQ(*deleted, 6u);
  cache_->FlushDemotions();
  EXPECT_EQ(cache_->host().page_count(), 0u);
  EXPECT_EQ(cache_->disk()->page_count(), 0u);
  Tier tier;
  for (uint32_t i = 0; i < 6; ++i) EXPECT_EQ(cache_->Get(MakePage(i)->key, &tier), nullptr);
}

TEST_F(TieredKvCacheTest, WriteThroughPagesSurviveAReopenWithoutFlushing) {
  Open(/*write_through=*/true);
  ASSERT_TRUE(cache_->Insert(MakePage(0)).ok());
  EXPECT_EQ(cache_->disk()->page_count(), 1u);  // on disk before Insert returned
  Open(/*write_through=*/true);
  EXPECT_EQ(cache_->disk()->rebuild_stats().records, 1u);
  Tier tier;
  auto got = cache_->Get(MakePage(0)->key, &tier);
  ASSERT_NE(got, nullptr);
  EXPECT_EQ(tier, Tier::kDisk);
  EXPECT_TRUE(got->payload == MakePage(0)->payload);
}

TEST_F(TieredKvCacheTest, AFullDemotionQueueDropsTheOldestAndCountsIt) {
  Open(/*write_through=*/false, /*queue_bytes=*/0);
  for (uint32_t i = 0; i < 5; ++i) ASSERT_TRUE(cache_->Insert(MakePage(i)).ok());
  cache_->FlushDemotions();
  EXPECT_EQ(cache_->disk_stats().demotions_dropped, 2u);
  EXPECT_EQ(cache_->disk()->page_count(), 0u);
}

// Pages the host tier evicts that the disk already holds (written through, or promoted) are
// not queued again: nothing waits, and none is counted as dropped.
TEST_F(TieredKvCacheTest, EvictingAPageTheDiskHoldsQueuesNothing) {
  Open(/*write_through=*/true, /*queue_bytes=*/0);
  for (uint32_t i = 0; i < 5; ++i) ASSERT_TRUE(cache_->Insert(MakePage(i)).ok());
  EXPECT_EQ(cache_->disk_stats().demotions_dropped, 0u);
  EXPECT_EQ(cache_->disk_stats().queued_bytes, 0u);

  Open(/*write_through=*/false, /*queue_bytes=*/0);  // the five pages are on disk only
  for (uint32_t i = 0; i < 5; ++i) {
    Tier tier;
    auto got = cache_->Get(MakePage(i)->key, &tier);  // promotes; evicts from i == 3 on
    ASSERT_NE(got, nullptr) << i;
    EXPECT_EQ(tier, Tier::kDisk) << i;
  }
  EXPECT_EQ(cache_->disk_stats().demotions_dropped, 0u);
  EXPECT_EQ(cache_->disk()->page_count(), 5u);
}

TEST_F(TieredKvCacheTest, ShareGroupMembersFindEachOthersPagesOthersDoNot) {
  cache_->SetNamespace("a", "group:g");
  cache_->SetNamespace("b", "group:g");
  ASSERT_TRUE(cache_->Insert(MakePage(0, "a")).ok());
  EXPECT_EQ(cache_->Lookup("b", model_->model_id, Prompt())->hit_tokens, 4u);
  EXPECT_EQ(cache_->Lookup("c", model_->model_id, Prompt())->hit_tokens, 0u);
}

TEST_F(TieredKvCacheTest, ConcurrentPutsGetsAndDeletesAcrossTiersStayConsistent) {
  // Four threads insert, get, look up and delete pages of one prompt while the host tier (three
  // pages) keeps evicting to the demotion queue and disk: every page got back is the one put,
  // and the host budget holds throughout. Run under ThreadSanitizer by ops/test.sh.
  std::vector<std::shared_ptr<Page>> pages;
  for (uint32_t i = 0; i < 10; ++i) pages.push_back(MakePage(i));
  std::atomic<int> wrong{0}, over_budget{0};
  std::vector<std::thread> threads;
  for (uint32_t t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      std::mt19937 rng(t);
      for (int op = 0; op < 300; ++op) {
        const uint32_t i = rng() % pages.size();
        switch (rng() % 4) {
          case 0:
            (void)cache_->Insert(pages[i]);
            break;
          case 1: {
            Tier tier;
            auto got = cache_->Get(pages[i]->key, &tier);
            if (got != nullptr && got->payload != pages[i]->payload) ++wrong;
            break;
          }
          case 2:
            (void)cache_->Lookup("a", model_->model_id, Prompt());
            break;
          default:
            (void)cache_->Delete("a", model_->model_id, Prompt(), i);
        }
        if (cache_->host().used_bytes() > cache_->host().budget_bytes()) ++over_budget;
      }
    });
  }
  for (auto& th : threads) th.join();
  cache_->FlushDemotions();
  EXPECT_EQ(wrong, 0);
  EXPECT_EQ(over_budget, 0);
  const TenantStats s = cache_->Stats("a");
  EXPECT_EQ(s.host.pages, cache_->host().page_count());
  EXPECT_EQ(s.disk.pages, cache_->disk()->page_count());
  EXPECT_EQ(cache_->disk_stats().queued_bytes, 0u);
}

TEST(Crc32cCrossCheck, MatchesRocksDb) {
  std::mt19937 rng(1);
  for (size_t n : {0, 1, 7, 64, 1000, 65537}) {
    std::string data(n, '\0');
    for (char& c : data) c = static_cast<char>(rng());
    auto gen = rocksdb::GetFileChecksumGenCrc32cFactory()->CreateFileChecksumGenerator({});
    gen->Update(data.data(), data.size());
    gen->Finalize();
    const std::string be = gen->GetChecksum();  // 4 bytes, big-endian
    const uint32_t theirs = (uint32_t(uint8_t(be[0])) << 24) | (uint32_t(uint8_t(be[1])) << 16) |
                            (uint32_t(uint8_t(be[2])) << 8) | uint32_t(uint8_t(be[3]));
    EXPECT_EQ(kernels::Crc32c(0, data.data(), data.size()), theirs) << n;
  }
}

}  // namespace
}  // namespace slimkv::cache
