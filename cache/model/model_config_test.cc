#include "cache/model/model_config.h"

#include <cmath>
#include <string>

#include "gtest/gtest.h"
#include "nlohmann/json.hpp"

namespace slimkv::cache {
namespace {

// config.json texts as the HF hub ships them (fields trimmed only where SlimKV ignores them).
constexpr const char* kLlama2_7B = R"({
  "architectures": ["LlamaForCausalLM"], "bos_token_id": 1, "eos_token_id": 2,
  "hidden_act": "silu", "hidden_size": 4096, "initializer_range": 0.02,
  "intermediate_size": 11008, "max_position_embeddings": 4096, "model_type": "llama",
  "num_attention_heads": 32, "num_hidden_layers": 32, "num_key_value_heads": 32,
  "pretraining_tp": 1, "rms_norm_eps": 1e-05, "rope_scaling": null,
  "tie_word_embeddings": false, "torch_dtype": "float16", "transformers_version": "4.31.0.dev0",
  "use_cache": true, "vocab_size": 32000})";

constexpr const char* kLlama31_8B = R"({
  "architectures": ["LlamaForCausalLM"], "attention_bias": false, "attention_dropout": 0.0,
  "hidden_size": 4096, "intermediate_size": 14336, "max_position_embeddings": 131072,
  "mlp_bias": false, "model_type": "llama", "num_attention_heads": 32, "num_hidden_layers": 32,
  "num_key_value_heads": 8, "rms_norm_eps": 1e-05,
  "rope_scaling": {"factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                   "original_max_position_embeddings": 8192, "rope_type": "llama3"},
  "rope_theta": 500000.0, "torch_dtype": "bfloat16", "vocab_size": 128256})";

constexpr const char* kMistral7B = R"({
  "architectures": ["MistralForCausalLM"], "bos_token_id": 1, "eos_token_id": 2,
  "hidden_act": "silu", "hidden_size": 4096, "initializer_range": 0.02,
  "intermediate_size": 14336, "max_position_embeddings": 32768, "model_type": "mistral",
  "num_attention_heads": 32, "num_hidden_layers": 32, "num_key_value_heads": 8,
  "rms_norm_eps": 1e-05, "rope_theta": 10000.0, "sliding_window": 4096,
  "tie_word_embeddings": false, "torch_dtype": "bfloat16", "transformers_version": "4.34.0.dev0",
  "use_cache": true, "vocab_size": 32000})";

constexpr const char* kQwen2_7B = R"({
  "architectures": ["Qwen2ForCausalLM"], "attention_dropout": 0.0, "bos_token_id": 151643,
  "eos_token_id": 151643, "hidden_act": "silu", "hidden_size": 3584, "initializer_range": 0.02,
  "intermediate_size": 18944, "max_position_embeddings": 131072, "max_window_layers": 28,
  "model_type": "qwen2", "num_attention_heads": 28, "num_hidden_layers": 28,
  "num_key_value_heads": 4, "rms_norm_eps": 1e-06, "rope_theta": 1000000.0,
  "sliding_window": 131072, "tie_word_embeddings": false, "torch_dtype": "bfloat16",
  "transformers_version": "4.37.2", "use_cache": true, "use_sliding_window": false,
  "vocab_size": 152064})";

constexpr const char* kGemma2_9B = R"({
  "architectures": ["Gemma2ForCausalLM"], "attention_bias": false, "attention_dropout": 0.0,
  "attn_logit_softcapping": 50.0, "bos_token_id": 2, "cache_implementation": "hybrid",
  "eos_token_id": 1, "final_logit_softcapping": 30.0, "head_dim": 256,
  "hidden_act": "gelu_pytorch_tanh", "hidden_activation": "gelu_pytorch_tanh",
  "hidden_size": 3584, "initializer_range": 0.02, "intermediate_size": 14336,
  "max_position_embeddings": 8192, "model_type": "gemma2", "num_attention_heads": 16,
  "num_hidden_layers": 42, "num_key_value_heads": 8, "pad_token_id": 0,
  "query_pre_attn_scalar": 256, "rms_norm_eps": 1e-06, "rope_theta": 10000.0,
  "sliding_window": 4096, "sliding_window_size": 4096, "torch_dtype": "float32",
  "transformers_version": "4.42.0.dev0", "use_cache": true, "vocab_size": 256000})";

