#include "daemon/put_assembler.h"

#include <numeric>
#include <set>
#include <vector>

#include <gtest/gtest.h>

#include "daemon/get_streamer.h"
#include "kernels/crc32c.h"

namespace slimkv::daemon {
namespace {

constexpr char kConfig[] = R"({"model_type": "llama", "num_hidden_layers": 2,
  "hidden_size": 32, "num_attention_heads": 4, "num_key_value_heads": 2,
  "max_position_embeddings": 128})";

class PutAssemblerTest : public ::testing::Test {
 protected:
  PutAssemblerTest() : cache_(cache::KvCacheOptions{.host = {.budget_bytes = 1 << 20}}) {
    model_ = cache_.models().RegisterConfig(kConfig, 4)->model;
    tokens_.resize(12);
    std::iota(tokens_.begin(), tokens_.end(), 1);
  }

  // The messages that put pages [first, 3) of tokens_ in fp32, each tensor split into pieces of
  // at most `piece` bytes, each message holding `per_message` chunks.
  std::vector<v1::PutRequest> Stream(uint32_t first, size_t piece, size_t per_message) {
    const cache::PageGeometry& g = model_->geometry;
    std::vector<v1::TensorChunk> chunks;
    for (uint32_t p = first; p < 3; ++p) {
      for (uint32_t l = 0; l < g.num_layers; ++l) {
        for (auto role : {v1::TENSOR_ROLE_K, v1::TENSOR_ROLE_V}) {
          std::vector<float> t(g.TensorElems(cache::Role::kK));
          for (size_t i = 0; i < t.size(); ++i) t[i] = p * 1000 + l * 100 + role * 10 + i * 0.5f;
          const auto* bytes = reinterpret_cast<const char*>(t.data());
          const size_t size = t.size() * 4;
          for (size_t off = 0; off < size; off += piece) {
            v1::TensorChunk c;
            c.set_page(p);
            c.set_layer(l);
            c.set_role(role);
            if (off == 0) {
              c.mutable_header()->set_dtype(v1::DTYPE_FP32);
              for (int64_t d : {4, 2, 8}) c.mutable_header()->add_shape(d);
              c.mutable_header()->set_crc32c(kernels::Crc32c(0, bytes, size));
            }
            c.set_offset(off);
            c.set_data(bytes + off, std::min(piece, size - off));
            chunks.push_back(c);
          }
        }
      }
    }
    std::vector<v1::PutRequest> out(1);
    out[0].mutable_header()->set_model_id(model_->model_id);
    out[0].mutable_header()->mutable_tokens()->Add(tokens_.begin(), tokens_.end());
    out[0].mutable_header()->set_first_page(first);
    for (const auto& c : chunks) {
      if (out.back().chunks_size() == int(per_message)) out.emplace_back();
      *out.back().add_chunks() = c;
    }
    return out;
  }

  cache::KvCache cache_;
  std::shared_ptr<const cache::RegisteredModel> model_;
  std::vector<uint32_t> tokens_;
};

TEST_F(PutAssemblerTest, AssemblesPagesFromAnyChunking) {
  for (auto [piece, per_message] : {std::pair<size_t, size_t>{256, 1}, {7, 5}, {1000, 100}}) {
    cache::KvCache fresh(cache::KvCacheOptions{.host = {.budget_bytes = 1 << 20}});
    ASSERT_TRUE(fresh.models().RegisterConfig(kConfig, 4).ok());
    PutAssembler a(&fresh, "t");
    for (const auto& m : Stream(0, piece, per_message)) ASSERT_TRUE(a.Add(m).ok());
    ASSERT_TRUE(a.Finish().ok());
    EXPECT_EQ(a.response().pages_stored(), 3u);
    EXPECT_EQ(fresh.host().page_count(), 3u);
  }
}

