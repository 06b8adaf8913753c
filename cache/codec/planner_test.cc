#include "cache/codec/planner.h"

#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#include "absl/strings/str_replace.h"
#include "cache/model/factor_store.h"
#include "tests/support/model_test_util.h"
#include "gtest/gtest.h"

namespace slimkv::cache {
namespace {

using testing_util::ScratchDir;

constexpr const char* kLlama2_7B = R"({
  "architectures": ["LlamaForCausalLM"], "hidden_act": "silu", "hidden_size": 4096,
  "intermediate_size": 11008, "max_position_embeddings": 4096, "model_type": "llama",
  "num_attention_heads": 32, "num_hidden_layers": 32, "num_key_value_heads": 32,
  "rms_norm_eps": 1e-05, "rope_scaling": null, "torch_dtype": "float16", "vocab_size": 32000})";

constexpr const char* kLlama3_8B = R"({
  "architectures": ["LlamaForCausalLM"], "hidden_size": 4096, "intermediate_size": 14336,
  "max_position_embeddings": 8192, "model_type": "llama", "num_attention_heads": 32,
  "num_hidden_layers": 32, "num_key_value_heads": 8, "rms_norm_eps": 1e-05,
  "rope_theta": 500000.0, "torch_dtype": "bfloat16", "vocab_size": 128256})";

constexpr const char* kT5_11B = R"({
  "architectures": ["T5WithLMHeadModel"], "d_ff": 65536, "d_kv": 128, "d_model": 1024,
  "decoder_start_token_id": 0, "is_encoder_decoder": true, "layer_norm_epsilon": 1e-06,
  "model_type": "t5", "n_positions": 512, "num_heads": 128, "num_layers": 24,
  "relative_attention_num_buckets": 32, "vocab_size": 32128})";

constexpr const char* kDeepSeekV3 = R"({
  "architectures": ["DeepseekV3ForCausalLM"], "attention_bias": false, "hidden_size": 7168,
  "kv_lora_rank": 512, "max_position_embeddings": 163840, "model_type": "deepseek_v3",
  "num_attention_heads": 128, "num_hidden_layers": 61, "num_key_value_heads": 128,
  "q_lora_rank": 1536, "qk_nope_head_dim": 128, "qk_rope_head_dim": 64,
  "rope_scaling": {"beta_fast": 32, "beta_slow": 1, "factor": 40, "mscale": 1.0,
                   "mscale_all_dim": 1.0, "original_max_position_embeddings": 4096,
                   "type": "yarn"},
  "rope_theta": 10000, "torch_dtype": "bfloat16", "v_head_dim": 128, "vocab_size": 129280})";

// MHA2MLA's run_train.py output for Llama-2-7B; LOW_RANK is d_kv per KV head.
constexpr const char* kLlama2_7B_Mha2Mla = R"({
  "architectures": ["LlamaForCausalLM"], "hidden_size": 4096, "max_position_embeddings": 4096,
  "model_type": "llama", "num_attention_heads": 32, "num_hidden_layers": 32,
  "num_key_value_heads": 32, "rope_theta": 10000.0, "torch_dtype": "bfloat16",
  "mha2mla": {"model_name_or_path": "meta-llama/Llama-2-7b-hf", "partial_rope_version": "2-norm",
              "rope_dim_for_mla": 16, "uniform_start_point": 0,
              "qk_tensor_path": "utils/llama2_7B-2_norm_rank.pth", "svd_init_method": "joint",
              "low_rank": LOW_RANK, "is_baseline": false, "is_gqa2mha2mla": false}})";

ModelPlan Plan(const std::string& json, PlanOptions o = {}) {
  absl::StatusOr<ModelConfig> c = ParseModelConfig(json);
  EXPECT_TRUE(c.ok()) << c.status();
  absl::StatusOr<ModelPlan> p = PlanFromConfig(*c, o);
  EXPECT_TRUE(p.ok()) << p.status();
  return *p;
}