constexpr const char* kPhi3Mini4k = R"({
  "_name_or_path": "Phi-3-mini-4k-instruct", "architectures": ["Phi3ForCausalLM"],
  "attention_bias": false, "attention_dropout": 0.0, "bos_token_id": 1, "embd_pdrop": 0.0,
  "eos_token_id": 32000, "hidden_act": "silu", "hidden_size": 3072, "initializer_range": 0.02,
  "intermediate_size": 8192, "max_position_embeddings": 4096, "model_type": "phi3",
  "num_attention_heads": 32, "num_hidden_layers": 32, "num_key_value_heads": 32,
  "original_max_position_embeddings": 4096, "pad_token_id": 32000, "resid_pdrop": 0.0,
  "rms_norm_eps": 1e-05, "rope_scaling": null, "rope_theta": 10000.0, "sliding_window": 2047,
  "tie_word_embeddings": false, "torch_dtype": "bfloat16", "transformers_version": "4.40.2",
  "use_cache": true, "vocab_size": 32064})";

constexpr const char* kDeepSeekV2Lite = R"({
  "architectures": ["DeepseekV2ForCausalLM"], "attention_bias": false,
  "attention_dropout": 0.0, "aux_loss_alpha": 0.001, "bos_token_id": 100000,
  "eos_token_id": 100001, "first_k_dense_replace": 1, "hidden_act": "silu", "hidden_size": 2048,
  "initializer_range": 0.02, "intermediate_size": 10944, "kv_lora_rank": 512,
  "max_position_embeddings": 163840, "model_type": "deepseek_v2", "moe_intermediate_size": 1408,
  "moe_layer_freq": 1, "n_group": 1, "n_routed_experts": 64, "n_shared_experts": 2,
  "norm_topk_prob": false, "num_attention_heads": 16, "num_experts_per_tok": 6,
  "num_hidden_layers": 27, "num_key_value_heads": 16, "pretraining_tp": 1, "q_lora_rank": null,
  "qk_nope_head_dim": 128, "qk_rope_head_dim": 64, "rms_norm_eps": 1e-06,
  "rope_scaling": {"beta_fast": 32, "beta_slow": 1, "factor": 40, "mscale": 0.707,
                   "mscale_all_dim": 0.707, "original_max_position_embeddings": 4096,
                   "type": "yarn"},
  "rope_theta": 10000, "routed_scaling_factor": 1.0, "scoring_func": "softmax", "seq_aux": true,
  "tie_word_embeddings": false, "topk_group": 1, "topk_method": "greedy",
  "torch_dtype": "bfloat16", "transformers_version": "4.33.1", "use_cache": true,
  "v_head_dim": 128, "vocab_size": 102400})";

constexpr const char* kDeepSeekV3 = R"({
  "architectures": ["DeepseekV3ForCausalLM"], "attention_bias": false, "attention_dropout": 0.0,
  "bos_token_id": 0, "eos_token_id": 1, "ep_size": 1, "first_k_dense_replace": 3,
  "hidden_act": "silu", "hidden_size": 7168, "initializer_range": 0.02,
  "intermediate_size": 18432, "kv_lora_rank": 512, "max_position_embeddings": 163840,
  "model_type": "deepseek_v3", "moe_intermediate_size": 2048, "moe_layer_freq": 1, "n_group": 8,
  "n_routed_experts": 256, "n_shared_experts": 1, "norm_topk_prob": true,
  "num_attention_heads": 128, "num_experts_per_tok": 8, "num_hidden_layers": 61,
  "num_key_value_heads": 128, "num_nextn_predict_layers": 1, "q_lora_rank": 1536,
  "qk_nope_head_dim": 128, "qk_rope_head_dim": 64,
  "quantization_config": {"activation_scheme": "dynamic", "fmt": "e4m3",
                          "quant_method": "fp8", "weight_block_size": [128, 128]},
  "rms_norm_eps": 1e-06,
  "rope_scaling": {"beta_fast": 32, "beta_slow": 1, "factor": 40, "mscale": 1.0,
                   "mscale_all_dim": 1.0, "original_max_position_embeddings": 4096,
                   "type": "yarn"},
  "rope_theta": 10000, "routed_scaling_factor": 2.5, "scoring_func": "sigmoid",
  "tie_word_embeddings": false, "topk_group": 4, "topk_method": "noaux_tc",
  "torch_dtype": "bfloat16", "transformers_version": "4.33.1", "use_cache": true,
  "v_head_dim": 128, "vocab_size": 129280})";