TEST_F(PutAssemblerTest, GetStreamsBackWhatWasPut) {
  PutAssembler a(&cache_, "t");
  for (const auto& m : Stream(0, 100, 3)) ASSERT_TRUE(a.Add(m).ok());
  ASSERT_TRUE(a.Finish().ok());
  v1::GetRequest req;
  req.set_model_id(model_->model_id);
  req.mutable_tokens()->Add(tokens_.begin(), tokens_.end());
  req.set_first_page(1);
  auto s = GetStreamer::Start(&cache_, "t", req, 50);
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ((*s)->pages(), 2u);
  v1::GetResponse msg;
  ASSERT_TRUE((*s)->Next(&msg));
  EXPECT_EQ(msg.header().pages(), 2u);
  std::string got;
  while ((*s)->Next(&msg)) {
    for (const auto& c : msg.chunks()) got += c.data();
  }
  std::string want;
  for (const auto& m : Stream(1, 1 << 20, 1000)) {
    for (const auto& c : m.chunks()) want += c.data();
  }
  EXPECT_EQ(got, want);
}

// Pages being received are bounded across streams; a finished page returns its share.
TEST_F(PutAssemblerTest, InflightBytesAreBoundedAcrossStreams) {
  // One fp32 page of this model: 2 layers × (K + V) × 4 × 2 × 8 × 4 B, plus the overhead.
  const uint64_t page = 2 * 2 * 4 * 2 * 8 * 4 + cache::kPageOverheadBytes;
  cache::KvCache small(cache::KvCacheOptions{.host = {.budget_bytes = 1 << 20},
                                             .max_put_inflight_bytes = page + page / 2});
  ASSERT_TRUE(small.models().RegisterConfig(kConfig, 4).ok());
  // One tensor per message, the header riding with the first: page 0 is messages 0..3.
  const auto stream = Stream(0, 1 << 20, 1);
  PutAssembler a(&small, "t"), b(&small, "t");
  ASSERT_TRUE(a.Add(stream[0]).ok());  // a starts page 0 and holds its bytes
  const absl::Status refused = b.Add(stream[0]);
  EXPECT_EQ(refused.code(), absl::StatusCode::kResourceExhausted) << refused;
  EXPECT_NE(refused.message().find("max_put_inflight_bytes"), std::string::npos) << refused;
  for (size_t i = 1; i <= 3; ++i) ASSERT_TRUE(a.Add(stream[i]).ok());  // a's page 0 completes
  PutAssembler c(&small, "t");
  EXPECT_TRUE(c.Add(stream[0]).ok());  // a's share came back
}

// A page deleted after the header was sent ends the stream there: the client gets a prefix.
TEST_F(PutAssemblerTest, GetEndsAtAPageDeletedMidStream) {
  PutAssembler a(&cache_, "t");
  for (const auto& m : Stream(0, 1 << 20, 1000)) ASSERT_TRUE(a.Add(m).ok());
  ASSERT_TRUE(a.Finish().ok());
  v1::GetRequest req;
  req.set_model_id(model_->model_id);
  req.mutable_tokens()->Add(tokens_.begin(), tokens_.end());
  auto s = GetStreamer::Start(&cache_, "t", req, 1 << 20);
  ASSERT_TRUE(s.ok());
  v1::GetResponse msg;
  ASSERT_TRUE((*s)->Next(&msg));
  EXPECT_EQ(msg.header().pages(), 3u);
  ASSERT_EQ(*cache_.Delete("t", model_->model_id, tokens_, 1), 2u);
  std::set<uint32_t> pages;
  while ((*s)->Next(&msg)) {
    for (const auto& c : msg.chunks()) pages.insert(c.page());
  }
  EXPECT_EQ(pages, std::set<uint32_t>{0});
  EXPECT_EQ((*s)->pages(), 1u);
}

TEST_F(PutAssemblerTest, PagesCompletedBeforeAnErrorStay) {
  auto stream = Stream(0, 1 << 20, 1);
  // Corrupt the CRC of the first tensor of page 2.
  for (auto& m : stream) {
    for (auto& c : *m.mutable_chunks()) {
      if (c.page() == 2 && c.layer() == 0 && c.has_header()) c.mutable_header()->set_crc32c(1);
    }
  }
  PutAssembler a(&cache_, "t");
  absl::Status s;
  for (const auto& m : stream) {
    if (s = a.Add(m); !s.ok()) break;
  }
  EXPECT_EQ(s.code(), absl::StatusCode::kDataLoss);
  EXPECT_NE(s.message().find("crc32c"), std::string::npos) << s;
  EXPECT_EQ(cache_.host().page_count(), 2u);
}

}  // namespace
}  // namespace slimkv::daemon
