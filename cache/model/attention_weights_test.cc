#include "cache/model/attention_weights.h"

#include <openssl/sha.h>

#include <cstring>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "tests/support/model_test_util.h"
#include "gtest/gtest.h"

namespace slimkv::cache {
namespace {

using kernels::DType;
using testing_util::Ramp;
using testing_util::ScratchDir;

struct TensorSpec {
  std::string suffix;  // after the layer prefix
  std::vector<int64_t> shape;
};

// A small checkpoint per architecture: its config.json and, per layer, the tensors the loader
// must find (names as the HF modeling code spells them), plus one it must ignore.
struct ArchCase {
  const char* name;
  const char* config;
  const char* layer_prefix;  // with {} for the layer number
  std::vector<TensorSpec> used;
  std::vector<TensorSpec> unused;
};

std::vector<ArchCase> ArchCases() {
  return {
      {"llama",
       R"({"model_type":"llama","hidden_size":16,"num_attention_heads":4,
           "num_key_value_heads":2,"num_hidden_layers":2,"max_position_embeddings":128})",
       "model.layers.{}.self_attn.",
       {{"k_proj.weight", {8, 16}}, {"v_proj.weight", {8, 16}}},
       {{"q_proj.weight", {16, 16}}}},
      {"mistral",
       R"({"model_type":"mistral","hidden_size":16,"num_attention_heads":4,"head_dim":8,
           "num_key_value_heads":1,"num_hidden_layers":2,"max_position_embeddings":128})",
       "model.layers.{}.self_attn.",
       {{"k_proj.weight", {8, 16}}, {"v_proj.weight", {8, 16}}},
       {{"o_proj.weight", {16, 32}}}},
      {"qwen2",
       R"({"model_type":"qwen2","hidden_size":16,"num_attention_heads":4,
           "num_key_value_heads":2,"num_hidden_layers":2,"max_position_embeddings":128})",
       "model.layers.{}.self_attn.",
       {{"k_proj.weight", {8, 16}},
        {"v_proj.weight", {8, 16}},
        {"k_proj.bias", {8}},
        {"v_proj.bias", {8}}},
       {{"q_proj.bias", {16}}}},
      {"gemma2",
       R"({"model_type":"gemma2","hidden_size":16,"num_attention_heads":2,"head_dim":8,
           "num_key_value_heads":1,"num_hidden_layers":2,"max_position_embeddings":128,
           "query_pre_attn_scalar":8})",
       "model.layers.{}.self_attn.",
       {{"k_proj.weight", {8, 16}}, {"v_proj.weight", {8, 16}}},
       {}},
      {"deepseek_v2",
       R"({"model_type":"deepseek_v2","hidden_size":16,"num_attention_heads":2,
           "num_hidden_layers":2,"max_position_embeddings":128,"kv_lora_rank":8,
           "qk_rope_head_dim":4,"qk_nope_head_dim":4,"v_head_dim":6})",
       "model.layers.{}.self_attn.",
       {{"kv_a_proj_with_mqa.weight", {12, 16}},
        {"kv_a_layernorm.weight", {8}},
        {"kv_b_proj.weight", {20, 8}}},
       {{"q_proj.weight", {16, 16}}}},
      {"transmla",
       R"({"model_type":"deepseek_v3","hidden_size":16,"num_attention_heads":2,
           "num_hidden_layers":2,"max_position_embeddings":128,"kv_lora_rank":8,
           "qk_rope_head_dim":4,"qk_nope_head_dim":4,"v_head_dim":4,"attention_bias":true,
           "qk_latent_layernorm":false})",
       "model.layers.{}.self_attn.",
       {{"kv_a_proj_with_mqa.weight", {12, 16}},
        {"kv_a_proj_with_mqa.bias", {12}},
        {"kv_b_proj.weight", {16, 8}}},
       {}},
      {"mha2mla",
       R"({"model_type":"qwen2","hidden_size":16,"num_attention_heads":4,
           "num_key_value_heads":4,"num_hidden_layers":2,"max_position_embeddings":128,
           "mha2mla":{"rope_dim_for_mla":2,"low_rank":2,"svd_init_method":"joint"}})",
       "model.layers.{}.self_attn.",
       {{"k_r_proj.weight", {8, 16}},
        {"k_r_proj.bias", {8}},
        {"kv_proj.down_kv.weight", {8, 16}},
        {"kv_proj.up_k.weight", {8, 8}},
        {"kv_proj.up_k.bias", {8}},
        {"kv_proj.up_v.weight", {16, 8}},
        {"kv_proj.up_v.bias", {16}}},
       {}},
      {"t5",
       R"({"model_type":"t5","d_model":16,"num_heads":2,"d_kv":8,"num_layers":3,
           "num_decoder_layers":2})",
       "decoder.block.{}.layer.1.EncDecAttention.",
       {{"k.weight", {16, 16}}, {"v.weight", {16, 16}}},
       {{"q.weight", {16, 16}}}},
  };
}