constexpr const char* kT5_11B = R"({
  "architectures": ["T5WithLMHeadModel"], "d_ff": 65536, "d_kv": 128, "d_model": 1024,
  "decoder_start_token_id": 0, "dropout_rate": 0.1, "eos_token_id": 1,
  "initializer_factor": 1.0, "is_encoder_decoder": true, "layer_norm_epsilon": 1e-06,
  "model_type": "t5", "n_positions": 512, "num_heads": 128, "num_layers": 24,
  "output_past": true, "pad_token_id": 0, "relative_attention_num_buckets": 32,
  "vocab_size": 32128})";

// What MHA2MLA's run_train.py leaves in a converted Llama-2-7B (config.mha2mla = its args).
constexpr const char* kLlama2_7B_Mha2Mla = R"({
  "architectures": ["LlamaForCausalLM"], "hidden_size": 4096, "max_position_embeddings": 4096,
  "model_type": "llama", "num_attention_heads": 32, "num_hidden_layers": 32,
  "num_key_value_heads": 32, "rope_theta": 10000.0, "torch_dtype": "bfloat16",
  "mha2mla": {"model_name_or_path": "meta-llama/Llama-2-7b-hf", "partial_rope_version": "2-norm",
              "rope_dim_for_mla": 16, "uniform_start_point": 0,
              "qk_tensor_path": "utils/llama2_7B-2_norm_rank.pth", "svd_init_method": "joint",
              "low_rank": 64, "is_baseline": false, "is_gqa2mha2mla": false}})";

// TransMLA's modify_config.py on Qwen2.5-7B: model_type rewritten to deepseek_v3.
constexpr const char* kTransMlaQwen = R"({
  "architectures": ["LlamaMLAForCausalLM"], "attention_bias": true, "hidden_size": 3584,
  "max_position_embeddings": 32768, "model_type": "deepseek_v3", "num_attention_heads": 28,
  "num_hidden_layers": 28, "num_key_value_heads": 28, "head_dim": 64, "qk_rope_head_dim": 64,
  "qk_nope_head_dim": 128, "v_head_dim": 128, "q_lora_rank": null, "kv_lora_rank": 512,
  "qk_latent_layernorm": false, "rope_theta": 1000000.0, "torch_dtype": "bfloat16"})";

ModelConfig MustParse(const char* text) {
  absl::StatusOr<ModelConfig> c = ParseModelConfig(text);
  EXPECT_TRUE(c.ok()) << c.status();
  return c.ok() ? *c : ModelConfig{};
}

TEST(ModelConfigTest, Llama2_7B) {
  ModelConfig c = MustParse(kLlama2_7B);
  EXPECT_EQ(c.architecture, "llama");
  EXPECT_EQ(c.num_layers, 32u);
  EXPECT_EQ(c.hidden_size, 4096u);
  EXPECT_EQ(c.num_q_heads, 32u);
  EXPECT_EQ(c.num_kv_heads, 32u);
  EXPECT_EQ(c.k_head_dim, 128u);
  EXPECT_EQ(c.v_head_dim, 128u);
  EXPECT_FALSE(c.kv_bias);
  EXPECT_FALSE(c.fused_qkv);
  EXPECT_FALSE(c.cross_attention);
  EXPECT_EQ(c.rope.theta, 10000.0);  // absent: HF default
  EXPECT_EQ(c.rope.rotary_dim, 128u);
  EXPECT_EQ(c.rope.pairing, RopePairing::kHalfSplit);
  EXPECT_EQ(c.rope.scaling.type, RopeScalingType::kNone);
  EXPECT_EQ(c.rope.max_position_embeddings, 4096u);
  EXPECT_FALSE(c.mla.has_value());
  EXPECT_EQ(c.torch_dtype, "float16");
  EXPECT_DOUBLE_EQ(c.softmax_scale, 1.0 / std::sqrt(128.0));
}

