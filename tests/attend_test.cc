// Attend end to end through a real slimkvd: a synthetic model in each geometry, pages put in
// each mode it takes, the decode step's queries sent, and the answer checked against attention
// computed here in float64 from K and V made directly from the weights (SyntheticModel's
// reference, not through any codec). The engine's side is played too: attention over tokens
// the daemon did not cover (the partial last page) merged with the daemon's (o, lse) equals
// attention over all tokens. Then partial coverage, metrics, and bad requests.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <functional>
#include <limits>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "tests/support/synthetic_model.h"
#include "gtest/gtest.h"
#include "kernels/attention.h"
#include "kernels/attention_ref.h"
#include "kernels/gpu.h"
#include "tests/daemon_process.h"
#include "tests/support/model_pages.h"
#include "tests/support/geometries.h"
#include "tests/support/test_pages.h"

namespace slimkv::testing {
namespace {

using client::AttendOutput;
using client::AttendQuery;
using client::ModelHandle;
using client::PageData;
using client::PutOptions;
using client::SyntheticModel;
using kernels::DType;

constexpr uint32_t kPageTokens = 16;
constexpr uint32_t kPages = 3;
constexpr uint32_t kExtra = 5;  // tokens after the last whole page: the engine's own
constexpr uint32_t kLayer = 1;

std::vector<Geometry> Geometries() {
  using P = std::pair<v1::Mode, v1::PageInput>;
  const P full{v1::MODE_FULL, v1::PAGE_INPUT_KV}, slim{v1::MODE_SLIM, v1::PAGE_INPUT_KV},
      xc_x{v1::MODE_XCACHE, v1::PAGE_INPUT_X}, xc{v1::MODE_XCACHE, v1::PAGE_INPUT_KV},
      proj{v1::MODE_LATENT, v1::PAGE_INPUT_KV}, lat{v1::MODE_LATENT, v1::PAGE_INPUT_LATENT},
      full_lat{v1::MODE_FULL, v1::PAGE_INPUT_LATENT};
  const auto g = [](const char* name) { return client::TestGeometry(name); };
  return {
      {"mha_square", g("mha_square"), {full, slim, xc_x, proj}},
      {"gqa", g("gqa"), {full, xc, proj}},
      {"wide_t5", g("wide_t5"), {full, slim, xc_x}},
      {"qwen2_biases", g("qwen2_biases"), {full, slim, xc}},
      {"phi3_partial", g("phi3_partial"), {full, slim, xc}},
      {"deepseek_mla", g("deepseek_mla"), {lat, full_lat}},
      {"mha2mla_q8", g("mha2mla_q8"), {lat}},  // two q heads per latent head
  };
}

// The engine's K, V of kLayer for tokens [first, first + n), in float64, from inputs drawn from
// `seed`, and what Put sends for them (K,V, x or the latent, fp32).
struct EngineSlice {
  SyntheticModel::Kv kv;
  std::vector<double> sent;
};

EngineSlice EngineTokens(const SyntheticModel& m, v1::PageInput input, uint32_t layer, uint32_t first,
                    uint32_t n, uint32_t seed) {
  const bool latent = input == v1::PAGE_INPUT_LATENT;
  const std::vector<double> src = RandomNormal(size_t{n} * (latent ? m.LatentDim() : m.hidden_size),
                                               seed);
  std::vector<int32_t> positions(n);
  for (uint32_t t = 0; t < n; ++t) positions[t] = static_cast<int32_t>(first + t);
  EngineSlice out;
  out.kv = latent ? m.EngineKvFromLatent(layer, src) : m.EngineKvFromX(layer, src, positions);
  if (input == v1::PAGE_INPUT_KV) {
    out.sent = out.kv.k;
    out.sent.insert(out.sent.end(), out.kv.v.begin(), out.kv.v.end());
  } else {
    out.sent = src;
  }
  return out;
}

kernels::KvHeads HeadsOf(const ModelHandle& m) {
  return {static_cast<int>(m.num_kv_heads), static_cast<int>(m.k_head_dim),
          static_cast<int>(m.v_head_dim)};
}

kernels::AttentionParams ParamsOf(const ModelHandle& m) {
  return {static_cast<int>(m.num_q_heads), m.softmax_scale, m.softcap};
}

// Float64 attention of q over K, V [tokens, h_kv, d].
struct RefAttention {
  std::vector<double> o, lse;
};
RefAttention Reference(const ModelHandle& m, const std::vector<double>& k,
                       const std::vector<double>& v, const std::vector<float>& q) {
  RefAttention r;
  r.o.resize(size_t{m.num_q_heads} * m.v_head_dim);
  r.lse.resize(m.num_q_heads);
  const std::vector<double> qd(q.begin(), q.end());
  const int64_t tokens = static_cast<int64_t>(k.size() / (m.num_kv_heads * m.k_head_dim));
  EXPECT_TRUE(kernels::AttendRef(HeadsOf(m), tokens, k.data(), v.data(), qd.data(), ParamsOf(m),
                                 r.o.data(), r.lse.data())
                  .ok());
  return r;
}

double RelErrF(const std::vector<float>& got, const std::vector<double>& want) {
  return RelErr(got.data(), want);
}

double LseErr(const std::vector<float>& got, const std::vector<double>& want) {
  double worst = 0;
  for (size_t i = 0; i < want.size(); ++i) {
    worst = std::max(worst, std::abs(got[i] - want[i]) / std::max(1.0, std::abs(want[i])));
  }
  return worst;
}

std::vector<float> RandomQ(const ModelHandle& m, uint32_t seed) {
  const std::vector<double> q = RandomNormal(size_t{m.num_q_heads} * m.k_head_dim, seed);
  std::vector<float> out(q.size());
  for (size_t i = 0; i < q.size(); ++i) out[i] = static_cast<float>(2.0 * q[i]);
  return out;
}

TEST(Attend, EveryGeometryAndModeMatchesFloat64AttentionAndMergesWithTheEnginesTokens) {
  // Full-rank projected latent: exact, so every mode here is held to the same tolerance.
  auto daemon = DaemonProcess::Start("latent_rank: 4096");
  ASSERT_TRUE(daemon.ok()) << daemon.status();
  auto client = (*daemon)->NewClient();
  uint32_t seed = 1;
  for (const Geometry& g : Geometries()) {
    SCOPED_TRACE(g.name);
    auto registered = WriteAndRegister(*client, (*daemon)->dir(), g.name, g.model, kPageTokens);
    ASSERT_TRUE(registered.ok()) << registered.status();
    const ModelHandle model = *registered;
    ASSERT_GT(model.softmax_scale, 0);
    for (const auto& [mode, input] : g.cases) {
      SCOPED_TRACE(absl::StrCat(v1::Mode_Name(mode), " from ", v1::PageInput_Name(input)));
      const std::vector<uint32_t> tokens = Tokens(seed++, kPages * kPageTokens + kExtra);
      // Pages: every layer from its own inputs; kLayer's K, V kept for the reference.
      std::vector<PageData> pages(kPages);
      std::vector<double> k_all, v_all;
      for (uint32_t p = 0; p < kPages; ++p) {
        std::vector<double> sent;
        for (uint32_t l = 0; l < model.num_layers; ++l) {
          EngineSlice t = EngineTokens(g.model, input, l, p * kPageTokens, kPageTokens, seed++);
          sent.insert(sent.end(), t.sent.begin(), t.sent.end());
          if (l == kLayer) {
            k_all.insert(k_all.end(), t.kv.k.begin(), t.kv.k.end());
            v_all.insert(v_all.end(), t.kv.v.begin(), t.kv.v.end());
          }
        }
        pages[p].dtype = DType::kF32;
        pages[p].bytes = Fp32Bytes(sent);
      }
      const std::span<const uint32_t> whole(tokens.data(), kPages * kPageTokens);
      auto put = client->Put(model, whole, 0, pages, PutOptions{.mode = mode, .input = input});
      ASSERT_TRUE(put.ok()) << put.status();
      ASSERT_EQ(put->layers_fallen_back(), 0u);
      // A Get of the same pages: every layer decoded, on the GPU where it can be (slim, MLA).
      auto got_pages = client->Get(model, whole, 0, DType::kF32);
      ASSERT_TRUE(got_pages.ok()) << got_pages.status();
      ASSERT_EQ(got_pages->size(), kPages);

      // The engine's own tokens after the last whole page (never cached).
      const EngineSlice extra =
          EngineTokens(g.model, input, kLayer, kPages * kPageTokens, kExtra, seed++);

      for (DType q_dtype : {DType::kF32, DType::kBF16}) {
        SCOPED_TRACE(kernels::DTypeName(q_dtype));
        std::vector<float> q = RandomQ(model, seed++);
        // What the daemon sees: the query rounded to q_dtype.
        if (q_dtype == DType::kBF16) {
          for (float& x : q) x = kernels::BF16ToFloat(kernels::FloatToBF16(x));
        }
        const AttendQuery query{tokens, q};
        auto got = client->Attend(model, kLayer, {&query, 1}, q_dtype);
        ASSERT_TRUE(got.ok()) << got.status();
        ASSERT_EQ(got->size(), 1u);
        const AttendOutput& out = (*got)[0];
        EXPECT_EQ(out.covered_tokens, kPages * kPageTokens);

        // The daemon's part against float64 attention over the same (exact) tokens.
        const RefAttention covered = Reference(model, k_all, v_all, q);
        EXPECT_LE(RelErrF(out.o, covered.o), 1e-4);
        EXPECT_LE(LseErr(out.lse, covered.lse), 1e-5);

        // The engine attends over its extra tokens and merges: attention over all tokens.
        const RefAttention mine = Reference(model, extra.kv.k, extra.kv.v, q);
        const std::vector<float> mine_o(mine.o.begin(), mine.o.end());
        const std::vector<float> mine_lse(mine.lse.begin(), mine.lse.end());
        std::vector<float> o(mine_o.size()), lse(mine_lse.size());
        kernels::MergeAttention(static_cast<int>(model.num_q_heads),
                                static_cast<int>(model.v_head_dim), out.o.data(), out.lse.data(),
                                mine_o.data(), mine_lse.data(), o.data(), lse.data());
        std::vector<double> k_every = k_all, v_every = v_all;
        k_every.insert(k_every.end(), extra.kv.k.begin(), extra.kv.k.end());
        v_every.insert(v_every.end(), extra.kv.v.begin(), extra.kv.v.end());
        const RefAttention every = Reference(model, k_every, v_every, q);
        EXPECT_LE(RelErrF(o, every.o), 1e-4);
        EXPECT_LE(LseErr(lse, every.lse), 1e-5);
      }
    }
  }
  // Every kernel call was counted under its device and stored mode; xcache never runs on the
  // GPU. The daemon runs on this machine, so it finds the GPU this test finds.
  auto scrape = ScrapeMetrics((*daemon)->metrics_port());
  ASSERT_TRUE(scrape.ok()) << scrape.status();
  auto dispatches = [&](const char* device, const char* mode) {
    return MetricValue(*scrape, absl::StrCat("slimkv_kernel_dispatches_total{device=\"", device,
                                             "\",mode=\"", mode, "\",op=\"attend\"}"));
  };
  for (const char* mode : {"full", "slim", "xcache", "latent"}) {
    EXPECT_GT(std::max(dispatches("cpu", mode), dispatches("gpu", mode)), 0) << mode;
  }
  EXPECT_GT(dispatches("cpu", "xcache"), 0);
  const double unsupported =
      MetricValue(*scrape, R"(slimkv_kernel_fallbacks_total{op="attend",reason="unsupported"})");
  const double no_gpu =
      MetricValue(*scrape, R"(slimkv_kernel_fallbacks_total{op="attend",reason="no_gpu"})");
  const double gpu_bytes = MetricValue(*scrape, "slimkv_gpu_memory_used_bytes");
  if (!kernels::gpu::Device().usable) {
    // Every call fell back for want of a GPU, and the daemon holds no device memory.
    for (const char* mode : {"full", "slim", "xcache", "latent"}) {
      EXPECT_EQ(dispatches("gpu", mode), -1) << mode;
    }
    EXPECT_GT(no_gpu, 0);
    EXPECT_EQ(unsupported, 0);
    EXPECT_EQ(gpu_bytes, 0);
  } else {
    // Full pages run on the GPU from the tier; xcache falls back as unsupported.
    EXPECT_GT(dispatches("gpu", "full"), 0);
    EXPECT_GE(unsupported, dispatches("cpu", "xcache"));
    EXPECT_EQ(no_gpu, 0);
    EXPECT_GT(gpu_bytes, 0);
  }
  // Get's decode dispatch the same way: slim pages decode on the GPU when there is one.
  auto decodes = [&](const char* device, const char* mode) {
    return MetricValue(*scrape, absl::StrCat("slimkv_kernel_dispatches_total{device=\"", device,
                                             "\",mode=\"", mode, "\",op=\"decode\"}"));
  };
  const double decode_no_gpu =
      MetricValue(*scrape, R"(slimkv_kernel_fallbacks_total{op="decode",reason="no_gpu"})");
  if (!kernels::gpu::Device().usable) {
    EXPECT_GT(decodes("cpu", "slim"), 0);
    EXPECT_EQ(decodes("gpu", "slim"), -1);
    EXPECT_GT(decode_no_gpu, 0);
  } else {
    EXPECT_GT(decodes("gpu", "slim"), 0);
    EXPECT_EQ(decode_no_gpu, 0);
  }
  EXPECT_NE(scrape->find("slimkv_rpcs_total{code=\"OK\",method=\"Attend\""), std::string::npos);
}

// A daemon with one MHA model registered, its factors ready.
class AttendMha : public ::testing::Test {
 protected:
  void SetUp() override {
    auto daemon = DaemonProcess::Start();
    ASSERT_TRUE(daemon.ok()) << daemon.status();
    daemon_ = *std::move(daemon);
    client = daemon_->NewClient();
    auto registered = WriteAndRegister(*client, daemon_->dir(), "mha", m, kPageTokens);
    ASSERT_TRUE(registered.ok()) << registered.status();
    model = *registered;
  }

