// The modes end to end through a real slimkvd: a synthetic model in each geometry, pages put in
// each mode the model takes (from K and V, from x, from the MLA latent), got back in the engine
// layout and compared with K and V computed directly from the weights; raw gets return the
// stored representation at exactly the formula's size; a mode the model cannot take is refused.
#include <cmath>
#include <random>
#include <thread>

#include "absl/strings/str_cat.h"
#include "tests/support/synthetic_model.h"
#include "gtest/gtest.h"
#include "tests/daemon_process.h"
#include "tests/support/model_pages.h"
#include "tests/support/geometries.h"
#include "tests/support/test_pages.h"

namespace slimkv::testing {
namespace {

using client::ModelHandle;
using client::PageData;
using client::PutOptions;
using client::SyntheticModel;
using kernels::DType;

constexpr uint32_t kPageTokens = 16;
constexpr uint32_t kPages = 2;

std::vector<Geometry> Geometries() {
  using P = std::pair<v1::Mode, v1::PageInput>;
  const P full{v1::MODE_FULL, v1::PAGE_INPUT_KV}, slim{v1::MODE_SLIM, v1::PAGE_INPUT_KV},
      slim_x{v1::MODE_SLIM, v1::PAGE_INPUT_X}, xc{v1::MODE_XCACHE, v1::PAGE_INPUT_KV},
      xc_x{v1::MODE_XCACHE, v1::PAGE_INPUT_X}, proj{v1::MODE_LATENT, v1::PAGE_INPUT_KV},
      lat{v1::MODE_LATENT, v1::PAGE_INPUT_LATENT}, full_lat{v1::MODE_FULL, v1::PAGE_INPUT_LATENT};
  const auto g = [](const char* name) { return client::TestGeometry(name); };
  return {
      {"mha_square", g("mha_square"), {full, slim, slim_x, xc, xc_x, proj}},
      {"gqa", g("gqa"), {full, xc, xc_x, proj}},
      {"wide_t5", g("wide_t5"), {full, slim, xc, xc_x, proj}},
      {"qwen2_biases", g("qwen2_biases"), {full, slim, xc, xc_x, proj}},
      {"phi3_partial", g("phi3_partial"), {full, slim, xc, proj}},
      {"deepseek_mla", g("deepseek_mla"), {lat, full_lat}},
      {"mha2mla", g("mha2mla"), {lat, full_lat}},
  };
}

TEST(Modes, EveryGeometryEveryModeRoundTripsThroughTheDaemon) {
  // The projected latent at full rank (clamped to min(d, 2e)) is exact: every mode is checked
  // to 1e-5 here. Its lossy side (lower ranks, fallback on the measured error) is
  // PageCodec.ProjectedLatentExactAtFullRankMeasuredBelow.
  auto daemon = DaemonProcess::Start("latent_rank: 4096");
  ASSERT_TRUE(daemon.ok()) << daemon.status();
  auto client = (*daemon)->NewClient();
  uint32_t seed = 1;
  for (const Geometry& g : Geometries()) {
    SCOPED_TRACE(g.name);
    auto registered = WriteAndRegister(*client, (*daemon)->dir(), g.name, g.model, kPageTokens);
    ASSERT_TRUE(registered.ok()) << registered.status();
    const ModelHandle model = *registered;
    ASSERT_FALSE(model.model_id.empty());
    for (const auto& [mode, input] : g.cases) {
      SCOPED_TRACE(absl::StrCat(v1::Mode_Name(mode), " from ", v1::PageInput_Name(input)));
      const std::vector<uint32_t> tokens = Tokens(seed++, kPages * kPageTokens);
      // The engine's data per page, and K, V computed from it directly.
      std::vector<PageData> pages(kPages);
      std::vector<std::vector<SyntheticModel::Kv>> want(kPages);
      for (uint32_t p = 0; p < kPages; ++p) {
        std::vector<int32_t> positions(kPageTokens);
        for (uint32_t t = 0; t < kPageTokens; ++t) positions[t] = p * kPageTokens + t;
        std::vector<double> sent;
        for (uint32_t l = 0; l < model.num_layers; ++l) {
          const bool latent = input == v1::PAGE_INPUT_LATENT;
          const std::vector<double> src =
              RandomNormal(kPageTokens * (latent ? g.model.LatentDim() : g.model.hidden_size), seed++);
          want[p].push_back(latent ? g.model.EngineKvFromLatent(l, src)
                                   : g.model.EngineKvFromX(l, src, positions));
          if (input == v1::PAGE_INPUT_KV) {
            sent.insert(sent.end(), want[p].back().k.begin(), want[p].back().k.end());
            sent.insert(sent.end(), want[p].back().v.begin(), want[p].back().v.end());
          } else {
            sent.insert(sent.end(), src.begin(), src.end());
          }
        }
        pages[p].dtype = DType::kF32;
        pages[p].bytes = Fp32Bytes(sent);
      }
      auto put = client->Put(model, tokens, 0, pages, PutOptions{.mode = mode, .input = input});
      ASSERT_TRUE(put.ok()) << put.status();
      EXPECT_EQ(put->pages_stored(), kPages);
      EXPECT_EQ(put->layers_fallen_back(), 0u) << "well-conditioned weights in fp32";
      const bool lossy = mode == v1::MODE_LATENT && input != v1::PAGE_INPUT_LATENT;
      if (lossy) {
        EXPECT_EQ(put->pages_measured(), kPages) << "projected pages are all measured";
      }

      auto got = client->Get(model, tokens, 0, DType::kF32);
      ASSERT_TRUE(got.ok()) << got.status();
      ASSERT_EQ(got->size(), kPages);
      for (uint32_t p = 0; p < kPages; ++p) {
        const PageData& page = (*got)[p];
        EXPECT_EQ(page.mode, mode);
        for (uint32_t l = 0; l < model.num_layers; ++l) {
          EXPECT_EQ(page.layer_modes[l], mode);
          const float* k = reinterpret_cast<const float*>(
              page.bytes.data() + model.TensorOffset(l, v1::TENSOR_ROLE_K, DType::kF32));
          const float* v = reinterpret_cast<const float*>(
              page.bytes.data() + model.TensorOffset(l, v1::TENSOR_ROLE_V, DType::kF32));
          const double err = std::max(RelErr(k, want[p][l].k), RelErr(v, want[p][l].v));
          EXPECT_LE(err, 1e-5) << "page " << p << " layer " << l;
        }
      }

      // raw: the stored representation, every layer in the requested mode, sized exactly.
      auto raw = client->Get(model, tokens, 0, std::nullopt, /*raw=*/true);
      ASSERT_TRUE(raw.ok()) << raw.status();
      ASSERT_EQ(raw->size(), kPages);
      const PageData& r = (*raw)[0];
      uint64_t per_layer = 0;  // stored elements per token
      switch (mode) {
        case v1::MODE_FULL: per_layer = model.num_kv_heads * (model.k_head_dim + model.v_head_dim); break;
        case v1::MODE_SLIM: per_layer = model.num_kv_heads * model.k_head_dim; break;
        case v1::MODE_XCACHE: per_layer = model.hidden_size; break;
        default: per_layer = input == v1::PAGE_INPUT_LATENT ? model.latent_dim : 0; break;
      }
      ASSERT_EQ(r.layer_bytes.size(), model.num_layers);
      for (uint32_t l = 0; l < model.num_layers; ++l) {
        EXPECT_EQ(r.layer_modes[l], mode);
        EXPECT_EQ(r.layer_quants[l], v1::QUANT_NONE);
        if (per_layer != 0) EXPECT_EQ(r.layer_bytes[l], per_layer * kPageTokens * 4);
      }
    }
  }
}

TEST(Modes, SlimOnGqaIsRefusedWithTheReason) {
  auto daemon = DaemonProcess::Start();
  ASSERT_TRUE(daemon.ok()) << daemon.status();
  auto client = (*daemon)->NewClient();
  const std::string dir = (*daemon)->dir() + "/gqa";
  ASSERT_TRUE(Make("llama", 48, 4, 2, 16).Write(dir).ok());
  auto registered = RegisterWithFactors(*client, dir, kPageTokens);
    ASSERT_TRUE(registered.ok()) << registered.status();
    const ModelHandle model = *registered;
  const std::vector<uint32_t> tokens = Tokens(7, kPageTokens);
  auto put = client->Put(model, tokens, 0, MakePages(model, tokens, 0, DType::kBF16),
                         PutOptions{.mode = v1::MODE_SLIM});
  ASSERT_EQ(put.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(put.status().message().find("e = 2*16 = 32 < d = 48 (GQA)"), std::string::npos)
      << put.status().message();
  auto lookup = client->Lookup(model, tokens);
  ASSERT_TRUE(lookup.ok());
  EXPECT_EQ(lookup->hit_tokens(), 0u) << "a refused put changes nothing";
}

// A quantized mode through the daemon: stored at the quantized size, measured at put, and got
// back within the tolerance.
TEST(Modes, QuantizedPagesAreMeasuredAndWithinTolerance) {
  auto daemon = DaemonProcess::Start();
  ASSERT_TRUE(daemon.ok()) << daemon.status();
  auto client = (*daemon)->NewClient();
  const std::string dir = (*daemon)->dir() + "/mha";
  SyntheticModel m = Make("llama", 64, 4, 4, 16);
  ASSERT_TRUE(m.Write(dir).ok());
  auto registered = RegisterWithFactors(*client, dir, kPageTokens);
    ASSERT_TRUE(registered.ok()) << registered.status();
    const ModelHandle model = *registered;
  const std::vector<uint32_t> tokens = Tokens(9, kPageTokens);
  const std::vector<PageData> pages = MakePages(model, tokens, 0, DType::kBF16);
  auto put = client->Put(model, tokens, 0, pages,
                         PutOptions{.mode = v1::MODE_FULL, .quant = v1::QUANT_INT8});
  ASSERT_TRUE(put.ok()) << put.status();
  EXPECT_EQ(put->pages_measured(), 1u);
  EXPECT_GT(put->max_measured_error(), 0);
  EXPECT_LE(put->max_measured_error(), 1e-2);
  // int8: 1 byte per value + one fp32 scale per 64 values, instead of 2 bytes.
  EXPECT_EQ(put->stored_bytes(), model.num_layers * 2 * (kPageTokens * 64 + kPageTokens * 4) + 256);
  auto got = client->Get(model, tokens, 0, DType::kF32);
  ASSERT_TRUE(got.ok()) << got.status();
  std::vector<float> sent_f(model.PageElems());
  kernels::ConvertDType(pages[0].bytes.data(), DType::kBF16, sent_f.data(), DType::kF32,
                        sent_f.size());
  const std::vector<double> sent(sent_f.begin(), sent_f.end());
  EXPECT_LE(RelErr(reinterpret_cast<const float*>((*got)[0].bytes.data()), sent), 1e-2);
}

}  // namespace
}  // namespace slimkv::testing
