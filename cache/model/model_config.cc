#include "cache/model/model_config.h"

#include <cmath>
#include <cstring>
#include <string>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "nlohmann/json.hpp"

namespace slimkv::cache {
namespace {

using Json = nlohmann::json;

constexpr uint64_t kMaxSize = uint64_t{1} << 20;
// Bound on products such as h_kv * d_h, so that every derived size fits comfortably in 32 bits.
constexpr uint64_t kMaxProduct = uint64_t{1} << 24;
constexpr uint64_t kMaxPositions = uint64_t{1} << 31;

// Reads fields of one JSON object. The first error sticks: later reads return defaults, and
// the caller checks status() once at the end. Messages name the field by its JSON path.
class FieldReader {
 public:
  FieldReader(const Json& object, std::string path) : j_(object), path_(std::move(path)) {}

  const absl::Status& status() const { return status_; }
  bool ok() const { return status_.ok(); }
  void Fail(absl::string_view message) {
    if (status_.ok()) status_ = absl::InvalidArgumentError(message);
  }
  std::string Path(absl::string_view key) const {
    return path_.empty() ? std::string(key) : absl::StrCat(path_, ".", key);
  }

  // Present and not null.
  bool Has(const char* key) const {
    auto it = j_.find(key);
    return it != j_.end() && !it->is_null();
  }

  // The value at `key`. nullptr when a previous read failed, or when the field is absent or
  // null (recorded as an error unless `optional`).
  const Json* Get(const char* key, bool optional) {
    if (!ok()) return nullptr;
    if (!Has(key)) {
      if (!optional) Fail(absl::StrCat("config.json: missing field ", Path(key)));
      return nullptr;
    }
    return &j_.at(key);
  }

  void FailType(const char* key, const char* expected, const Json& v) {
    Fail(absl::StrCat("config.json: ", Path(key), " must be ", expected, ", got ", v.dump()));
  }

  // An unsigned integer in [min, max]; required unless `fallback` is given.
  uint64_t Integer(const char* key, uint64_t min, uint64_t max,
                   std::optional<uint64_t> fallback = std::nullopt) {
    const Json* v = Get(key, fallback.has_value());
    if (v == nullptr) return fallback.value_or(min);
    if (!v->is_number_integer()) {
      FailType(key, "an integer", *v);
      return min;
    }
    if (!v->is_number_unsigned()) {
      Fail(absl::StrCat("config.json: ", Path(key), " = ", v->dump(), " is negative"));
      return min;
    }
    const uint64_t value = v->get<uint64_t>();
    if (value < min || value > max) {
      Fail(absl::StrCat("config.json: ", Path(key), " = ", value, " is out of range [", min,
                        ", ", max, "]"));
      return min;
    }
    return value;
  }

  uint32_t Size(const char* key, std::optional<uint64_t> fallback = std::nullopt) {
    return static_cast<uint32_t>(Integer(key, 1, kMaxSize, fallback));
  }

  // A finite number in [min, max] (integers accepted); required unless `fallback` is given.
  double Number(const char* key, double min, double max, std::optional<double> fallback) {
    const Json* v = Get(key, fallback.has_value());
    if (v == nullptr) return fallback.value_or(min);
    if (!v->is_number()) {
      FailType(key, "a number", *v);
      return min;
    }
    const double value = v->get<double>();
    if (!std::isfinite(value) || value < min || value > max) {
      Fail(absl::StrCat("config.json: ", Path(key), " = ", v->dump(), " is out of range [", min,
                        ", ", max, "]"));
      return min;
    }
    return value;
  }

  bool Bool(const char* key, bool fallback) {
    const Json* v = Get(key, /*optional=*/true);
    if (v == nullptr) return fallback;
    if (!v->is_boolean()) {
      FailType(key, "true or false", *v);
      return fallback;
    }
    return v->get<bool>();
  }

  std::string String(const char* key, std::optional<std::string> fallback) {
    const Json* v = Get(key, fallback.has_value());
    if (v == nullptr) return fallback.value_or("");
    if (!v->is_string()) {
      FailType(key, "a string", *v);
      return "";
    }
    return v->get<std::string>();
  }

  // The object at `key`, or nullptr when absent or null (an error when of another type).
  const Json* Object(const char* key) {
    const Json* v = Get(key, /*optional=*/true);
    if (v != nullptr && !v->is_object()) {
      FailType(key, "an object", *v);
      return nullptr;
    }
    return v;
  }