std::string Prefix(const ArchCase& c, uint32_t layer) {
  std::string p = c.layer_prefix;
  return p.replace(p.find("{}"), 2, std::to_string(layer));
}

// Writes the case's checkpoint, two layers, split over two shards by layer.
void WriteCheckpoint(const ArchCase& c, const std::string& dir, DType dtype) {
  std::map<std::string, std::string> index;
  for (uint32_t layer = 0; layer < 2; ++layer) {
    std::vector<TensorToWrite> tensors;
    float seed = static_cast<float>(layer);
    for (const auto* list : {&c.used, &c.unused}) {
      for (const TensorSpec& t : *list) {
        tensors.push_back(Ramp(Prefix(c, layer) + t.suffix, t.shape, dtype, seed += 0.25f));
      }
    }
    const std::string shard = absl::StrCat("model-0000", layer + 1, "-of-00002.safetensors");
    for (const TensorToWrite& t : tensors) index[t.name] = shard;
    ASSERT_TRUE(WriteSafetensors(dir + "/" + shard, tensors).ok());
  }
  ASSERT_TRUE(WriteSafetensorsIndex(dir, index).ok());
}

class ArchWeightsTest : public testing::TestWithParam<ArchCase> {};

TEST_P(ArchWeightsTest, LocatesExactlyTheUsedTensors) {
  const ArchCase& c = GetParam();
  absl::StatusOr<ModelConfig> config = ParseModelConfig(c.config);
  ASSERT_TRUE(config.ok()) << config.status();
  ScratchDir dir;
  WriteCheckpoint(c, dir.path(), DType::kBF16);
  absl::StatusOr<std::unique_ptr<SafetensorsDir>> st = SafetensorsDir::Open(dir.path());
  ASSERT_TRUE(st.ok()) << st.status();

  for (uint32_t layer = 0; layer < 2; ++layer) {
    absl::StatusOr<LayerWeights> w = LoadLayerWeights(**st, *config, layer);
    ASSERT_TRUE(w.ok()) << w.status();
    EXPECT_EQ(w->layer, layer);
    std::vector<const TensorView*> used = w->Used();
    ASSERT_EQ(used.size(), c.used.size());
    for (size_t i = 0; i < used.size(); ++i) {
      EXPECT_EQ(used[i]->name, Prefix(c, layer) + c.used[i].suffix);
      EXPECT_EQ(used[i]->shape, c.used[i].shape);
      EXPECT_EQ(used[i]->dtype, DType::kBF16);
      absl::StatusOr<TensorView> direct = (*st)->Find(used[i]->name);
      ASSERT_TRUE(direct.ok());
      EXPECT_EQ(used[i]->data, direct->data);  // a view, not a copy
    }
  }
  EXPECT_EQ(LoadLayerWeights(**st, *config, 2).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST_P(ArchWeightsTest, MissingTensorIsNotFoundNamingIt) {
  const ArchCase& c = GetParam();
  absl::StatusOr<ModelConfig> config = ParseModelConfig(c.config);
  ASSERT_TRUE(config.ok()) << config.status();
  ScratchDir dir;
  const TensorSpec& dropped = c.used.back();
  std::vector<TensorToWrite> tensors;
  for (const TensorSpec& t : c.used) {
    if (&t != &dropped) tensors.push_back(Ramp(Prefix(c, 0) + t.suffix, t.shape));
  }
  ASSERT_TRUE(WriteSafetensors(dir.File("model.safetensors"), tensors).ok());
  absl::StatusOr<std::unique_ptr<SafetensorsDir>> st = SafetensorsDir::Open(dir.path());
  ASSERT_TRUE(st.ok()) << st.status();
  absl::StatusOr<LayerWeights> w = LoadLayerWeights(**st, *config, 0);
  EXPECT_EQ(w.status().code(), absl::StatusCode::kNotFound);
  EXPECT_NE(w.status().message().find(Prefix(c, 0) + dropped.suffix), std::string::npos)
      << w.status();
}

TEST_P(ArchWeightsTest, WrongShapeIsInvalidArgument) {
  const ArchCase& c = GetParam();
  absl::StatusOr<ModelConfig> config = ParseModelConfig(c.config);
  ASSERT_TRUE(config.ok()) << config.status();
  ScratchDir dir;
  std::vector<TensorToWrite> tensors;
  for (const TensorSpec& t : c.used) {
    std::vector<int64_t> shape = t.shape;
    if (&t == &c.used.front()) shape[0] += 1;
    tensors.push_back(Ramp(Prefix(c, 0) + t.suffix, shape));
  }
  ASSERT_TRUE(WriteSafetensors(dir.File("model.safetensors"), tensors).ok());
  absl::StatusOr<std::unique_ptr<SafetensorsDir>> st = SafetensorsDir::Open(dir.path());
  ASSERT_TRUE(st.ok()) << st.status();
  absl::StatusOr<LayerWeights> w = LoadLayerWeights(**st, *config, 0);
  EXPECT_EQ(w.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(w.status().message().find("shape"), std::string::npos) << w.status();
}

INSTANTIATE_TEST_SUITE_P(Archs, ArchWeightsTest, testing::ValuesIn(ArchCases()),
                         [](const testing::TestParamInfo<ArchCase>& info) {
                           return std::string(info.param.name);
                         });

// phi3 fuses q, k and v: K and V are row ranges of qkv_proj.weight.
TEST(AttentionWeightsTest, Phi3SplitsFusedQkvByRows) {
  absl::StatusOr<ModelConfig> config = ParseModelConfig(
      R"({"model_type":"phi3","hidden_size":8,"num_attention_heads":4,"num_key_value_heads":2,
          "num_hidden_layers":1,"max_position_embeddings":64})");
  ASSERT_TRUE(config.ok()) << config.status();
  // head dim 2: q rows 0..7, k rows 8..11, v rows 12..15; element (r, c) = r + c / 16.
  const int64_t rows = 16, cols = 8;
  TensorToWrite qkv;
  qkv.name = "model.layers.0.self_attn.qkv_proj.weight";
  qkv.shape = {rows, cols};
  std::vector<float> values;
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t c = 0; c < cols; ++c) values.push_back(r + c / 16.0f);
  }
  qkv.data.assign(reinterpret_cast<const char*>(values.data()), values.size() * sizeof(float));
  ScratchDir dir;
  ASSERT_TRUE(WriteSafetensors(dir.File("model.safetensors"), {qkv}).ok());
  absl::StatusOr<std::unique_ptr<SafetensorsDir>> st = SafetensorsDir::Open(dir.path());
  ASSERT_TRUE(st.ok()) << st.status();
  absl::StatusOr<LayerWeights> w = LoadLayerWeights(**st, *config, 0);
  ASSERT_TRUE(w.ok()) << w.status();
  ASSERT_TRUE(w->k && w->v);
  EXPECT_EQ(w->k->shape, (std::vector<int64_t>{4, 8}));
  EXPECT_EQ(w->v->shape, (std::vector<int64_t>{4, 8}));
  EXPECT_EQ(w->k->name, "model.layers.0.self_attn.qkv_proj.weight[8:12]");
  EXPECT_EQ(w->v->name, "model.layers.0.self_attn.qkv_proj.weight[12:16]");
  absl::StatusOr<MatrixF64> wk = WeightToMatrixF64(*w->k);
  absl::StatusOr<MatrixF64> wv = WeightToMatrixF64(*w->v);
  ASSERT_TRUE(wk.ok() && wv.ok());
  // W_K in R^{d x e}: W_K[i][j] = qkv[8 + j][i].
  EXPECT_EQ(wk->rows, 8);
  EXPECT_EQ(wk->cols, 4);
  EXPECT_DOUBLE_EQ(wk->at(0, 0), 8.0);
  EXPECT_DOUBLE_EQ(wk->at(3, 2), 10.0 + 3 / 16.0);
  EXPECT_DOUBLE_EQ(wv->at(7, 3), 15.0 + 7 / 16.0);
}