  std::unique_ptr<DaemonProcess> daemon_;
  std::unique_ptr<client::Client> client;
  const SyntheticModel m = Make("llama", 64, 4, 4, 16);
  ModelHandle model;
};

// Two sequences in one call: the first fully stored, the second with only its first page
// stored; each covers its leading stored pages, and a sequence with none gets o = 0, lse = −inf.
TEST_F(AttendMha, CoversLeadingStoredPagesPerSequence) {
  const std::vector<uint32_t> a = Tokens(11, 2 * kPageTokens), b = Tokens(12, 3 * kPageTokens);
  const std::vector<uint32_t> none = Tokens(13, 2 * kPageTokens);
  ASSERT_TRUE(client->Put(model, a, 0, EnginePages(m, model, a, 1)).ok());
  const std::span<const uint32_t> b_first(b.data(), kPageTokens);
  ASSERT_TRUE(client->Put(model, b_first, 0, EnginePages(m, model, b_first, 2)).ok());
  const std::vector<float> q = RandomQ(model, 5);
  const AttendQuery queries[] = {{a, q}, {b, q}, {none, q}};
  auto got = client->Attend(model, 0, queries);
  ASSERT_TRUE(got.ok()) << got.status();
  ASSERT_EQ(got->size(), 3u);
  EXPECT_EQ((*got)[0].covered_tokens, 2 * kPageTokens);
  EXPECT_EQ((*got)[1].covered_tokens, kPageTokens);
  EXPECT_EQ((*got)[2].covered_tokens, 0u);
  for (float x : (*got)[2].o) EXPECT_EQ(x, 0.0f);
  for (float x : (*got)[2].lse) EXPECT_EQ(x, -std::numeric_limits<float>::infinity());
  for (float x : (*got)[0].lse) EXPECT_TRUE(std::isfinite(x));
}

TEST_F(AttendMha, BadRequestsNameTheirFieldAndChangeNothing) {
  const std::vector<uint32_t> tokens = Tokens(21, kPageTokens);
  ASSERT_TRUE(client->Put(model, tokens, 0, EnginePages(m, model, tokens, 3)).ok());
  const std::vector<float> q = RandomQ(model, 6);

  auto call = [&](const v1::AttendRequest& r) {
    v1::AttendResponse response;
    auto ctx = client->NewContext();
    return client::FromGrpcStatus(client->stub()->Attend(ctx.get(), r, &response));
  };
  v1::AttendRequest good;
  good.set_model_id(model.model_id);
  good.set_layer(0);
  good.set_q_dtype(v1::DTYPE_FP32);
  v1::AttendSequence* s = good.add_sequences();
  s->mutable_tokens()->Add(tokens.begin(), tokens.end());
  s->set_q(std::string(reinterpret_cast<const char*>(q.data()), q.size() * 4));
  ASSERT_TRUE(call(good).ok());

  struct Case {
    const char* what;
    std::function<void(v1::AttendRequest&)> mutate;
    absl::StatusCode code;
    const char* field;
  };
  const std::vector<Case> cases = {
      {"no sequences", [](auto& r) { r.clear_sequences(); }, absl::StatusCode::kInvalidArgument,
       "sequences"},
      {"layer", [&](auto& r) { r.set_layer(model.num_layers); },
       absl::StatusCode::kInvalidArgument, "layer: 2 but the model has 2 layers"},
      {"q_dtype", [](auto& r) { r.set_q_dtype(v1::DTYPE_UNSPECIFIED); },
       absl::StatusCode::kInvalidArgument, "q_dtype"},
      {"q size", [](auto& r) { r.mutable_sequences(0)->mutable_q()->resize(12); },
       absl::StatusCode::kInvalidArgument, "sequences[0].q: 12 bytes"},
      {"q NaN",
       [](auto& r) {
         const float nan = std::numeric_limits<float>::quiet_NaN();
         std::memcpy(r.mutable_sequences(0)->mutable_q()->data() + 8, &nan, 4);
       },
       absl::StatusCode::kInvalidArgument, "sequences[0].q: element 2 is not finite"},
      {"tokens", [](auto& r) { r.mutable_sequences(0)->clear_tokens(); },
       absl::StatusCode::kInvalidArgument, "sequences[0].tokens"},
      {"model_id", [](auto& r) { r.set_model_id(std::string(64, 'a')); },
       absl::StatusCode::kNotFound, "model_id"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.what);
    v1::AttendRequest r = good;
    c.mutate(r);
    const absl::Status st = call(r);
    EXPECT_EQ(st.code(), c.code) << st;
    EXPECT_NE(st.message().find(c.field), std::string::npos) << st.message();
  }
  // A second bad sequence after a good one: refused as a whole.
  v1::AttendRequest two = good;
  *two.add_sequences() = good.sequences(0);
  two.mutable_sequences(1)->mutable_q()->resize(4);
  EXPECT_EQ(call(two).code(), absl::StatusCode::kInvalidArgument);
  auto lookup = client->Lookup(model, tokens);
  ASSERT_TRUE(lookup.ok());
  EXPECT_EQ(lookup->hit_tokens(), kPageTokens) << "bad requests changed nothing";
}

}  // namespace
}  // namespace slimkv::testing