TEST(ModelConfigTest, Llama31Llama3Scaling) {
  ModelConfig c = MustParse(kLlama31_8B);
  EXPECT_EQ(c.num_kv_heads, 8u);
  EXPECT_EQ(c.rope.theta, 500000.0);
  EXPECT_EQ(c.rope.scaling.type, RopeScalingType::kLlama3);
  EXPECT_EQ(c.rope.scaling.factor, 8.0);
  EXPECT_EQ(c.rope.scaling.low_freq_factor, 1.0);
  EXPECT_EQ(c.rope.scaling.high_freq_factor, 4.0);
  EXPECT_EQ(c.rope.scaling.original_max_position_embeddings, 8192u);
}

TEST(ModelConfigTest, Mistral7B) {
  ModelConfig c = MustParse(kMistral7B);
  EXPECT_EQ(c.architecture, "mistral");
  EXPECT_EQ(c.num_q_heads, 32u);
  EXPECT_EQ(c.num_kv_heads, 8u);
  EXPECT_EQ(c.k_head_dim, 128u);
  EXPECT_EQ(c.sliding_window, 4096u);
  EXPECT_EQ(c.rope.max_position_embeddings, 32768u);
}

TEST(ModelConfigTest, Qwen2_7BHasKvBias) {
  ModelConfig c = MustParse(kQwen2_7B);
  EXPECT_EQ(c.num_layers, 28u);
  EXPECT_EQ(c.hidden_size, 3584u);
  EXPECT_EQ(c.num_q_heads, 28u);
  EXPECT_EQ(c.num_kv_heads, 4u);
  EXPECT_EQ(c.k_head_dim, 128u);
  EXPECT_TRUE(c.kv_bias);
  EXPECT_EQ(c.rope.theta, 1e6);
}

TEST(ModelConfigTest, Gemma2_9BExplicitHeadDimAndScale) {
  ModelConfig c = MustParse(kGemma2_9B);
  EXPECT_EQ(c.num_layers, 42u);
  EXPECT_EQ(c.hidden_size, 3584u);
  EXPECT_EQ(c.num_q_heads, 16u);
  EXPECT_EQ(c.num_kv_heads, 8u);
  EXPECT_EQ(c.k_head_dim, 256u);  // not 3584 / 16 = 224
  EXPECT_EQ(c.rope.rotary_dim, 256u);
  EXPECT_DOUBLE_EQ(c.softmax_scale, 1.0 / 16.0);
  EXPECT_EQ(c.attn_logit_softcapping, 50.0);
  EXPECT_EQ(c.torch_dtype, "float32");
}

TEST(ModelConfigTest, Phi3MiniFusedQkv) {
  ModelConfig c = MustParse(kPhi3Mini4k);
  EXPECT_TRUE(c.fused_qkv);
  EXPECT_FALSE(c.kv_bias);
  EXPECT_EQ(c.num_kv_heads, 32u);
  EXPECT_EQ(c.k_head_dim, 96u);
  EXPECT_EQ(c.rope.rotary_dim, 96u);
}

TEST(ModelConfigTest, Phi3PartialRotary) {
  nlohmann::json j = nlohmann::json::parse(kPhi3Mini4k);
  j["partial_rotary_factor"] = 0.75;
  absl::StatusOr<ModelConfig> c = ParseModelConfig(j.dump());
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->rope.rotary_dim, 72u);
  EXPECT_EQ(c->k_head_dim, 96u);
}