TEST(AttentionWeightsTest, WeightToMatrixTransposesAndWidens) {
  for (DType dtype : {DType::kF32, DType::kF16, DType::kBF16}) {
    TensorToWrite t = Ramp("w", {2, 3}, dtype, 1);  // w[o][i] = 1 + (3o + i) / 1024
    TensorView v;
    v.name = t.name;
    v.dtype = dtype;
    v.shape = t.shape;
    v.data = reinterpret_cast<const uint8_t*>(t.data.data());
    v.bytes = t.data.size();
    absl::StatusOr<MatrixF64> m = WeightToMatrixF64(v);
    ASSERT_TRUE(m.ok());
    ASSERT_EQ(m->rows, 3);
    ASSERT_EQ(m->cols, 2);
    const double tol = dtype == DType::kBF16 ? 1e-2 : 1e-6;
    for (int i = 0; i < 3; ++i) {
      for (int o = 0; o < 2; ++o) {
        EXPECT_NEAR(m->at(i, o), 1 + (3 * o + i) / 1024.0, tol) << kernels::DTypeName(dtype);
      }
    }
    std::vector<double> flat = ViewToF64(v);
    ASSERT_EQ(flat.size(), 6u);
    EXPECT_NEAR(flat[4], 1 + 4 / 1024.0, tol);
    v.shape = {6};
    EXPECT_EQ(WeightToMatrixF64(v).status().code(), absl::StatusCode::kInvalidArgument);
  }
}

