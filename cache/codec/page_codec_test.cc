// Page codec conformance: every mode × input × dtype × geometry, against K and V recomputed
// directly from x (K = R_p·(x·W_K + b_K), V = x·W_V + b_V) or from the latent (K_nope,h =
// c·W_UK,h, V_h = c·W_UV,h) in float64 from the checkpoint's own tensors — not through the
// codecs under test.
#include "cache/codec/page_codec.h"

#include <cmath>
#include <filesystem>
#include <random>
#include <string>

#include "cache/model/factor_store.h"
#include "tests/support/synthetic_codec.h"
#include "tests/support/geometries.h"
#include "tests/support/synthetic_model.h"
#include "gtest/gtest.h"

namespace slimkv::cache {
namespace {

using client::SyntheticModel;
using kernels::DType;

constexpr uint32_t kTokens = 16;
constexpr uint32_t kPage = 3;  // positions 48..63

struct Geometry {
  const char* name;
  SyntheticModel model;
};

SyntheticModel Make(std::string arch, uint32_t d, uint32_t heads, uint32_t kv_heads,
                    uint32_t head_dim) {
  return SyntheticModel::Small(std::move(arch), d, heads, kv_heads, head_dim);
}

std::vector<Geometry> Geometries() {
  std::vector<Geometry> out;
  for (const char* name : {"mha_square", "gqa_d2e", "wide_t5", "qwen2_biases", "phi3_partial",
                           "deepseek_mla", "mha2mla"}) {
    out.push_back({name, client::TestGeometry(name)});
  }
  return out;
}

std::unique_ptr<testing_util::LoadedModel> Load(const SyntheticModel& m,
                                                CodecOptions options = {}) {
  return testing_util::LoadSynthetic(m, options);
}

std::vector<double> RandomRows(uint64_t rows, uint64_t cols, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<double> normal(0, 1);
  std::vector<double> v(rows * cols);
  for (double& x : v) x = normal(rng);
  return v;
}

using Reference = SyntheticModel::Kv;

std::vector<int32_t> PagePositions() {
  std::vector<int32_t> pos(kTokens);
  for (uint32_t t = 0; t < kTokens; ++t) pos[t] = static_cast<int32_t>(kPage * kTokens + t);
  return pos;
}

Reference FromX(const SyntheticModel& m, const ModelConfig&, uint32_t layer,
                const std::vector<double>& x) {
  return m.EngineKvFromX(layer, x, PagePositions());
}

Reference FromLatent(const SyntheticModel& m, const ModelConfig&, uint32_t layer,
                     const std::vector<double>& lat) {
  return m.EngineKvFromLatent(layer, lat);
}

double RelErr(const std::vector<float>& got, const std::vector<double>& want) {
  double diff = 0, ref = 0;
  for (size_t i = 0; i < want.size(); ++i) {
    diff += (got[i] - want[i]) * (got[i] - want[i]);
    ref += want[i] * want[i];
  }
  return std::sqrt(diff / ref);
}

// The page's input bytes in `dtype`: per layer K then V, or x, or the latent row.
std::vector<uint8_t> InputBytes(const std::vector<std::vector<double>>& per_layer, DType dtype) {
  std::vector<uint8_t> out;
  for (const auto& values : per_layer) {
    const std::vector<float> f(values.begin(), values.end());
    const size_t at = out.size();
    out.resize(at + f.size() * kernels::DTypeSize(dtype));
    kernels::ConvertDType(f.data(), DType::kF32, out.data() + at, dtype, f.size());
  }
  return out;
}

Page EmptyPage(const ModelConfig& c, DType dtype) {
  Page p;
  p.dtype = dtype;
  p.geometry = {kTokens, c.num_layers, c.num_kv_heads, c.k_head_dim, c.v_head_dim};
  return p;
}

struct Case {
  Mode mode;
  PageInput input;
};

TEST(PageCodec, LosslessModesMatchDirectRecomputationInFp32) {
  for (const Geometry& g : Geometries()) {
    SCOPED_TRACE(g.name);
    auto loaded = Load(g.model);
    const ModelCodec& codec = *loaded->codec;
    const ModelConfig& c = loaded->config;
    const bool mla = c.mla.has_value();
    // Engine data per layer and the reference K, V.
    std::vector<std::vector<double>> x, kv, latent;
    std::vector<Reference> ref;
    for (uint32_t l = 0; l < c.num_layers; ++l) {
      if (mla) {
        latent.push_back(RandomRows(kTokens, codec.InputCols(PageInput::kLatent, Role::kK), l));
        ref.push_back(FromLatent(g.model, c, l, latent.back()));
      } else {
        x.push_back(RandomRows(kTokens, c.hidden_size, 100 + l));
        ref.push_back(FromX(g.model, c, l, x.back()));
      }
      std::vector<double> both = ref.back().k;
      both.insert(both.end(), ref.back().v.begin(), ref.back().v.end());
      kv.push_back(std::move(both));
    }
    int checked = 0;
    for (const Case& k : {Case{Mode::kFull, PageInput::kKv}, Case{Mode::kFull, PageInput::kX},
                          Case{Mode::kFull, PageInput::kLatent}, Case{Mode::kSlim, PageInput::kKv},
                          Case{Mode::kSlim, PageInput::kX}, Case{Mode::kXcache, PageInput::kKv},
                          Case{Mode::kXcache, PageInput::kX},
                          Case{Mode::kLatent, PageInput::kLatent}}) {
      if (!codec.Supports(k.mode, k.input).ok()) continue;
      SCOPED_TRACE(absl::StrCat(ModeName(k.mode), " from input ", static_cast<int>(k.input)));
      const auto& data = k.input == PageInput::kKv ? kv : k.input == PageInput::kX ? x : latent;
      const std::vector<uint8_t> in = InputBytes(data, DType::kF32);
      ASSERT_EQ(in.size(), c.num_layers * LayerInputBytes(codec, k.input, DType::kF32, kTokens));
      Page page = EmptyPage(c, DType::kF32);
      EncodeOptions o{.mode = k.mode, .input = k.input, .tolerance = 1e-5, .verify = true};
      auto outcomes = EncodePage(codec, o, in.data(), kPage, &page);
      ASSERT_TRUE(outcomes.ok()) << outcomes.status();
      uint64_t want_bytes = 0;
      for (uint32_t l = 0; l < c.num_layers; ++l) {
        EXPECT_EQ(page.layers[l].mode, k.mode) << "layer " << l << " fell back: "
                                               << FallbackReasonName((*outcomes)[l].fallback);
        for (const StoredPart& p : StoredParts(codec, l, k.mode)) {
          want_bytes += StoredPartBytes(p, Quant::kNone, DType::kF32, kTokens);
        }
        std::vector<float> kk(ref[l].k.size()), vv(ref[l].v.size());
        ASSERT_TRUE(DecodeLayer(codec, page, l, kPage, DType::kF32, kk.data(), vv.data()).ok());
        EXPECT_LE(RelErr(kk, ref[l].k), 1e-5) << "K, layer " << l;
        EXPECT_LE(RelErr(vv, ref[l].v), 1e-5) << "V, layer " << l;
      }
      // Stored bytes are exactly the mode's elements per token, nothing hidden.
      EXPECT_EQ(page.payload.size(), want_bytes);
      ++checked;
    }
    EXPECT_GE(checked, 2);
  }
}

// With a FactorStore, Build keeps no matrix; each mode's first use reads its own (W_K, W_V
// from the checkpoint, derived ones from the store, recomputed when the entry is gone), and
// pages come out byte for byte as from a codec that kept its derived matrices resident.
TEST(PageCodec, MatricesAreReadOnFirstUse) {
  const SyntheticModel model = Make("llama", 64, 4, 4, 16);  // e = d: W_KV, pinv, basis all exist
  auto eager = Load(model);  // no store: derived matrices resident from Build
  const ModelConfig& c = eager->config;
  testing_util::ScratchDir factors;
  const FactorStore store(factors.path());
  Fingerprint fp{};
  fp[0] = 7;
  auto built = ModelCodec::Build(c, eager->weights, fp, &store, {}, nullptr);
  ASSERT_TRUE(built.ok()) << built.status();
  const ModelCodec& lazy = **built;
  const uint64_t d = c.hidden_size, e = uint64_t{c.num_kv_heads} * c.k_head_dim;
  const uint64_t rank = static_cast<uint64_t>(lazy.StoredCols(0, Mode::kLatent));
  EXPECT_EQ(eager->codec->ResidentMatrixBytes(), c.num_layers * 4 * (e * e + 2 * e * d + 2 * e * rank));
  EXPECT_EQ(lazy.ResidentMatrixBytes(), 0u);

  std::vector<std::vector<double>> kv;
  for (uint32_t l = 0; l < c.num_layers; ++l) {
    const Reference r = FromX(model, c, l, RandomRows(kTokens, c.hidden_size, 300 + l));
    std::vector<double> both = r.k;
    both.insert(both.end(), r.v.begin(), r.v.end());
    kv.push_back(std::move(both));
  }
  const std::vector<uint8_t> in = InputBytes(kv, DType::kF32);
  auto same_page = [&](const ModelCodec& codec, Mode m) {
    EncodeOptions o{.mode = m, .input = PageInput::kKv, .tolerance = 1e-2, .verify = true};
    Page want = EmptyPage(c, DType::kF32), got = EmptyPage(c, DType::kF32);
    ASSERT_TRUE(EncodePage(*eager->codec, o, in.data(), kPage, &want).ok());
    ASSERT_TRUE(EncodePage(codec, o, in.data(), kPage, &got).ok());
    EXPECT_EQ(got.payload, want.payload);
    for (uint32_t l = 0; l < c.num_layers; ++l) {
      EXPECT_EQ(got.layers[l].mode, m);
      std::vector<float> k(kTokens * e), v(kTokens * e), k2(k.size()), v2(v.size());
      ASSERT_TRUE(DecodeLayer(*eager->codec, want, l, kPage, DType::kF32, k.data(), v.data()).ok());
      ASSERT_TRUE(DecodeLayer(codec, got, l, kPage, DType::kF32, k2.data(), v2.data()).ok());
      EXPECT_EQ(k, k2);
      EXPECT_EQ(v, v2);
    }
  };
  // Each mode adds exactly the matrices it reads; full reads none. xcache from K,V: pinv to
  // encode, W_K and W_V to decode for the verification.
  const struct {
    Mode mode;
    uint64_t adds;  // floats per layer
  } steps[] = {{Mode::kFull, 0}, {Mode::kSlim, e * e}, {Mode::kXcache, 2 * e * d + 2 * d * e},
               {Mode::kLatent, 2 * e * rank}, {Mode::kSlim, 0}};
  uint64_t resident = 0;
  for (const auto& step : steps) {
    SCOPED_TRACE(ModeName(step.mode));
    same_page(lazy, step.mode);
    resident += c.num_layers * 4 * step.adds;
    EXPECT_EQ(lazy.ResidentMatrixBytes(), resident);
  }

  // A second Build on the warm store keeps nothing either; an entry that has gone from the
  // store since is recomputed on first use, to the same bytes.
  ASSERT_TRUE(std::filesystem::remove(store.PathOf(fp, 1, "w_kv")));
  auto again = ModelCodec::Build(c, eager->weights, fp, &store, {}, nullptr);
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ((*again)->ResidentMatrixBytes(), 0u);
  ASSERT_TRUE(std::filesystem::remove(store.PathOf(fp, 0, "w_kv")));
  same_page(**again, Mode::kSlim);
  EXPECT_TRUE(store.Holds(fp, 0, "w_kv", e * e));
}

TEST(PageCodec, StoredElementsPerTokenAreTheFormula) {
  for (const Geometry& g : Geometries()) {
    SCOPED_TRACE(g.name);
    auto loaded = Load(g.model);
    const ModelCodec& codec = *loaded->codec;
    const ModelConfig& c = loaded->config;
    const int64_t d = c.hidden_size, e = int64_t{c.num_kv_heads} * c.k_head_dim;
    EXPECT_EQ(codec.StoredCols(0, Mode::kFull), e + int64_t{c.num_kv_heads} * c.v_head_dim);
    if (codec.Supports(Mode::kSlim, PageInput::kKv).ok()) EXPECT_EQ(codec.StoredCols(0, Mode::kSlim), e);
    if (codec.Supports(Mode::kXcache, PageInput::kX).ok()) EXPECT_EQ(codec.StoredCols(0, Mode::kXcache), d);
    if (g.model.arch == "deepseek") EXPECT_EQ(codec.StoredCols(0, Mode::kLatent), 16 + 8);
    if (g.model.arch == "mha2mla") EXPECT_EQ(codec.StoredCols(0, Mode::kLatent), 4 * (8 + 4));
  }
}

TEST(PageCodec, SlimIsRefusedForGqaWithTheReason) {
  auto loaded = Load(Make("llama", 64, 4, 2, 16));
  absl::Status s = loaded->codec->Supports(Mode::kSlim, PageInput::kKv);
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(s.message().find("e = 2*16 = 32 < d = 64"), std::string::npos) << s.message();
}

// Projected latent: exact at full rank; at a lower rank the error is measured on every page and
// a layer over the tolerance is stored in full.
TEST(PageCodec, ProjectedLatentExactAtFullRankMeasuredBelow) {
  SyntheticModel m = Make("llama", 64, 4, 4, 16);
  auto full_rank = Load(m, CodecOptions{.latent_rank = {.fixed_rank = 64}});
  auto low_rank = Load(m, CodecOptions{.latent_rank = {.fixed_rank = 40}});
  const ModelConfig& c = full_rank->config;
  std::vector<std::vector<double>> kv;
  std::vector<Reference> ref;
  for (uint32_t l = 0; l < c.num_layers; ++l) {
    ref.push_back(FromX(m, c, l, RandomRows(kTokens, 64, l)));
    kv.push_back(ref.back().k);
    kv.back().insert(kv.back().end(), ref.back().v.begin(), ref.back().v.end());
  }
  const std::vector<uint8_t> in = InputBytes(kv, DType::kF32);
  for (auto* loaded : {full_rank.get(), low_rank.get()}) {
    const bool full = loaded == full_rank.get();
    SCOPED_TRACE(full ? "rank 64" : "rank 40");
    for (double tolerance : {1e-4, 1.0}) {
      Page page = EmptyPage(c, DType::kF32);
      EncodeOptions o{.mode = Mode::kLatent, .input = PageInput::kKv, .tolerance = tolerance};
      auto outcomes = EncodePage(*loaded->codec, o, in.data(), kPage, &page);
      ASSERT_TRUE(outcomes.ok()) << outcomes.status();
      for (uint32_t l = 0; l < c.num_layers; ++l) {
        const LayerOutcome& out = (*outcomes)[l];
        ASSERT_GE(out.measured_error, 0) << "every projected page is measured";
        std::vector<float> k(ref[l].k.size()), v(ref[l].v.size());
        ASSERT_TRUE(DecodeLayer(*loaded->codec, page, l, kPage, DType::kF32, k.data(), v.data()).ok());
        const double err = std::max(RelErr(k, ref[l].k), RelErr(v, ref[l].v));
        if (full) {
          EXPECT_LE(out.measured_error, 1e-5);
          EXPECT_EQ(page.layers[l].mode, Mode::kLatent);
          EXPECT_LE(err, 1e-5);
        } else {
          EXPECT_GT(out.measured_error, 1e-3) << "rank 40 of 64 cannot be exact on random data";
          EXPECT_EQ(page.layers[l].mode, tolerance < 1 ? Mode::kFull : Mode::kLatent);
          EXPECT_EQ(out.fallback, tolerance < 1 ? FallbackReason::kMeasuredError
                                                : FallbackReason::kNone);
          EXPECT_NEAR(err, tolerance < 1 ? 0 : out.measured_error, 1e-5);
        }
      }
    }
  }
}

// κ(W_K) ≥ 1e6 on layer 1: slim is predicted unsafe there and falls back, layer 0 stays slim,
// and no decoded layer is ever farther than the tolerance from what the engine sent.
TEST(PageCodec, IllConditionedLayerFallsBackAndNothingExceedsTolerance) {
  SyntheticModel m = Make("llama", 64, 4, 4, 16);
  m.ill_conditioned_layers = {1};
  auto loaded = Load(m);
  const ModelCodec& codec = *loaded->codec;
  const ModelConfig& c = loaded->config;
  EXPECT_GT(codec.PredictedError(1, Mode::kSlim, PageInput::kKv, DType::kBF16), 1e-2);
  EXPECT_LT(codec.PredictedError(0, Mode::kSlim, PageInput::kKv, DType::kF32), 1e-4);
  for (DType dtype : {DType::kF32, DType::kF16, DType::kBF16}) {
    for (uint32_t seed = 0; seed < 4; ++seed) {
      std::vector<std::vector<double>> kv;
      for (uint32_t l = 0; l < c.num_layers; ++l) {
        Reference r = FromX(m, c, l, RandomRows(kTokens, 64, seed * 10 + l));
        kv.push_back(r.k);
        kv.back().insert(kv.back().end(), r.v.begin(), r.v.end());
      }
      const std::vector<uint8_t> in = InputBytes(kv, dtype);
      Page page = EmptyPage(c, dtype);
      EncodeOptions o{.mode = Mode::kSlim, .input = PageInput::kKv, .verify = true};
      auto outcomes = EncodePage(codec, o, in.data(), kPage, &page);
      ASSERT_TRUE(outcomes.ok());
      EXPECT_EQ(page.layers[1].mode, Mode::kFull);
      EXPECT_EQ((*outcomes)[1].fallback, FallbackReason::kPredictedError);
      for (uint32_t l = 0; l < c.num_layers; ++l) {
        // What the engine sent, as it sent it (rounded to dtype).
        std::vector<float> sent_k(kv[l].size() / 2), sent_v(kv[l].size() / 2);
        const uint64_t half = kv[l].size() / 2 * kernels::DTypeSize(dtype);
        const uint8_t* base = in.data() + l * 2 * half;
        kernels::ConvertDType(base, dtype, sent_k.data(), DType::kF32, sent_k.size());
        kernels::ConvertDType(base + half, dtype, sent_v.data(), DType::kF32, sent_v.size());
        std::vector<float> k(sent_k.size()), v(sent_v.size());
        ASSERT_TRUE(DecodeLayer(codec, page, l, kPage, DType::kF32, k.data(), v.data()).ok());
        const std::vector<double> sk(sent_k.begin(), sent_k.end()), sv(sent_v.begin(), sent_v.end());
        EXPECT_LE(std::max(RelErr(k, sk), RelErr(v, sv)), o.tolerance)
            << kernels::DTypeName(dtype) << " layer " << l;
      }
    }
  }
}

// Quantizers after any mode: the stored bytes are the quantized formula, and the error is
// measured on every page (quantization is lossy) and held to the tolerance.
TEST(PageCodec, QuantizedModesStoreTheFormulaAndAreMeasured) {
  SyntheticModel m = Make("llama", 64, 4, 4, 16);
  auto loaded = Load(m);
  const ModelCodec& codec = *loaded->codec;
  const ModelConfig& c = loaded->config;
  std::vector<std::vector<double>> kv;
  for (uint32_t l = 0; l < c.num_layers; ++l) {
    Reference r = FromX(m, c, l, RandomRows(kTokens, 64, l));
    kv.push_back(r.k);
    kv.back().insert(kv.back().end(), r.v.begin(), r.v.end());
  }
  // fp32 input: the modes themselves are then exact to ~1e-6 and the error is the quantizer's.
  const std::vector<uint8_t> in = InputBytes(kv, DType::kF32);
  for (Mode mode : {Mode::kFull, Mode::kSlim, Mode::kXcache}) {
    for (Quant q : {Quant::kFp8, Quant::kInt8, Quant::kInt4}) {
      SCOPED_TRACE(absl::StrCat(ModeName(mode), "+", QuantName(q)));
      Page page = EmptyPage(c, DType::kF32);
      EncodeOptions o{.mode = mode, .quant = q, .input = PageInput::kKv, .tolerance = 0.2};
      auto outcomes = EncodePage(codec, o, in.data(), kPage, &page);
      ASSERT_TRUE(outcomes.ok());
      uint64_t want = 0;
      for (uint32_t l = 0; l < c.num_layers; ++l) {
        const LayerOutcome& out = (*outcomes)[l];
        EXPECT_EQ(out.measured_mode, mode);
        EXPECT_EQ(out.measured_quant, q);
        ASSERT_GE(out.measured_error, 0) << "quantized layers are always measured";
        if (page.layers[l].mode == mode) {
          EXPECT_EQ(page.layers[l].quant, q);
          EXPECT_LE(out.measured_error, o.tolerance);
        } else {
          // slim amplifies K's quantization error by κ(W_K) on V: it may not hold.
          EXPECT_EQ(out.fallback, FallbackReason::kMeasuredError);
          EXPECT_GT(out.measured_error, o.tolerance);
          EXPECT_EQ(page.layers[l].quant, Quant::kNone);
        }
        if (mode == Mode::kFull && q != Quant::kInt4) {
          EXPECT_EQ(page.layers[l].mode, mode);  // K and V each within 2^-4 (fp8), 1/254 (int8)
          EXPECT_LE(out.measured_error, 0.05);
        }
        for (const StoredPart& p : StoredParts(codec, l, page.layers[l].mode)) {
          want += StoredPartBytes(p, page.layers[l].quant, DType::kF32, kTokens);
        }
      }
      EXPECT_EQ(page.payload.size(), want);
      // A tolerance the quantizer cannot meet stores those layers in full, exactly.
      Page strict = EmptyPage(c, DType::kF32);
      o.tolerance = 1e-6;
      ASSERT_TRUE(EncodePage(codec, o, in.data(), kPage, &strict).ok());
      for (const StoredLayer& l : strict.layers) {
        EXPECT_EQ(l.mode, Mode::kFull);
        EXPECT_EQ(l.quant, Quant::kNone);
      }
    }
  }
}

TEST(PageCodec, CorruptLayerIsDataLoss) {
  auto loaded = Load(Make("llama", 64, 4, 4, 16));
  const ModelConfig& c = loaded->config;
  std::vector<std::vector<double>> kv(c.num_layers, RandomRows(kTokens, 2 * 64, 7));
  const std::vector<uint8_t> in = InputBytes(kv, DType::kF32);
  Page page = EmptyPage(c, DType::kF32);
  ASSERT_TRUE(EncodePage(*loaded->codec, {}, in.data(), 0, &page).ok());
  page.payload[page.LayerOffset(1) + 5] ^= 1;
  std::vector<float> k(kTokens * 64), v(kTokens * 64);
  EXPECT_TRUE(DecodeLayer(*loaded->codec, page, 0, 0, DType::kF32, k.data(), v.data()).ok());
  EXPECT_EQ(DecodeLayer(*loaded->codec, page, 1, 0, DType::kF32, k.data(), v.data()).code(),
            absl::StatusCode::kDataLoss);
}

}  // namespace
}  // namespace slimkv::cache