// transformers 5 writes RoPE as one "rope_parameters" object; its theta and scaling are the
// model's (read as rope_theta / rope_scaling before, the defaults were used silently).
TEST(ModelConfigTest, RopeParametersOfTransformers5) {
  nlohmann::json j = nlohmann::json::parse(kLlama31_8B);
  j.erase("rope_theta");
  j.erase("rope_scaling");
  j["rope_parameters"] = {{"rope_type", "yarn"},       {"rope_theta", 250000.0},
                          {"factor", 4.0},             {"attention_factor", 1.25},
                          {"beta_fast", 16},           {"original_max_position_embeddings", 8192},
                          {"truncate", false}};
  absl::StatusOr<ModelConfig> c = ParseModelConfig(j.dump());
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->rope.theta, 250000.0);
  EXPECT_EQ(c->rope.scaling.type, RopeScalingType::kYarn);
  EXPECT_EQ(c->rope.scaling.factor, 4.0);
  EXPECT_EQ(c->rope.scaling.attention_factor, 1.25);
  EXPECT_EQ(c->rope.scaling.beta_fast, 16.0);
  EXPECT_FALSE(c->rope.scaling.truncate);
  EXPECT_EQ(c->rope.scaling.mscale, 0.0);  // absent: transformers then uses 0.1·ln(factor) + 1
}

TEST(ModelConfigTest, Phi3LongRopeIsRefused) {
  nlohmann::json j = nlohmann::json::parse(kPhi3Mini4k);
  j["rope_scaling"] = {{"type", "longrope"},
                       {"long_factor", {1.0, 1.1}},
                       {"short_factor", {1.0, 1.0}}};
  absl::StatusOr<ModelConfig> c = ParseModelConfig(j.dump());
  ASSERT_EQ(c.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(c.status().message().find("longrope"), std::string::npos) << c.status();
}

TEST(ModelConfigTest, DeepSeekV2Lite) {
  ModelConfig c = MustParse(kDeepSeekV2Lite);
  EXPECT_EQ(c.architecture, "deepseek_v2");
  EXPECT_EQ(c.num_layers, 27u);
  EXPECT_EQ(c.hidden_size, 2048u);
  EXPECT_EQ(c.num_q_heads, 16u);
  EXPECT_EQ(c.num_kv_heads, 16u);
  EXPECT_EQ(c.k_head_dim, 192u);
  EXPECT_EQ(c.v_head_dim, 128u);
  ASSERT_TRUE(c.mla.has_value());
  EXPECT_EQ(c.mla->layout, LatentLayout::kDeepSeek);
  EXPECT_EQ(c.mla->kv_lora_rank, 512u);
  EXPECT_EQ(c.mla->qk_rope_head_dim, 64u);
  EXPECT_EQ(c.mla->qk_nope_head_dim, 128u);
  EXPECT_EQ(c.mla->v_head_dim, 128u);
  EXPECT_TRUE(c.mla->kv_a_layernorm);
  EXPECT_FALSE(c.mla->kv_a_bias);
  EXPECT_EQ(c.rope.rotary_dim, 64u);
  EXPECT_EQ(c.rope.pairing, RopePairing::kInterleaved);
  EXPECT_EQ(c.rope.scaling.type, RopeScalingType::kYarn);
  EXPECT_EQ(c.rope.scaling.factor, 40.0);
  EXPECT_EQ(c.rope.scaling.beta_fast, 32.0);
  EXPECT_EQ(c.rope.scaling.beta_slow, 1.0);
  EXPECT_EQ(c.rope.scaling.mscale, 0.707);
  EXPECT_EQ(c.rope.scaling.mscale_all_dim, 0.707);
  EXPECT_EQ(c.rope.scaling.original_max_position_embeddings, 4096u);
  // DeepseekV2Attention: q_head_dim^-0.5 * yarn_get_mscale(40, 0.707)^2.
  const double m = 0.1 * 0.707 * std::log(40.0) + 1.0;
  EXPECT_DOUBLE_EQ(c.softmax_scale, m * m / std::sqrt(192.0));
}

TEST(ModelConfigTest, DeepSeekV3) {
  ModelConfig c = MustParse(kDeepSeekV3);
  EXPECT_EQ(c.architecture, "deepseek_v3");
  EXPECT_EQ(c.num_layers, 61u);
  EXPECT_EQ(c.hidden_size, 7168u);
  EXPECT_EQ(c.num_q_heads, 128u);
  EXPECT_EQ(c.k_head_dim, 192u);
  ASSERT_TRUE(c.mla.has_value());
  EXPECT_EQ(c.mla->kv_lora_rank, 512u);
  EXPECT_EQ(c.mla->qk_rope_head_dim, 64u);
  EXPECT_EQ(c.rope.scaling.mscale_all_dim, 1.0);
}

TEST(ModelConfigTest, TransMlaConvertedQwen) {
  ModelConfig c = MustParse(kTransMlaQwen);
  ASSERT_TRUE(c.mla.has_value());
  EXPECT_EQ(c.mla->layout, LatentLayout::kDeepSeek);
  EXPECT_FALSE(c.mla->kv_a_layernorm);
  EXPECT_TRUE(c.mla->kv_a_bias);
  EXPECT_EQ(c.k_head_dim, 192u);
}

TEST(ModelConfigTest, T5_11BCrossAttention) {
  ModelConfig c = MustParse(kT5_11B);
  EXPECT_EQ(c.architecture, "t5");
  EXPECT_EQ(c.num_layers, 24u);  // num_decoder_layers absent: T5Config uses num_layers
  EXPECT_EQ(c.hidden_size, 1024u);
  EXPECT_EQ(c.num_q_heads, 128u);
  EXPECT_EQ(c.num_kv_heads, 128u);
  EXPECT_EQ(c.k_head_dim, 128u);
  EXPECT_TRUE(c.cross_attention);
  EXPECT_EQ(c.rope.rotary_dim, 0u);
  EXPECT_EQ(c.softmax_scale, 1.0);
  EXPECT_FALSE(c.mla.has_value());
  EXPECT_EQ(c.torch_dtype, "");
}

TEST(ModelConfigTest, T5DecoderLayersDifferFromEncoder) {
  nlohmann::json j = nlohmann::json::parse(kT5_11B);
  j["num_decoder_layers"] = 6;
  absl::StatusOr<ModelConfig> c = ParseModelConfig(j.dump());
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->num_layers, 6u);
}