const ModePlan& Mode(const ModelPlan& p, PlanMode m, uint32_t layer = 0) {
  return p.layers[layer].modes[static_cast<int>(m)];
}
constexpr int kNone = static_cast<int>(PlanQuant::kNone);
constexpr int kFp8 = static_cast<int>(PlanQuant::kFp8);
constexpr int kInt8 = static_cast<int>(PlanQuant::kInt8);
constexpr int kInt4 = static_cast<int>(PlanQuant::kInt4);

TEST(Planner, Llama2SlimAndXcacheHalveTheCache) {
  const ModelPlan p = Plan(kLlama2_7B);
  ASSERT_EQ(p.layers.size(), 32u);
  const ModePlan& full = Mode(p, PlanMode::kFull);
  EXPECT_EQ(full.elements, 8192);
  EXPECT_EQ(full.bytes[kNone], 16384);  // bf16
  for (PlanMode m : {PlanMode::kSlim, PlanMode::kXcache}) {
    SCOPED_TRACE(PlanModeName(m));
    EXPECT_TRUE(Mode(p, m).applicable) << Mode(p, m).reason;
    EXPECT_EQ(Mode(p, m).elements, 4096);
    EXPECT_DOUBLE_EQ(Mode(p, m).ratio[kNone], 0.5);  // 2×
  }
  EXPECT_FALSE(Mode(p, PlanMode::kLatentNative).applicable);
  EXPECT_FALSE(Mode(p, PlanMode::kLatentProjected).applicable);  // no rank given
  // Quantized bytes are the formats' own, scales included: fp8 one fp32 per 128, int8 one per
  // 64, int4 scale + zero per 32 (K per channel over 32 tokens, V per token: same overhead).
  EXPECT_DOUBLE_EQ(full.bytes[kFp8], 8192 + 4.0 * 8192 / 128);
  EXPECT_DOUBLE_EQ(full.bytes[kInt8], 8192 + 4.0 * 8192 / 64);
  EXPECT_DOUBLE_EQ(full.bytes[kInt4], 4096 + 8.0 * 8192 / 32);
  EXPECT_DOUBLE_EQ(Mode(p, PlanMode::kSlim).bytes[kInt4], 2048 + 8.0 * 4096 / 32);
  // 32 layers.
  EXPECT_DOUBLE_EQ(p.total_bytes[static_cast<int>(PlanMode::kFull)][kNone], 32 * 16384.0);
  EXPECT_DOUBLE_EQ(p.total_bytes[static_cast<int>(PlanMode::kSlim)][kNone], 32 * 8192.0);
  EXPECT_TRUE(std::isnan(p.total_bytes[static_cast<int>(PlanMode::kLatentNative)][kNone]));
}

TEST(Planner, GqaSlimRefusedWithTheReason) {
  const ModelPlan p = Plan(kLlama3_8B);
  const ModePlan& slim = Mode(p, PlanMode::kSlim);
  EXPECT_FALSE(slim.applicable);
  EXPECT_NE(slim.reason.find("rank(W_K) = d"), std::string::npos) << slim.reason;
  EXPECT_NE(slim.reason.find("e = 8*128 = 1024 < d = 4096"), std::string::npos) << slim.reason;
  EXPECT_NE(slim.reason.find("GQA"), std::string::npos) << slim.reason;
  // x (4096) is bigger than K and V together (2048): not worth it.
  const ModePlan& xc = Mode(p, PlanMode::kXcache);
  EXPECT_FALSE(xc.applicable);
  EXPECT_NE(xc.reason.find("not worth it"), std::string::npos) << xc.reason;
  EXPECT_EQ(p.layers[0].chosen[2], PlanMode::kFull);
}

