#include "cache/kv_cache.h"

#include <memory>
#include <numeric>
#include <random>
#include <string>
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