TEST(ModelConfigTest, Mha2MlaLlama) {
  ModelConfig c = MustParse(kLlama2_7B_Mha2Mla);
  ASSERT_TRUE(c.mla.has_value());
  EXPECT_EQ(c.mla->layout, LatentLayout::kMha2Mla);
  EXPECT_EQ(c.mla->kv_lora_rank, 64u);
  EXPECT_EQ(c.mla->qk_rope_head_dim, 16u);
  EXPECT_EQ(c.mla->qk_nope_head_dim, 112u);
  EXPECT_EQ(c.mla->v_head_dim, 128u);
  EXPECT_EQ(c.k_head_dim, 128u);
  EXPECT_EQ(c.rope.rotary_dim, 16u);

  nlohmann::json j = nlohmann::json::parse(kLlama2_7B_Mha2Mla);
  j["mha2mla"]["is_baseline"] = true;
  absl::StatusOr<ModelConfig> baseline = ParseModelConfig(j.dump());
  ASSERT_TRUE(baseline.ok()) << baseline.status();
  EXPECT_FALSE(baseline->mla.has_value());

  j["mha2mla"]["is_baseline"] = false;
  j["mha2mla"]["svd_init_method"] = "split";
  EXPECT_EQ(ParseModelConfig(j.dump()).status().code(), absl::StatusCode::kInvalidArgument);
}

// Each case mutates a valid config and expects INVALID_ARGUMENT naming `field`.
struct BadCase {
  const char* name;
  const char* base;
  const char* pointer;  // JSON pointer of the field to change
  const char* value;    // JSON text; nullptr removes the field
  const char* field;    // expected in the message
};

class BadConfigTest : public testing::TestWithParam<BadCase> {};

TEST_P(BadConfigTest, IsInvalidArgumentNamingTheField) {
  const BadCase& bc = GetParam();
  nlohmann::json j = nlohmann::json::parse(bc.base);
  nlohmann::json::json_pointer ptr(bc.pointer);
  if (bc.value == nullptr) {
    j[ptr.parent_pointer()].erase(ptr.back());
  } else {
    j[ptr] = nlohmann::json::parse(bc.value);
  }
  absl::StatusOr<ModelConfig> c = ParseModelConfig(j.dump());
  ASSERT_EQ(c.status().code(), absl::StatusCode::kInvalidArgument) << c.status();
  EXPECT_NE(c.status().message().find(bc.field), std::string::npos) << c.status();
}