TEST(Planner, T5CrossAttentionXcacheIs32x) {
  const ModelPlan p = Plan(kT5_11B);
  ASSERT_EQ(p.layers.size(), 24u);
  EXPECT_EQ(Mode(p, PlanMode::kFull).elements, 2 * 128 * 128);
  const ModePlan& xc = Mode(p, PlanMode::kXcache);
  EXPECT_TRUE(xc.applicable);
  EXPECT_EQ(xc.elements, 1024);
  EXPECT_DOUBLE_EQ(1 / xc.ratio[kNone], 32.0);
  // Wide heads: slim applies too (e = 16384 > d), but only halves the cache.
  EXPECT_TRUE(Mode(p, PlanMode::kSlim).applicable);
  EXPECT_DOUBLE_EQ(1 / Mode(p, PlanMode::kSlim).ratio[kNone], 2.0);
}

TEST(Planner, DeepSeekV3LatentIs576ElementsAndFlashMlaFp8Is656Bytes) {
  const ModelPlan p = Plan(kDeepSeekV3);
  ASSERT_EQ(p.layers.size(), 61u);
  const ModePlan& lat = Mode(p, PlanMode::kLatentNative);
  EXPECT_TRUE(lat.applicable);
  EXPECT_EQ(lat.elements, 576);
  EXPECT_EQ(lat.bytes[kNone], 1152);
  EXPECT_EQ(lat.bytes[kFp8], 656);
  EXPECT_EQ(Mode(p, PlanMode::kFull).elements, 128 * 192 + 128 * 128);
  EXPECT_FALSE(Mode(p, PlanMode::kSlim).applicable);
  EXPECT_FALSE(Mode(p, PlanMode::kXcache).applicable);
  EXPECT_EQ(p.layers[0].chosen[2], PlanMode::kLatentNative);
}

TEST(Planner, Mha2MlaLlama2Reductions) {
  struct Case { int d_kv; double reduction, reduction_int4_bits, reduction_int4_scales; };
  // MHA2MLA's figures: r = 16 rope dims + d_kv latent per head against 2·128 in 16 bits.
  // With scales: one fp32 scale and one fp32 zero per 32 values (+0.25 B/value).
  for (const Case& c : {Case{16, -87.5, -96.875, -95.3125}, Case{32, -81.25, -95.3125, -92.96875},
                        Case{64, -68.75, -92.1875, -88.28125}}) {
    SCOPED_TRACE(c.d_kv);
    const ModelPlan p =
        Plan(absl::StrReplaceAll(kLlama2_7B_Mha2Mla, {{"LOW_RANK", std::to_string(c.d_kv)}}));
    const ModePlan& lat = Mode(p, PlanMode::kLatentNative);
    ASSERT_TRUE(lat.applicable) << lat.reason;
    EXPECT_EQ(lat.elements, 32 * (16 + c.d_kv));
    const double full = Mode(p, PlanMode::kFull).bytes[kNone];
    EXPECT_DOUBLE_EQ(100 * (lat.ratio[kNone] - 1), c.reduction);
    EXPECT_DOUBLE_EQ(100 * (lat.bytes_4bit / full - 1), c.reduction_int4_bits);
    EXPECT_DOUBLE_EQ(100 * (lat.ratio[kInt4] - 1), c.reduction_int4_scales);
  }
}

TEST(Planner, ProjectedRankFromOptions) {
  PlanOptions o;
  o.rank.fixed_rank = 1024;
  const ModelPlan p = Plan(kLlama2_7B, o);
  const ModePlan& proj = Mode(p, PlanMode::kLatentProjected);
  EXPECT_TRUE(proj.applicable);
  EXPECT_EQ(proj.elements, 1024);
  EXPECT_DOUBLE_EQ(proj.ratio[kNone], 1024.0 / 8192);
  o.rank = {.energy = 0.9};
  EXPECT_FALSE(Mode(Plan(kLlama2_7B, o), PlanMode::kLatentProjected).applicable);
  o.rank = {.fixed_rank = 8, .energy = 0.9};
  absl::StatusOr<ModelConfig> c = ParseModelConfig(kLlama2_7B);
  EXPECT_EQ(PlanFromConfig(*c, o).status().code(), absl::StatusCode::kInvalidArgument);
  o = {};
  o.tolerance = 0;
  EXPECT_EQ(PlanFromConfig(*c, o).status().code(), absl::StatusCode::kInvalidArgument);
}