class FingerprintTest : public testing::Test {
 protected:
  void SetUp() override {
    c_ = ArchCases()[2];  // qwen2: weights and biases
    absl::StatusOr<ModelConfig> config = ParseModelConfig(c_.config);
    ASSERT_TRUE(config.ok()) << config.status();
    config_ = *config;
  }

  Fingerprint Of(DType dtype, const std::string& changed = "", bool with_weights = true) {
    ScratchDir dir;
    WriteCheckpoint(c_, dir.path(), dtype);
    if (!changed.empty()) {
      // Rewrite layer 1's shard with one element of `changed` perturbed.
      std::vector<TensorToWrite> tensors;
      float seed = 1;
      for (const auto* list : {&c_.used, &c_.unused}) {
        for (const TensorSpec& t : *list) {
          tensors.push_back(Ramp(Prefix(c_, 1) + t.suffix, t.shape, dtype, seed += 0.25f));
          if (tensors.back().name == changed) tensors.back().data[0] ^= 1;
        }
      }
      EXPECT_TRUE(WriteSafetensors(dir.File("model-00002-of-00002.safetensors"), tensors).ok());
    }
    absl::StatusOr<std::unique_ptr<SafetensorsDir>> st = SafetensorsDir::Open(dir.path());
    EXPECT_TRUE(st.ok()) << st.status();
    absl::StatusOr<Fingerprint> fp =
        ModelFingerprint(config_, with_weights && st.ok() ? st->get() : nullptr);
    EXPECT_TRUE(fp.ok()) << fp.status();
    return fp.ok() ? *fp : Fingerprint{};
  }

  ArchCase c_;
  ModelConfig config_;
};

TEST_F(FingerprintTest, DependsOnGeometryAndEveryWeight) {
  const Fingerprint base = Of(DType::kF32);
  EXPECT_EQ(base, Of(DType::kF32));
  EXPECT_NE(base, Of(DType::kBF16));
  EXPECT_NE(base, Of(DType::kF32, "model.layers.1.self_attn.v_proj.bias"));
  // Not used by any mode, but it shapes later layers' inputs: sampled into the fingerprint.
  EXPECT_NE(base, Of(DType::kF32, "model.layers.1.self_attn.q_proj.bias"));
  const Fingerprint config_only = Of(DType::kF32, "", /*with_weights=*/false);
  EXPECT_NE(base, config_only);
  absl::StatusOr<Fingerprint> again = ModelFingerprint(config_, nullptr);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(config_only, *again);
  config_.rope.theta = 20000;
  EXPECT_NE(config_only, *ModelFingerprint(config_, nullptr));
}

TEST_F(FingerprintTest, ConfigOnlyMatchesDocumentedBytes) {
  // docs/model-fingerprint.md: domain string and NUL, u32 LE geometry length, geometry, then
  // the weights flag (0 here).
  std::string bytes = "slimkv-model-fingerprint-v1";
  bytes.push_back('\0');
  const std::string g = CanonicalGeometry(config_);
  for (int i = 0; i < 4; ++i) bytes.push_back(static_cast<char>((g.size() >> (8 * i)) & 0xff));
  bytes += g;
  bytes.push_back('\0');
  Fingerprint expected;
  SHA256(reinterpret_cast<const unsigned char*>(bytes.data()), bytes.size(), expected.data());
  absl::StatusOr<Fingerprint> fp = ModelFingerprint(config_, nullptr);
  ASSERT_TRUE(fp.ok());
  EXPECT_EQ(*fp, expected);
}

TEST_F(FingerprintTest, MissingLayerFails) {
  ScratchDir dir;
  ASSERT_TRUE(WriteSafetensors(dir.File("model.safetensors"), {Ramp("unrelated", {2})}).ok());
  absl::StatusOr<std::unique_ptr<SafetensorsDir>> st = SafetensorsDir::Open(dir.path());
  ASSERT_TRUE(st.ok());
  EXPECT_EQ(ModelFingerprint(config_, st->get()).status().code(), absl::StatusCode::kNotFound);
}

}  // namespace
}  // namespace slimkv::cache