INSTANTIATE_TEST_SUITE_P(
    Matrix, BadConfigTest,
    testing::Values(
        BadCase{"MissingModelType", kLlama2_7B, "/model_type", nullptr, "model_type"},
        BadCase{"UnknownModelType", kLlama2_7B, "/model_type", "\"gpt2\"", "gpt2"},
        BadCase{"ModelTypeNotString", kLlama2_7B, "/model_type", "7", "model_type"},
        BadCase{"MissingHidden", kLlama2_7B, "/hidden_size", nullptr, "hidden_size"},
        BadCase{"HiddenString", kLlama2_7B, "/hidden_size", "\"4096\"", "hidden_size"},
        BadCase{"HiddenFloat", kLlama2_7B, "/hidden_size", "4096.5", "hidden_size"},
        BadCase{"HiddenZero", kLlama2_7B, "/hidden_size", "0", "hidden_size"},
        BadCase{"HiddenNegative", kLlama2_7B, "/hidden_size", "-4096", "hidden_size"},
        BadCase{"HiddenHuge", kLlama2_7B, "/hidden_size", "1048577", "hidden_size"},
        BadCase{"LayersMissing", kLlama2_7B, "/num_hidden_layers", nullptr, "num_hidden_layers"},
        BadCase{"LayersZero", kMistral7B, "/num_hidden_layers", "0", "num_hidden_layers"},
        BadCase{"LayersHuge", kMistral7B, "/num_hidden_layers", "4294967297",
                "num_hidden_layers"},
        BadCase{"HeadsZero", kMistral7B, "/num_attention_heads", "0", "num_attention_heads"},
        BadCase{"HeadsBool", kMistral7B, "/num_attention_heads", "true", "num_attention_heads"},
        BadCase{"KvHeadsNotDividing", kMistral7B, "/num_key_value_heads", "7",
                "num_key_value_heads"},
        BadCase{"HiddenNotDividing", kLlama2_7B, "/hidden_size", "4097", "hidden_size"},
        BadCase{"HeadDimTimesHeadsHuge", kMistral7B, "/head_dim", "1048576", "head_dim"},
        BadCase{"Gemma2HeadDimMissing", kGemma2_9B, "/head_dim", nullptr, "head_dim"},
        BadCase{"RopeThetaString", kQwen2_7B, "/rope_theta", "\"1e6\"", "rope_theta"},
        BadCase{"RopeThetaZero", kQwen2_7B, "/rope_theta", "0", "rope_theta"},
        BadCase{"MaxPositionsMissing", kQwen2_7B, "/max_position_embeddings", nullptr,
                "max_position_embeddings"},
        BadCase{"AttentionBiasString", kLlama2_7B, "/attention_bias", "\"no\"",
                "attention_bias"},
        BadCase{"RopeScalingNotObject", kLlama2_7B, "/rope_scaling", "[1]", "rope_scaling"},
        BadCase{"RopeScalingUnknown", kLlama2_7B, "/rope_scaling",
                R"({"type": "wild", "factor": 2.0})", "wild"},
        BadCase{"RopeScalingNoFactor", kLlama2_7B, "/rope_scaling", R"({"type": "linear"})",
                "rope_scaling.factor"},
        BadCase{"Llama3MissingLowFreq", kLlama31_8B, "/rope_scaling/low_freq_factor", nullptr,
                "rope_scaling.low_freq_factor"},
        BadCase{"PartialRotaryTooBig", kPhi3Mini4k, "/partial_rotary_factor", "1.5",
                "partial_rotary_factor"},
        // transformers' Llama/Mistral/Qwen2/Gemma2 rotate the whole head whatever the field
        // says: registering would reconstruct with a rotary_dim no engine uses.
        BadCase{"LlamaPartialRotary", kLlama2_7B, "/partial_rotary_factor", "0.5",
                "partial_rotary_factor"},
        BadCase{"QwenPartialRotaryInRopeParameters", kQwen2_7B, "/rope_parameters",
                R"({"rope_type": "default", "rope_theta": 1e6, "partial_rotary_factor": 0.5})",
                "partial_rotary_factor"},
        BadCase{"RopeParametersPerLayerType", kLlama2_7B, "/rope_parameters",
                R"({"full_attention": {"rope_type": "default", "rope_theta": 1e6}})",
                "rope_parameters.full_attention"},
        BadCase{"DeepSeekNoKvLoraRank", kDeepSeekV2Lite, "/kv_lora_rank", nullptr,
                "kv_lora_rank"},
        BadCase{"DeepSeekRopeDimZero", kDeepSeekV2Lite, "/qk_rope_head_dim", "0",
                "qk_rope_head_dim"},
        BadCase{"DeepSeekRopeDimOdd", kDeepSeekV2Lite, "/qk_rope_head_dim", "63",
                "qk_rope_head_dim"},
        BadCase{"DeepSeekVHeadDimString", kDeepSeekV3, "/v_head_dim", "\"128\"", "v_head_dim"},
        BadCase{"DeepSeekYarnBetaString", kDeepSeekV3, "/rope_scaling/beta_fast", "\"32\"",
                "rope_scaling.beta_fast"},
        BadCase{"T5NoDModel", kT5_11B, "/d_model", nullptr, "d_model"},
        BadCase{"T5DKvZero", kT5_11B, "/d_kv", "0", "d_kv"},
        BadCase{"T5HeadsHuge", kT5_11B, "/num_heads", "2000000", "num_heads"},
        BadCase{"Mha2MlaLowRankMissing", kLlama2_7B_Mha2Mla, "/mha2mla/low_rank", nullptr,
                "mha2mla.low_rank"},
        BadCase{"Mha2MlaRopeOdd", kLlama2_7B_Mha2Mla, "/mha2mla/rope_dim_for_mla", "15",
                "rope_dim_for_mla"},
        BadCase{"Mha2MlaGqa", kLlama2_7B_Mha2Mla, "/mha2mla/is_gqa2mha2mla", "true",
                "is_gqa2mha2mla"}),
    [](const testing::TestParamInfo<BadCase>& info) { return info.param.name; });