 private:
  const Json& j_;
  std::string path_;
  absl::Status status_;
};

constexpr const char* kArchitectures[] = {"llama", "mistral",     "qwen2",       "gemma2",
                                          "phi3",  "deepseek_v2", "deepseek_v3", "t5"};

bool IsSupported(const std::string& arch) {
  for (const char* a : kArchitectures) {
    if (arch == a) return true;
  }
  return false;
}

// The scaling fields of `obj`, the object named `name` ("rope_scaling", or transformers 5's
// "rope_parameters"; "rope_type" is the current key, "type" the older one).
void ReadRopeScaling(FieldReader& top, const Json* obj, const char* name, uint32_t max_positions,
                     RopeScaling& out) {
  if (obj == nullptr) return;
  FieldReader r(*obj, name);
  std::string type = r.Has("rope_type") ? r.String("rope_type", std::nullopt)
                                        : r.String("type", std::string("default"));
  if (!r.ok()) return top.Fail(r.status().message());
  if (type == "default") return;
  if (type == "longrope" || type == "su") {
    // Per-dimension factors switch between short and long sets with the total sequence
    // length, so the rotation at position p is not a function of p alone: a stored K_raw
    // could not be re-rotated exactly. Refuse rather than reconstruct wrongly.
    return top.Fail(absl::StrCat("config.json: ", name, " type \"", type,
                                 "\" is not supported (rotation depends on sequence length)"));
  }
  const double factor = r.Number("factor", 1, 1e6, std::nullopt);
  if (type == "linear") {
    out.type = RopeScalingType::kLinear;
  } else if (type == "dynamic") {
    out.type = RopeScalingType::kDynamicNtk;
  } else if (type == "yarn") {
    out.type = RopeScalingType::kYarn;
    out.beta_fast = r.Number("beta_fast", 0, 1e6, 32.0);
    out.beta_slow = r.Number("beta_slow", 0, 1e6, 1.0);
    // transformers: attention_factor when given, else mscale / mscale_all_dim when both are
    // given (and non-zero), else 0.1·ln(factor) + 1. Absent reads as 0.
    out.mscale = r.Number("mscale", 0, 1e6, 0.0);
    out.mscale_all_dim = r.Number("mscale_all_dim", 0, 1e6, 0.0);
    out.attention_factor = r.Number("attention_factor", 0, 1e6, 0.0);
    out.truncate = r.Bool("truncate", true);
    out.original_max_position_embeddings =
        static_cast<uint32_t>(r.Integer("original_max_position_embeddings", 1, kMaxPositions,
                                        max_positions));
  } else if (type == "llama3") {
    out.type = RopeScalingType::kLlama3;
    out.low_freq_factor = r.Number("low_freq_factor", 1e-9, 1e6, std::nullopt);
    out.high_freq_factor = r.Number("high_freq_factor", 1e-9, 1e6, std::nullopt);
    out.original_max_position_embeddings = static_cast<uint32_t>(
        r.Integer("original_max_position_embeddings", 1, kMaxPositions, std::nullopt));
    if (r.ok() && out.high_freq_factor <= out.low_freq_factor) {
      r.Fail(absl::StrCat("config.json: ", name, ".high_freq_factor must exceed low_freq_factor"));
    }
  } else {
    r.Fail(absl::StrCat("config.json: ", name, " type \"", type,
                        "\" is not one of linear, dynamic, yarn, llama3"));
  }
  out.factor = factor;
  if (!r.ok()) top.Fail(r.status().message());
}

// RoPE of config.json: transformers 5 writes one "rope_parameters" object (rope_type,
// rope_theta, partial_rotary_factor, the scaling fields); older configs have top-level
// rope_theta / partial_rotary_factor and a "rope_scaling" object. Sets theta, the scaling and,
// when `partial_ok` (the architecture's attention rotates only the first
// int(head_dim · partial_rotary_factor) dims, as transformers' Phi3 does), rotary_dim. Where the
// architecture rotates the whole head, a partial_rotary_factor other than 1 is refused: the
// engine would not rotate as the config says, and SlimKV would not know which.
void ReadRope(FieldReader& r, uint32_t head_dim, bool partial_ok, RopeConfig& rope) {
  const Json* params = r.Object("rope_parameters");
  const char* name = params != nullptr ? "rope_parameters" : "rope_scaling";
  if (params != nullptr) {
    for (const auto& [key, value] : params->items()) {
      if (value.is_object()) {
        return r.Fail(absl::StrCat("config.json: rope_parameters.", key,
                                   ": RoPE per layer type is not supported"));
      }
    }
  }
  static const Json kNone = Json::object();
  FieldReader p(params != nullptr ? *params : kNone, name);
  const double top_theta = r.Number("rope_theta", 1e-9, 1e12, 10000.0);
  rope.theta = p.Number("rope_theta", 1e-9, 1e12, top_theta);
  const double top_partial = r.Number("partial_rotary_factor", 1e-9, 1, 1.0);
  const double partial = p.Number("partial_rotary_factor", 1e-9, 1, top_partial);
  if (!p.ok()) return r.Fail(p.status().message());
  if (partial != 1.0 && r.ok()) {
    if (!partial_ok) {
      return r.Fail(absl::StrCat("config.json: partial_rotary_factor = ", partial,
                                 " is not supported for this model_type (its attention rotates "
                                 "the whole head)"));
    }
    rope.rotary_dim = static_cast<uint32_t>(head_dim * partial);  // int(head_dim * factor)
    if (rope.rotary_dim == 0 || rope.rotary_dim % 2 != 0) {
      return r.Fail(absl::StrCat("config.json: partial_rotary_factor gives rotary_dim ",
                                 rope.rotary_dim, "; it must be even and positive"));
    }
  }
  ReadRopeScaling(r, params != nullptr ? params : r.Object("rope_scaling"), name,
                  rope.max_position_embeddings, rope.scaling);
}

void CheckProduct(FieldReader& r, const char* what, uint64_t a, uint64_t b) {
  if (r.ok() && a * b > kMaxProduct) {
    r.Fail(absl::StrCat("config.json: ", what, " = ", a * b, " exceeds ", kMaxProduct));
  }
}

void CheckHeadsDivide(FieldReader& r, uint32_t q_heads, uint32_t kv_heads) {
  if (r.ok() && q_heads % kv_heads != 0) {
    r.Fail(absl::StrCat("config.json: num_attention_heads (", q_heads,
                        ") is not a multiple of num_key_value_heads (", kv_heads, ")"));
  }
}

// The `mha2mla` block MHA2MLA's training script writes into config.json (see model_config.h).
void ReadMha2Mla(FieldReader& top, const Json& block, ModelConfig& c) {
  FieldReader r(block, "mha2mla");
  if (r.Bool("is_baseline", false)) return;
  if (r.Bool("is_gqa2mha2mla", false)) {
    return top.Fail("config.json: mha2mla.is_gqa2mha2mla = true is not supported");
  }
  std::string method = r.String("svd_init_method", std::nullopt);
  const uint32_t rope_dims = static_cast<uint32_t>(r.Integer("rope_dim_for_mla", 0, kMaxSize));
  const uint32_t low_rank = r.Size("low_rank");
  if (r.ok() && method != "joint") {
    r.Fail(absl::StrCat("config.json: mha2mla.svd_init_method \"", method,
                        "\" is not supported (only \"joint\" has one shared latent)"));
  }
  if (r.ok() && (rope_dims % 2 != 0 || rope_dims > c.k_head_dim)) {
    r.Fail(absl::StrCat("config.json: mha2mla.rope_dim_for_mla = ", rope_dims,
                        " must be even and at most the head dim ", c.k_head_dim));
  }
  if (!r.ok()) return top.Fail(r.status().message());
  MlaConfig mla;
  mla.layout = LatentLayout::kMha2Mla;
  mla.kv_lora_rank = low_rank;
  mla.qk_rope_head_dim = rope_dims;
  mla.qk_nope_head_dim = c.k_head_dim - rope_dims;
  mla.v_head_dim = c.v_head_dim;
  mla.kv_a_layernorm = false;
  mla.kv_a_bias = false;
  c.mla = mla;
  c.rope.rotary_dim = rope_dims;
  CheckProduct(top, "num_key_value_heads * mha2mla.low_rank", c.num_kv_heads, low_rank);
}

// llama, mistral, qwen2, gemma2, phi3.
void ReadDecoder(FieldReader& r, ModelConfig& c) {
  c.num_layers = r.Size("num_hidden_layers");
  c.hidden_size = r.Size("hidden_size");
  c.num_q_heads = r.Size("num_attention_heads");
  c.num_kv_heads = r.Size("num_key_value_heads", c.num_q_heads);
  CheckHeadsDivide(r, c.num_q_heads, c.num_kv_heads);
  uint32_t head_dim = 0;
  if (c.architecture == "gemma2" || r.Has("head_dim")) {
    head_dim = r.Size("head_dim");
  } else if (r.ok()) {
    if (c.hidden_size % c.num_q_heads != 0) {
      r.Fail(absl::StrCat("config.json: hidden_size (", c.hidden_size,
                          ") is not a multiple of num_attention_heads (", c.num_q_heads,
                          ") and head_dim is absent"));
    }
    head_dim = c.hidden_size / c.num_q_heads;
  }
  c.k_head_dim = c.v_head_dim = head_dim;
  CheckProduct(r, "num_attention_heads * head_dim", c.num_q_heads, head_dim);

  if (c.architecture == "qwen2") {
    c.kv_bias = true;  // Qwen2Attention always has q/k/v biases; there is no config field
  } else if (c.architecture != "phi3") {
    c.kv_bias = r.Bool("attention_bias", false);
  }
  c.fused_qkv = c.architecture == "phi3";

  c.rope.pairing = RopePairing::kHalfSplit;
  c.rope.max_position_embeddings =
      static_cast<uint32_t>(r.Integer("max_position_embeddings", 1, kMaxPositions));
  c.rope.rotary_dim = head_dim;
  if (r.ok() && head_dim % 2 != 0) {
    r.Fail(absl::StrCat("config.json: head dim ", head_dim, " must be even for RoPE"));
  }
  ReadRope(r, head_dim, /*partial_ok=*/c.architecture == "phi3", c.rope);

  c.softmax_scale = 1.0 / std::sqrt(static_cast<double>(head_dim));
  if (c.architecture == "gemma2") {
    const double scalar = r.Number("query_pre_attn_scalar", 1e-9, 1e12, head_dim);
    c.softmax_scale = 1.0 / std::sqrt(scalar);
    c.attn_logit_softcapping = r.Number("attn_logit_softcapping", 0, 1e12, 0.0);
  }
  if (r.Has("sliding_window")) {
    c.sliding_window = static_cast<uint32_t>(r.Integer("sliding_window", 1, kMaxPositions));
  }

  if (const Json* block = r.Object("mha2mla"); block != nullptr) {
    if (c.architecture == "gemma2" || c.architecture == "phi3") {
      return r.Fail(absl::StrCat("config.json: mha2mla is not supported for ", c.architecture));
    }
    ReadMha2Mla(r, *block, c);
  }
}

// DeepSeek's yarn_get_mscale.
double YarnMscale(double factor, double mscale) {
  return factor <= 1 ? 1.0 : 0.1 * mscale * std::log(factor) + 1.0;
}

// deepseek_v2, deepseek_v3 (also TransMLA conversions, which write model_type deepseek_v3).
void ReadDeepSeek(FieldReader& r, ModelConfig& c) {
  c.num_layers = r.Size("num_hidden_layers");
  c.hidden_size = r.Size("hidden_size");
  c.num_q_heads = r.Size("num_attention_heads");
  // MLA up-projects one K/V per query head; num_key_value_heads is not read by the model.
  c.num_kv_heads = c.num_q_heads;
  MlaConfig mla;
  mla.layout = LatentLayout::kDeepSeek;
  mla.kv_lora_rank = r.Size("kv_lora_rank");
  mla.qk_rope_head_dim = r.Size("qk_rope_head_dim");
  mla.qk_nope_head_dim = r.Size("qk_nope_head_dim");
  mla.v_head_dim = r.Size("v_head_dim");
  mla.kv_a_layernorm = r.Bool("qk_latent_layernorm", true);  // TransMLA may drop it
  mla.kv_a_bias = r.Bool("attention_bias", false);           // TransMLA from qwen2
  if (r.ok() && mla.qk_rope_head_dim % 2 != 0) {
    r.Fail(absl::StrCat("config.json: qk_rope_head_dim = ", mla.qk_rope_head_dim,
                        " must be even"));
  }
  c.k_head_dim = mla.qk_nope_head_dim + mla.qk_rope_head_dim;
  c.v_head_dim = mla.v_head_dim;
  CheckProduct(r, "num_attention_heads * (qk_nope_head_dim + qk_rope_head_dim)", c.num_q_heads,
               c.k_head_dim);
  CheckProduct(r, "num_attention_heads * v_head_dim", c.num_q_heads, c.v_head_dim);

  c.rope.rotary_dim = mla.qk_rope_head_dim;
  // DeepSeek checkpoints hold the rope dims interleaved; HF's port says so with
  // rope_interleave (default true).
  c.rope.pairing = r.Bool("rope_interleave", true) ? RopePairing::kInterleaved
                                                   : RopePairing::kHalfSplit;
  c.rope.max_position_embeddings =
      static_cast<uint32_t>(r.Integer("max_position_embeddings", 1, kMaxPositions));
  ReadRope(r, mla.qk_rope_head_dim, /*partial_ok=*/false, c.rope);

  c.softmax_scale = 1.0 / std::sqrt(static_cast<double>(c.k_head_dim));
  if (c.rope.scaling.type == RopeScalingType::kYarn && c.rope.scaling.mscale_all_dim != 0) {
    const double m = YarnMscale(c.rope.scaling.factor, c.rope.scaling.mscale_all_dim);
    c.softmax_scale *= m * m;
  }
  c.attn_logit_softcapping = r.Number("attn_logit_softcapping", 0, 1e12, 0.0);
  c.mla = mla;
}

// t5: the cached K, V are those of the decoder's cross-attention over the encoder output.
void ReadT5(FieldReader& r, ModelConfig& c) {
  const uint32_t layers = r.Size("num_layers");
  c.num_layers = r.Size("num_decoder_layers", layers);
  c.hidden_size = r.Size("d_model");
  c.num_q_heads = c.num_kv_heads = r.Size("num_heads");
  c.k_head_dim = c.v_head_dim = r.Size("d_kv");
  CheckProduct(r, "num_heads * d_kv", c.num_q_heads, c.k_head_dim);
  c.cross_attention = true;
  c.rope.rotary_dim = 0;
  c.rope.max_position_embeddings =
      static_cast<uint32_t>(r.Integer("n_positions", 1, kMaxPositions, 0));
  c.softmax_scale = 1.0;  // T5 folds the 1/sqrt(d_kv) into its weight initialisation
}

void AppendU8(std::string& out, uint8_t v) { out.push_back(static_cast<char>(v)); }

void AppendU32(std::string& out, uint32_t v) {
  for (int i = 0; i < 4; ++i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}

void AppendU64(std::string& out, uint64_t v) {
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}

void AppendF64(std::string& out, double v) {
  uint64_t bits;
  std::memcpy(&bits, &v, sizeof bits);
  AppendU64(out, bits);
}

}  // namespace

absl::StatusOr<ModelConfig> ParseModelConfig(absl::string_view config_json) {
  Json j;
  try {
    j = Json::parse(config_json.begin(), config_json.end());
  } catch (const Json::exception& e) {
    return absl::InvalidArgumentError(absl::StrCat("config.json is not valid JSON: ", e.what()));
  }
  if (!j.is_object()) return absl::InvalidArgumentError("config.json is not a JSON object");

  FieldReader r(j, "");
  ModelConfig c;
  c.architecture = r.String("model_type", std::nullopt);
  if (r.ok() && !IsSupported(c.architecture)) {
    return absl::InvalidArgumentError(
        absl::StrCat("config.json: model_type \"", c.architecture, "\" is not supported (one of ",
                     absl::StrJoin(kArchitectures, ", "), ")"));
  }
  c.torch_dtype = r.String("torch_dtype", std::string());
  if (!r.ok()) return r.status();
  if (c.architecture == "t5") {
    ReadT5(r, c);
  } else if (c.architecture == "deepseek_v2" || c.architecture == "deepseek_v3") {
    ReadDeepSeek(r, c);
  } else {
    ReadDecoder(r, c);
  }
  if (!r.ok()) return r.status();
  return c;
}

std::string CanonicalGeometry(const ModelConfig& c) {
  std::string out = "SKVG";
  AppendU32(out, 1);  // encoding version
  AppendU32(out, static_cast<uint32_t>(c.architecture.size()));
  out += c.architecture;
  AppendU32(out, c.num_layers);
  AppendU32(out, c.hidden_size);
  AppendU32(out, c.num_q_heads);
  AppendU32(out, c.num_kv_heads);
  AppendU32(out, c.k_head_dim);
  AppendU32(out, c.v_head_dim);
  AppendU8(out, c.kv_bias);
  AppendU8(out, c.fused_qkv);
  AppendU8(out, c.cross_attention);
  AppendF64(out, c.rope.theta);
  AppendU32(out, c.rope.rotary_dim);
  AppendU8(out, static_cast<uint8_t>(c.rope.pairing));
  AppendU32(out, c.rope.max_position_embeddings);
  const RopeScaling& s = c.rope.scaling;
  AppendU8(out, static_cast<uint8_t>(s.type));
  AppendF64(out, s.factor);
  AppendF64(out, s.beta_fast);
  AppendF64(out, s.beta_slow);
  AppendU32(out, s.original_max_position_embeddings);
  AppendF64(out, s.mscale);
  AppendF64(out, s.mscale_all_dim);
  AppendF64(out, s.low_freq_factor);
  AppendF64(out, s.high_freq_factor);
  if (s.attention_factor != 0 || !s.truncate) {  // absent before they were read: ids unchanged
    AppendF64(out, s.attention_factor);
    AppendU8(out, s.truncate);
  }
  AppendU8(out, c.mla.has_value());
  if (c.mla) {
    AppendU8(out, static_cast<uint8_t>(c.mla->layout));
    AppendU32(out, c.mla->kv_lora_rank);
    AppendU32(out, c.mla->qk_rope_head_dim);
    AppendU32(out, c.mla->qk_nope_head_dim);
    AppendU32(out, c.mla->v_head_dim);
    AppendU8(out, c.mla->kv_a_layernorm);
    AppendU8(out, c.mla->kv_a_bias);
  }
  AppendF64(out, c.softmax_scale);
  AppendF64(out, c.attn_logit_softcapping);
  return out;
}

const char* RopePairingName(RopePairing p) {
  return p == RopePairing::kHalfSplit ? "half_split" : "interleaved";
}

const char* RopeScalingTypeName(RopeScalingType t) {
  switch (t) {
    case RopeScalingType::kNone: return "none";
    case RopeScalingType::kLinear: return "linear";
    case RopeScalingType::kDynamicNtk: return "dynamic";
    case RopeScalingType::kYarn: return "yarn";
    case RopeScalingType::kLlama3: return "llama3";
  }
  return "unknown";
}

std::string KeyRecoveryMisfit(const ModelConfig& c) {
  if (c.mla.has_value() || c.rope.scaling.type != RopeScalingType::kDynamicNtk) return "";
  // The engine rotated each key with a base that grows with the length of the forward pass
  // that computed it, which a page does not record: K_raw cannot be recovered exactly.
  return "dynamic NTK RoPE: a key's rotation depends on the length of the forward pass that "
         "computed it, which a page does not record; only full applies";
}

std::string SlimMisfit(const ModelConfig& c) {
  if (std::string misfit = KeyRecoveryMisfit(c); !misfit.empty()) return misfit;
  const int64_t d = c.hidden_size, e = int64_t{c.num_kv_heads} * c.k_head_dim;
  if (e >= d) return "";
  return absl::StrCat("slim needs rank(W_K) = d, i.e. e = h_kv*d_h >= d; here e = ",
                      c.num_kv_heads, "*", c.k_head_dim, " = ", e, " < d = ", d,
                      " (GQA): V is not a function of K");
}

std::string XcacheMisfit(const ModelConfig& c) {
  if (std::string misfit = KeyRecoveryMisfit(c); !misfit.empty()) return misfit;
  const int64_t d = c.hidden_size, e = int64_t{c.num_kv_heads} * c.k_head_dim;
  if (d < 2 * e) return "";
  return absl::StrCat("not worth it: x has d = ", d, " elements, K and V together 2e = ", 2 * e);
}

const char* LatentLayoutName(LatentLayout l) {
  switch (l) {
    case LatentLayout::kNone: return "none";
    case LatentLayout::kDeepSeek: return "deepseek";
    case LatentLayout::kMha2Mla: return "mha2mla";
  }
  return "unknown";
}

}  // namespace slimkv::cache
