// The service's shared state under 16 concurrent "calls": each thread runs whole Put streams
// (PutAssembler), Get streams (GetStreamer), lookups, explains, deletes and stats against one
// KvCache whose budget forces eviction, while a scraper thread collects the metrics. This is the
// daemon minus the gRPC transport; it runs again under ThreadSanitizer (ops/test.sh), where
// Debian's uninstrumented gRPC cannot take part (see docs/testing.md).
#include <atomic>
#include <random>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "daemon/get_streamer.h"
#include "daemon/metrics.h"
#include "daemon/put_assembler.h"
#include "kernels/crc32c.h"

namespace slimkv::daemon {
namespace {

constexpr char kConfig[] = R"({"model_type": "llama", "num_hidden_layers": 2,
  "hidden_size": 64, "num_attention_heads": 4, "num_key_value_heads": 4,
  "max_position_embeddings": 4096})";
constexpr uint32_t kPageTokens = 8;

// Page p of `tokens`: every byte is a function of (the prompt's first token, p).
uint8_t Fill(const std::vector<uint32_t>& tokens, uint32_t p) { return uint8_t(tokens[0] * 31 + p); }

std::vector<v1::PutRequest> PutStream(const cache::RegisteredModel& m,
                                      const std::vector<uint32_t>& tokens) {
  const cache::PageGeometry& g = m.geometry;
  std::vector<v1::PutRequest> out(1);
  out[0].mutable_header()->set_model_id(m.model_id);
  out[0].mutable_header()->mutable_tokens()->Add(tokens.begin(), tokens.end());
  const std::string data(g.TensorElems(cache::Role::kK) * 2, '\0');
  for (uint32_t p = 0; p < tokens.size() / kPageTokens; ++p) {
    const std::string bytes(data.size(), static_cast<char>(Fill(tokens, p)));
    v1::PutRequest& msg = out.emplace_back();
    for (uint32_t l = 0; l < g.num_layers; ++l) {
      for (auto role : {v1::TENSOR_ROLE_K, v1::TENSOR_ROLE_V}) {
        v1::TensorChunk* c = msg.add_chunks();
        c->set_page(p);
        c->set_layer(l);
        c->set_role(role);
        c->mutable_header()->set_dtype(v1::DTYPE_BF16);
        for (int64_t d : {kPageTokens, g.num_kv_heads, g.k_head_dim}) c->mutable_header()->add_shape(d);
        c->mutable_header()->set_crc32c(kernels::Crc32c(0, bytes.data(), bytes.size()));
        c->set_data(bytes);
      }
    }
  }
  return out;
}

TEST(ServiceConcurrency, SixteenCallersShareOneCache) {
  cache::KvCache cache(cache::KvCacheOptions{.host = {.budget_bytes = 64 * 4352}});  // 64 pages
  // A tenant never evicts another's pages: the two tenants split the budget by quota.
  cache.host().SetQuota("odd", {.bytes = 32 * 4352});
  cache.host().SetQuota("even", {.bytes = 32 * 4352});
  auto model = cache.models().RegisterConfig(kConfig, kPageTokens);
  ASSERT_TRUE(model.ok()) << model.status();
  const cache::RegisteredModel& m = *model->model;
  auto metrics = Metrics::Create("127.0.0.1:0", &cache);
  ASSERT_TRUE(metrics.ok()) << metrics.status();

  std::atomic<int> failures{0}, wrong{0}, pages_back{0};
  std::atomic<bool> done{false};
  std::thread scraper([&] {
    while (!done) {
      (*metrics)->RecordRpc("t", "Scrape", absl::StatusCode::kOk, 1e-4);
      if (cache.host().used_bytes() > cache.host().budget_bytes()) ++failures;
      cache.AllStats();
    }
  });
  std::vector<std::thread> threads;
  for (uint32_t t = 0; t < 16; ++t) {
    threads.emplace_back([&, t] {
      std::mt19937 rng(t);
      const std::string tenant = t % 2 ? "odd" : "even";
      for (int i = 0; i < 150; ++i) {
        std::vector<uint32_t> tokens(kPageTokens * (1 + rng() % 4));
        for (size_t k = 0; k < tokens.size(); ++k) tokens[k] = (k == 0 ? rng() % 40 : 7) + k;
        switch (rng() % 4) {
          case 0:
          case 1: {
            PutAssembler a(&cache, tenant);
            for (const auto& msg : PutStream(m, tokens)) {
              if (!a.Add(msg).ok()) ++failures;
            }
            if (!a.Finish().ok()) ++failures;
            break;
          }
          case 2: {
            v1::GetRequest req;
            req.set_model_id(m.model_id);
            req.mutable_tokens()->Add(tokens.begin(), tokens.end());
            if (rng() % 2) req.set_dtype(v1::DTYPE_FP32);
            auto s = GetStreamer::Start(&cache, tenant, req, 1000);
            if (!s.ok()) {
              ++failures;
              break;
            }
            v1::GetResponse msg;
            while ((*s)->Next(&msg)) {
              for (const auto& c : msg.chunks()) {
                const uint8_t want = Fill(tokens, c.page());
                if (req.dtype() == v1::DTYPE_FP32) continue;  // converted: checked elsewhere
                for (char b : c.data()) wrong += static_cast<uint8_t>(b) != want;
              }
            }
            pages_back += (*s)->pages();
            break;
          }
          case 3:
            if (!cache.Lookup(tenant, m.model_id, tokens).ok()) ++failures;
            if (!cache.Explain(tenant, m.model_id, tokens).ok()) ++failures;
            if (rng() % 8 == 0 && !cache.Delete(tenant, m.model_id, tokens, 0).ok()) ++failures;
            break;
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  done = true;
  scraper.join();
  EXPECT_EQ(failures, 0);
  EXPECT_EQ(wrong, 0);
  EXPECT_GT(pages_back, 0);
  uint64_t bytes = 0;
  for (const auto& [tenant, s] : cache.AllStats()) bytes += s.host.stored_bytes;
  EXPECT_EQ(bytes, cache.host().used_bytes());
}

}  // namespace
}  // namespace slimkv::daemon