// ---- with weights ----

// A 2-layer Llama (d = 32, 4 heads × 8) whose W_K, W_V are diagonal with chosen spectra:
// layer 0 κ(W_K) = 2, layer 1 κ(W_K) = 1e6 (slim unsafe in every dtype at 1e-2), W_V = c·I.
class PlannerWeights : public ::testing::Test {
 protected:
  static constexpr int kD = 32;
  void SetUp() override {
    const std::string config = R"({"model_type": "llama", "hidden_size": 32,
      "num_attention_heads": 4, "num_hidden_layers": 2, "num_key_value_heads": 4,
      "max_position_embeddings": 128, "torch_dtype": "float32"})";
    FILE* f = std::fopen(dir_.File("config.json").c_str(), "w");
    ASSERT_NE(f, nullptr);
    std::fputs(config.c_str(), f);
    std::fclose(f);
    std::vector<TensorToWrite> tensors;
    for (int layer = 0; layer < 2; ++layer) {
      std::vector<float> k(kD * kD, 0.0f), v(kD * kD, 0.0f);
      for (int i = 0; i < kD; ++i) {
        k[i * kD + i] = layer == 0 ? 1.0f + i / (kD - 1.0f)
                                   : static_cast<float>(std::pow(1e-6, i / (kD - 1.0)));
        v[i * kD + i] = layer == 0 ? 1.5f : 1.0f;
      }
      for (auto [name, w] : {std::pair<const char*, std::vector<float>*>{"k_proj", &k},
                             {"v_proj", &v}}) {
        TensorToWrite t;
        t.name = "model.layers." + std::to_string(layer) + ".self_attn." + name + ".weight";
        t.dtype = kernels::DType::kF32;
        t.shape = {kD, kD};
        t.data.assign(reinterpret_cast<const char*>(w->data()), w->size() * sizeof(float));
        tensors.push_back(std::move(t));
      }
    }
    ASSERT_TRUE(WriteSafetensors(dir_.File("model.safetensors"), tensors).ok());
    absl::StatusOr<ModelConfig> c = ParseModelConfig(config);
    ASSERT_TRUE(c.ok()) << c.status();
    config_ = *c;
    absl::StatusOr<std::unique_ptr<SafetensorsDir>> w = SafetensorsDir::Open(dir_.path());
    ASSERT_TRUE(w.ok()) << w.status();
    weights_ = std::move(*w);
  }

  ModelPlan Run(const std::string& factor_dir, int* factorized = nullptr) {
    int progress_calls = 0;
    absl::StatusOr<ModelPlan> p =
        PlanWithWeights(config_, *weights_, PlanOptions{}, factor_dir,
                        [&](absl::string_view, uint32_t, uint32_t) { ++progress_calls; });
    EXPECT_TRUE(p.ok()) << p.status();
    EXPECT_GT(progress_calls, 0);
    if (factorized) {
      *factorized = 0;
      for (const LayerPlan& lp : p->layers) *factorized += lp.from_cache ? 0 : 1;
    }
    return *p;
  }

  ScratchDir dir_, data_;
  ModelConfig config_;
  std::unique_ptr<SafetensorsDir> weights_;
};

