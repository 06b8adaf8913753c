// Attention over stored pages (cache/page_attention.h): every mode each synthetic geometry
// takes, unquantized (fp32, bf16) and quantized (int8, fp8), over three pages at their prefix
// positions, and a sequence mixing modes — against the float64 reference attention
// (kernels/attention_ref.h) on the K and V that DecodeLayer reconstructs from the same pages.
// Tolerances as the kernels' (kernels/attention_test.cc): o 1e-5 relative Frobenius, lse 5e-6
// relative past 1.
#include "cache/page_attention.h"

#include <cmath>
#include <random>
#include <string>

#include "absl/strings/str_cat.h"
#include "cache/internal/synthetic_codec.h"
#include "cache/page_codec.h"
#include "gtest/gtest.h"
#include "kernels/attention_ref.h"

namespace slimkv::cache {
namespace {

using client::SyntheticModel;
using kernels::DType;

constexpr uint32_t kTokens = 16;
constexpr uint32_t kPages = 3;
constexpr uint32_t kLayer = 1;

std::vector<float> Random(size_t n, uint32_t seed, double scale = 1.0) {
  std::mt19937 rng(seed);
  std::normal_distribution<double> normal(0, scale);
  std::vector<float> v(n);
  for (float& x : v) x = static_cast<float>(normal(rng));
  return v;
}

struct Geometry {
  const char* name;
  SyntheticModel model;
};

std::vector<Geometry> Geometries() {
  SyntheticModel mha2mla = SyntheticModel::Small("mha2mla", 64, 8, 4, 16);
  mha2mla.kv_lora_rank = 8;
  mha2mla.rope_dim = 4;
  return {
      {"mha_square", SyntheticModel::Small("llama", 64, 4, 4, 16)},
      {"gqa", SyntheticModel::Small("llama", 64, 8, 2, 16)},
      {"wide_t5", SyntheticModel::Small("t5", 32, 4, 4, 16)},
      {"qwen2_biases", SyntheticModel::Small("qwen2", 64, 4, 4, 16)},
      {"phi3_partial", SyntheticModel::Small("phi3", 64, 4, 4, 16)},
      {"deepseek_mla", SyntheticModel::Small("deepseek", 64, 4, 4, 16)},
      {"mha2mla_gqa", mha2mla},
  };
}

class PageAttentionTest : public ::testing::Test {
 protected:
  void Use(const SyntheticModel& m) {
    loaded_ = testing_util::LoadSynthetic(m);
    input_ = loaded_->codec->is_mla() ? PageInput::kLatent : PageInput::kX;
  }
  const ModelConfig& config() const { return loaded_->config; }

  // Page `index` of a prefix, from random engine input, stored as `mode` + `quant`.
  std::shared_ptr<const Page> MakePage(uint32_t index, Mode mode, Quant quant, DType dtype) {
    const ModelCodec& codec = *loaded_->codec;
    auto page = std::make_shared<Page>();
    page->dtype = dtype;
    const ModelConfig& c = config();
    page->geometry = {kTokens, c.num_layers, c.num_kv_heads, c.k_head_dim, c.v_head_dim};
    const uint64_t n = LayerInputBytes(codec, input_, DType::kF32, kTokens) / 4 * c.num_layers;
    const std::vector<float> values = Random(n, 100 + index);
    std::vector<uint8_t> in(n * kernels::DTypeSize(dtype));
    kernels::ConvertDType(values.data(), DType::kF32, in.data(), dtype, n);
    EncodeOptions o{.mode = mode, .quant = quant, .input = input_, .tolerance = 1.0};
    auto outcomes = EncodePage(codec, o, in.data(), index, page.get());
    EXPECT_TRUE(outcomes.ok()) << outcomes.status();
    return page;
  }

  // Checks AttendLayer on `pages` against the reference on their decoded K, V.
  void Check(const std::vector<std::shared_ptr<const Page>>& pages, AttendCalls* calls) {
    const ModelConfig& c = config();
    const int h_q = static_cast<int>(c.num_q_heads);
    const std::vector<float> q = Random(size_t{c.num_q_heads} * c.k_head_dim, 7, 2.0);
    std::vector<float> o(size_t{c.num_q_heads} * c.v_head_dim), lse(h_q);
    const absl::Status s =
        AttendLayer(*loaded_->codec, pages, kLayer, q.data(), {o.data(), lse.data()}, calls);
    ASSERT_TRUE(s.ok()) << s;

    const uint64_t nk = uint64_t{kTokens} * c.num_kv_heads * c.k_head_dim;
    const uint64_t nv = uint64_t{kTokens} * c.num_kv_heads * c.v_head_dim;
    std::vector<double> k_all, v_all;
    for (size_t i = 0; i < pages.size(); ++i) {
      std::vector<float> k(nk), v(nv);
      ASSERT_TRUE(DecodeLayer(*loaded_->codec, *pages[i], kLayer, static_cast<uint32_t>(i),
                              DType::kF32, k.data(), v.data())
                      .ok());
      k_all.insert(k_all.end(), k.begin(), k.end());
      v_all.insert(v_all.end(), v.begin(), v.end());
    }
    const std::vector<double> qd(q.begin(), q.end());
    std::vector<double> o_ref(o.size()), lse_ref(h_q);
    ASSERT_TRUE(kernels::AttendRef({static_cast<int>(c.num_kv_heads), static_cast<int>(c.k_head_dim),
                                    static_cast<int>(c.v_head_dim)},
                                   int64_t{kTokens} * static_cast<int64_t>(pages.size()),
                                   k_all.data(), v_all.data(), qd.data(), AttentionParamsOf(c),
                                   o_ref.data(), lse_ref.data())
                    .ok());
    double diff = 0, norm = 0;
    for (size_t i = 0; i < o.size(); ++i) {
      ASSERT_TRUE(std::isfinite(o[i]));
      diff += (o[i] - o_ref[i]) * (o[i] - o_ref[i]);
      norm += o_ref[i] * o_ref[i];
    }
    EXPECT_LE(std::sqrt(diff / norm), 1e-5);
    for (int i = 0; i < h_q; ++i) {
      EXPECT_LE(std::abs(lse[i] - lse_ref[i]), 5e-6 * std::max(1.0, std::abs(lse_ref[i])));
    }
  }