TEST(ModelConfigTest, NotJsonOrNotObject) {
  EXPECT_EQ(ParseModelConfig("{").status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ParseModelConfig("[1, 2]").status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ParseModelConfig("").status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(CanonicalGeometryTest, StableAndSensitiveToGeometry) {
  ModelConfig a = MustParse(kMistral7B);
  ModelConfig b = MustParse(kMistral7B);
  EXPECT_EQ(CanonicalGeometry(a), CanonicalGeometry(b));
  b.torch_dtype = "float16";  // not geometry
  b.sliding_window = 0;
  EXPECT_EQ(CanonicalGeometry(a), CanonicalGeometry(b));
  b.rope.theta = 1e6;
  EXPECT_NE(CanonicalGeometry(a), CanonicalGeometry(b));
  b = a;
  b.num_kv_heads = 4;
  EXPECT_NE(CanonicalGeometry(a), CanonicalGeometry(b));
  EXPECT_NE(CanonicalGeometry(MustParse(kDeepSeekV2Lite)), CanonicalGeometry(a));
}

TEST(CanonicalGeometryTest, Llama2BytesAsDocumented) {
  // docs/model-fingerprint.md: "SKVG", u32 version, u32 len + model_type, six u32 sizes,
  // three flags, RoPE, scaling, MLA flag, two f64: 4+4+4+5+24+3+8+4+1+4+1+8*3+4+8*4+1+16.
  const std::string g = CanonicalGeometry(MustParse(kLlama2_7B));
  EXPECT_EQ(g.size(), 4u + 4 + 4 + 5 + 24 + 3 + 8 + 4 + 1 + 4 + 1 + 8 * 3 + 4 + 8 * 4 + 1 + 16);
  EXPECT_EQ(g.substr(0, 4), "SKVG");
  EXPECT_EQ(g.substr(12, 5), "llama");
  EXPECT_EQ(static_cast<uint8_t>(g[17]), 32);  // num_layers, little-endian
  EXPECT_EQ(static_cast<uint8_t>(g[21]), 0x00);
  EXPECT_EQ(static_cast<uint8_t>(g[22]), 0x10);  // 4096 = 0x1000
}

}  // namespace
}  // namespace slimkv::cache