TEST_F(PlannerWeights, KappaErrorsAndModeUnderTolerance) {
  const ModelPlan p = Run("");
  ASSERT_TRUE(p.has_weights);
  const LayerPlan& l0 = p.layers[0];
  const LayerPlan& l1 = p.layers[1];
  ASSERT_TRUE(l0.analyzed && l1.analyzed);
  EXPECT_NEAR(l0.kappa_k, 2.0, 1e-9);
  EXPECT_NEAR(l0.kappa_v, 1.0, 1e-9);
  EXPECT_NEAR(l0.kappa_kv, std::sqrt(6.25 / 3.25), 1e-9);
  EXPECT_NEAR(l1.kappa_k / 1e6, 1.0, 1e-3);  // resolved despite squaring in the Gram route
  // slim bf16: κ·2⁻⁸ = 7.8e-3 ≤ 1e-2 on layer 0; 1e6·u fails every dtype on layer 1.
  EXPECT_NEAR(l0.modes[1].predicted_error[2], 2.0 / 256, 1e-9);
  EXPECT_NEAR(l1.modes[1].predicted_error[0], 1e6 * 0x1p-24, 1e-4);
  for (int t = 0; t < 3; ++t) {
    EXPECT_EQ(l0.chosen[t], PlanMode::kSlim) << t;
    EXPECT_EQ(l1.chosen[t], PlanMode::kXcache) << t;  // κ([W_K W_V]) ≈ √2
  }
  EXPECT_EQ(l0.modes[0].predicted_error[2], 0.0);
  EXPECT_DOUBLE_EQ(p.chosen_bytes[2], 2 * 32 * 2.0);
}

TEST_F(PlannerWeights, FactorsCachedByFingerprintSurviveRestartAndCorruption) {
  const std::string factors = data_.File("factors");
  int n = 0;
  const ModelPlan first = Run(factors, &n);
  EXPECT_EQ(n, 2);
  EXPECT_FALSE(first.layers[0].from_cache);
  // A restart (fresh call, same directory): nothing is factorized again.
  const ModelPlan second = Run(factors, &n);
  EXPECT_EQ(n, 0);
  for (int l = 0; l < 2; ++l) {
    EXPECT_TRUE(second.layers[l].from_cache);
    EXPECT_EQ(second.layers[l].kappa_k, first.layers[l].kappa_k);
    EXPECT_EQ(second.layers[l].chosen, first.layers[l].chosen);
  }
  // A corrupted entry fails its CRC and is recomputed (and rewritten); the other stays cached.
  absl::StatusOr<Fingerprint> fp = ModelFingerprint(config_, weights_.get());
  ASSERT_TRUE(fp.ok());
  const FactorStore store(factors);
  const std::string path = store.PathOf(*fp, 1, "conditioning");
  FILE* f = std::fopen(path.c_str(), "r+b");
  ASSERT_NE(f, nullptr) << path;
  std::fseek(f, 40, SEEK_SET);
  std::fputc(0x5a, f);
  std::fclose(f);
  EXPECT_EQ(store.Get(*fp, 1, "conditioning").status().code(), absl::StatusCode::kDataLoss);
  const ModelPlan third = Run(factors, &n);
  EXPECT_EQ(n, 1);
  EXPECT_TRUE(third.layers[0].from_cache);
  EXPECT_FALSE(third.layers[1].from_cache);
  EXPECT_EQ(third.layers[1].kappa_k, first.layers[1].kappa_k);
  EXPECT_TRUE(store.Get(*fp, 1, "conditioning").ok());
}

TEST(FactorStore, RoundTripAndMissing) {
  ScratchDir dir;
  const FactorStore store(dir.File("f"));
  Fingerprint fp{};
  fp[0] = 7;
  EXPECT_EQ(store.Get(fp, 3, "x").status().code(), absl::StatusCode::kNotFound);
  const std::vector<double> v = {1.5, -2, INFINITY, 0};
  ASSERT_TRUE(store.Put(fp, 3, "x", v).ok());
  absl::StatusOr<std::vector<double>> got = store.Get(fp, 3, "x");
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(*got, v);
  EXPECT_EQ(store.Put(fp, 3, "../x", v).code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace slimkv::cache