  std::unique_ptr<testing_util::LoadedModel> loaded_;
  PageInput input_ = PageInput::kX;
};

TEST_F(PageAttentionTest, EveryModeAndQuantizerMatchesTheReferenceOnDecodedPages) {
  for (const Geometry& g : Geometries()) {
    SCOPED_TRACE(g.name);
    Use(g.model);
    for (Mode mode : {Mode::kFull, Mode::kSlim, Mode::kXcache, Mode::kLatent}) {
      if (!loaded_->codec->Supports(mode, input_).ok()) continue;
      for (auto [quant, dtype] : {std::pair{Quant::kNone, DType::kF32},
                                  std::pair{Quant::kNone, DType::kBF16},
                                  std::pair{Quant::kInt8, DType::kBF16},
                                  std::pair{Quant::kFp8, DType::kF16}}) {
        SCOPED_TRACE(absl::StrCat(ModeName(mode), " ", QuantName(quant), " ",
                                  kernels::DTypeName(dtype)));
        std::vector<std::shared_ptr<const Page>> pages;
        for (uint32_t i = 0; i < kPages; ++i) pages.push_back(MakePage(i, mode, quant, dtype));
        const Mode stored = pages[0]->layers[kLayer].mode;
        EXPECT_EQ(stored, mode) << "tolerance 1: nothing falls back";
        AttendCalls calls;
        Check(pages, &calls);
        EXPECT_EQ(calls.by_mode[static_cast<size_t>(stored)], 1u) << "one kernel call per run";
      }
    }
  }
}

TEST_F(PageAttentionTest, MixedModesAreAttendedPerRunAndMerged) {
  Use(SyntheticModel::Small("llama", 64, 4, 4, 16));
  const std::vector<std::shared_ptr<const Page>> pages = {
      MakePage(0, Mode::kFull, Quant::kNone, DType::kBF16),
      MakePage(1, Mode::kSlim, Quant::kNone, DType::kBF16),
      MakePage(2, Mode::kSlim, Quant::kInt8, DType::kBF16),
      MakePage(3, Mode::kXcache, Quant::kNone, DType::kBF16),
      MakePage(4, Mode::kFull, Quant::kNone, DType::kBF16)};
  AttendCalls calls;
  Check(pages, &calls);
  EXPECT_EQ(calls.by_mode[static_cast<size_t>(Mode::kFull)], 2u);
  EXPECT_EQ(calls.by_mode[static_cast<size_t>(Mode::kSlim)], 1u) << "one run of two pages";
  EXPECT_EQ(calls.by_mode[static_cast<size_t>(Mode::kXcache)], 1u);
}

TEST_F(PageAttentionTest, NoPagesBadLayerAndCorruptPages) {
  Use(SyntheticModel::Small("llama", 64, 4, 4, 16));
  const ModelConfig& c = config();
  const std::vector<float> q = Random(size_t{c.num_q_heads} * c.k_head_dim, 3);
  std::vector<float> o(size_t{c.num_q_heads} * c.v_head_dim, 7.0f), lse(c.num_q_heads, 7.0f);
  ASSERT_TRUE(AttendLayer(*loaded_->codec, {}, 0, q.data(), {o.data(), lse.data()}).ok());
  for (float x : o) EXPECT_EQ(x, 0.0f);
  for (float x : lse) EXPECT_EQ(x, -std::numeric_limits<float>::infinity());

  std::fill(o.begin(), o.end(), 7.0f);
  std::vector<std::shared_ptr<const Page>> pages = {
      MakePage(0, Mode::kSlim, Quant::kNone, DType::kBF16)};
  const absl::Status bad_layer =
      AttendLayer(*loaded_->codec, pages, c.num_layers, q.data(), {o.data(), lse.data()});
  EXPECT_EQ(bad_layer.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(bad_layer.message().find("layer"), std::string::npos);
  auto corrupt = std::make_shared<Page>(*pages[0]);
  corrupt->payload[corrupt->LayerOffset(kLayer) + 3] ^= 0x40;
  pages.push_back(corrupt);
  EXPECT_EQ(AttendLayer(*loaded_->codec, pages, kLayer, q.data(), {o.data(), lse.data()}).code(),
            absl::StatusCode::kDataLoss);
  for (float x : o) EXPECT_EQ(x, 7.0f) << "nothing written on error";
}

}  // namespace
}  // namespace slimkv::cache
