#include "cache/model/attention_weights.h"

#include <cstring>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace slimkv::cache {
namespace {

std::string ShapeString(const std::vector<int64_t>& shape) {
  return absl::StrCat("[", absl::StrJoin(shape, ", "), "]");
}

// Finds `name` and checks its shape. Absent tensors give NOT_FOUND unless `optional`, in which
// case the result is nullopt.
absl::StatusOr<std::optional<TensorView>> Locate(const SafetensorsDir& dir,
                                                 const std::string& name,
                                                 const std::vector<int64_t>& shape,
                                                 bool optional = false) {
  if (optional && !dir.Contains(name)) return std::optional<TensorView>();
  absl::StatusOr<TensorView> view = dir.Find(name);
  if (!view.ok()) return view.status();
  if (view->shape != shape) {
    return absl::InvalidArgumentError(absl::StrCat("tensor ", name, " has shape ",
                                                   ShapeString(view->shape), "; config.json implies ",
                                                   ShapeString(shape)));
  }
  return std::optional<TensorView>(*std::move(view));
}

// Rows [begin, begin + rows) of a 2-D view. The rows are contiguous, so this is a view too.
TensorView RowSlice(const TensorView& v, int64_t begin, int64_t rows) {
  const size_t row_bytes = static_cast<size_t>(v.shape[1]) * kernels::DTypeSize(v.dtype);
  TensorView s;
  s.name = absl::StrCat(v.name, "[", begin, ":", begin + rows, "]");
  s.dtype = v.dtype;
  s.shape = {rows, v.shape[1]};
  s.data = v.data + static_cast<size_t>(begin) * row_bytes;
  s.bytes = static_cast<size_t>(rows) * row_bytes;
  return s;
}

// Tensor names of one layer start with this prefix.
std::string LayerPrefix(const ModelConfig& c, uint32_t layer) {
  if (c.cross_attention) return absl::StrCat("decoder.block.", layer, ".layer.1.EncDecAttention.");
  return absl::StrCat("model.layers.", layer, ".self_attn.");
}

#define SLIMKV_ASSIGN_VIEW(field, expr)  \
  do {                                   \
    auto located_ = (expr);              \
    if (!located_.ok()) return located_.status(); \
    field = *std::move(located_);        \
  } while (0)

absl::Status LoadStandard(const SafetensorsDir& dir, const ModelConfig& c,
                          const std::string& prefix, LayerWeights& w) {
  const int64_t d = c.hidden_size;
  const int64_t e_k = int64_t{c.num_kv_heads} * c.k_head_dim;
  const int64_t e_v = int64_t{c.num_kv_heads} * c.v_head_dim;
  if (c.fused_qkv) {
    // phi3: rows are [q (h_q*d_h) | k (h_kv*d_h) | v (h_kv*d_h)].
    const int64_t q_rows = int64_t{c.num_q_heads} * c.k_head_dim;
    std::optional<TensorView> qkv;
    SLIMKV_ASSIGN_VIEW(qkv, Locate(dir, prefix + "qkv_proj.weight", {q_rows + e_k + e_v, d}));
    w.k = RowSlice(*qkv, q_rows, e_k);
    w.v = RowSlice(*qkv, q_rows + e_k, e_v);
    return absl::OkStatus();
  }
  const char* k_name = c.cross_attention ? "k" : "k_proj";
  const char* v_name = c.cross_attention ? "v" : "v_proj";
  SLIMKV_ASSIGN_VIEW(w.k, Locate(dir, absl::StrCat(prefix, k_name, ".weight"), {e_k, d}));
  SLIMKV_ASSIGN_VIEW(w.v, Locate(dir, absl::StrCat(prefix, v_name, ".weight"), {e_v, d}));
  if (c.kv_bias) {
    SLIMKV_ASSIGN_VIEW(w.k_bias, Locate(dir, absl::StrCat(prefix, k_name, ".bias"), {e_k}));
    SLIMKV_ASSIGN_VIEW(w.v_bias, Locate(dir, absl::StrCat(prefix, v_name, ".bias"), {e_v}));
  }
  return absl::OkStatus();
}

absl::Status LoadDeepSeek(const SafetensorsDir& dir, const ModelConfig& c,
                          const std::string& prefix, LayerWeights& w) {
  const MlaConfig& m = *c.mla;
  const int64_t a_rows = int64_t{m.kv_lora_rank} + m.qk_rope_head_dim;
  SLIMKV_ASSIGN_VIEW(w.kv_a,
                     Locate(dir, prefix + "kv_a_proj_with_mqa.weight", {a_rows, c.hidden_size}));
  if (m.kv_a_bias) {
    SLIMKV_ASSIGN_VIEW(w.kv_a_bias, Locate(dir, prefix + "kv_a_proj_with_mqa.bias", {a_rows}));
  }
  if (m.kv_a_layernorm) {
    SLIMKV_ASSIGN_VIEW(w.kv_a_norm,
                       Locate(dir, prefix + "kv_a_layernorm.weight", {m.kv_lora_rank}));
  }
  const int64_t b_rows = int64_t{c.num_q_heads} * (m.qk_nope_head_dim + m.v_head_dim);
  SLIMKV_ASSIGN_VIEW(w.kv_b, Locate(dir, prefix + "kv_b_proj.weight", {b_rows, m.kv_lora_rank}));
  return absl::OkStatus();
}

absl::Status LoadMha2Mla(const SafetensorsDir& dir, const ModelConfig& c,
                         const std::string& prefix, LayerWeights& w) {
  const MlaConfig& m = *c.mla;
  const int64_t h = c.num_kv_heads;
  const int64_t latent = h * m.kv_lora_rank;
  const int64_t rope_rows = h * m.qk_rope_head_dim;
  const int64_t nope_rows = h * m.qk_nope_head_dim;
  const int64_t v_rows = h * m.v_head_dim;
  SLIMKV_ASSIGN_VIEW(w.k_rope, Locate(dir, prefix + "k_r_proj.weight", {rope_rows, c.hidden_size}));
  SLIMKV_ASSIGN_VIEW(w.kv_down,
                     Locate(dir, prefix + "kv_proj.down_kv.weight", {latent, c.hidden_size}));
  SLIMKV_ASSIGN_VIEW(w.k_up, Locate(dir, prefix + "kv_proj.up_k.weight", {nope_rows, latent}));
  SLIMKV_ASSIGN_VIEW(w.v_up, Locate(dir, prefix + "kv_proj.up_v.weight", {v_rows, latent}));
  if (c.kv_bias) {
    SLIMKV_ASSIGN_VIEW(w.k_rope_bias, Locate(dir, prefix + "k_r_proj.bias", {rope_rows}));
    SLIMKV_ASSIGN_VIEW(w.k_up_bias, Locate(dir, prefix + "kv_proj.up_k.bias", {nope_rows}));
    SLIMKV_ASSIGN_VIEW(w.v_up_bias, Locate(dir, prefix + "kv_proj.up_v.bias", {v_rows}));
  }
  return absl::OkStatus();
}

#undef SLIMKV_ASSIGN_VIEW

double ElementToF64(const uint8_t* p, kernels::DType t) {
  if (t == kernels::DType::kF32) {
    float f;
    std::memcpy(&f, p, sizeof f);
    return f;
  }
  uint16_t h;
  std::memcpy(&h, p, sizeof h);
  return t == kernels::DType::kF16 ? kernels::HalfToFloat(h) : kernels::BF16ToFloat(h);
}

void AppendLE(std::string& out, uint64_t v, int bytes) {
  for (int i = 0; i < bytes; ++i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}

// The bytes hashed before a tensor's data (docs/model-fingerprint.md).
std::string TensorRecordHeader(const TensorView& v) {
  std::string out;
  AppendLE(out, v.name.size(), 4);
  out += v.name;
  AppendLE(out, static_cast<uint8_t>(v.dtype), 1);
  AppendLE(out, v.shape.size(), 4);
  for (int64_t d : v.shape) AppendLE(out, static_cast<uint64_t>(d), 8);
  AppendLE(out, v.bytes, 8);
  return out;
}

}  // namespace

std::vector<const TensorView*> LayerWeights::Used() const {
  std::vector<const TensorView*> out;
  for (const std::optional<TensorView>* f :
       {&k, &v, &k_bias, &v_bias, &kv_a, &kv_a_bias, &kv_a_norm, &kv_b, &k_rope, &k_rope_bias,
        &kv_down, &k_up, &k_up_bias, &v_up, &v_up_bias}) {
    if (f->has_value()) out.push_back(&**f);
  }
  return out;
}

absl::StatusOr<LayerWeights> LoadLayerWeights(const SafetensorsDir& weights,
                                              const ModelConfig& config, uint32_t layer) {
  if (layer >= config.num_layers) {
    return absl::InvalidArgumentError(
        absl::StrCat("layer ", layer, " is not below num_layers ", config.num_layers));
  }
  LayerWeights w;
  w.layer = layer;
  const std::string prefix = LayerPrefix(config, layer);
  absl::Status s;
  if (!config.mla) {
    s = LoadStandard(weights, config, prefix, w);
  } else if (config.mla->layout == LatentLayout::kDeepSeek) {
    s = LoadDeepSeek(weights, config, prefix, w);
  } else if (config.mla->layout == LatentLayout::kMha2Mla) {
    s = LoadMha2Mla(weights, config, prefix, w);
  } else {
    s = absl::InvalidArgumentError("MLA config without a latent layout");
  }
  if (!s.ok()) return s;
  return w;
}

std::vector<double> ViewToF64(const TensorView& view) {
  const size_t elem = kernels::DTypeSize(view.dtype);
  const size_t n = view.bytes / elem;
  std::vector<double> out(n);
  for (size_t i = 0; i < n; ++i) out[i] = ElementToF64(view.data + i * elem, view.dtype);
  return out;
}

absl::StatusOr<MatrixF64> WeightToMatrixF64(const TensorView& weight) {
  if (weight.shape.size() != 2) {
    return absl::InvalidArgumentError(absl::StrCat("tensor ", weight.name, " has shape ",
                                                   ShapeString(weight.shape), ", not a matrix"));
  }
  const int64_t out_dim = weight.shape[0];
  const int64_t in_dim = weight.shape[1];
  const size_t elem = kernels::DTypeSize(weight.dtype);
  MatrixF64 m;
  m.rows = in_dim;
  m.cols = out_dim;
  m.data.resize(static_cast<size_t>(in_dim * out_dim));
  for (int64_t o = 0; o < out_dim; ++o) {
    const uint8_t* row = weight.data + static_cast<size_t>(o * in_dim) * elem;
    for (int64_t i = 0; i < in_dim; ++i) {
      m.data[static_cast<size_t>(i * out_dim + o)] = ElementToF64(row + i * elem, weight.dtype);
    }
  }
  return m;
}

absl::StatusOr<Fingerprint> ModelFingerprint(const ModelConfig& config,
                                             const SafetensorsDir* weights) {
  Sha256Hasher sha;
  auto update = [&](const void* p, size_t n) { sha.Update(p, n); };
  std::string head = "slimkv-model-fingerprint-v1";
  head.push_back('\0');
  const std::string geometry = CanonicalGeometry(config);
  AppendLE(head, geometry.size(), 4);
  head += geometry;
  AppendLE(head, weights != nullptr ? 1 : 0, 1);
  update(head.data(), head.size());
  if (weights != nullptr) {
    for (uint32_t layer = 0; layer < config.num_layers; ++layer) {
      absl::StatusOr<LayerWeights> w = LoadLayerWeights(*weights, config, layer);
      if (!w.ok()) return w.status();
      const std::vector<const TensorView*> used = w->Used();
      std::string record;
      AppendLE(record, layer, 4);
      AppendLE(record, used.size(), 4);
      update(record.data(), record.size());
      for (const TensorView* v : used) {
        const std::string tensor_head = TensorRecordHeader(*v);
        update(tensor_head.data(), tensor_head.size());
        update(v->data, v->bytes);
      }
    }
    // Every other tensor shapes the KV too (embeddings, norms, earlier layers' MLPs change the
    // layer inputs x), so a revision that differs only there must not share page keys. Reading
    // whole checkpoints at registration is too slow (hundreds of GB), and a fine-tune rewrites
    // nearly every element of what it touches, so each tensor enters with its header and a
    // sample: kSampleBytes at every kSampleStride bytes, and its last kSampleBytes.
    constexpr size_t kSampleBytes = 64, kSampleStride = 64 << 10;
    for (const std::string& name : weights->Names()) {
      std::string record;
      AppendLE(record, name.size(), 4);
      record += name;
      absl::StatusOr<TensorView> v = weights->Find(name);
      AppendLE(record, v.ok() ? 1 : 0, 1);  // 0: not fp32/fp16/bf16; only its name enters
      if (v.ok()) record += TensorRecordHeader(*v);
      update(record.data(), record.size());
      if (!v.ok()) continue;
      for (size_t off = 0; off < v->bytes; off += kSampleStride) {
        update(v->data + off, std::min(kSampleBytes, v->bytes - off));
      }
      const size_t tail = std::min(kSampleBytes, v->bytes);
      update(v->data + v->bytes - tail, tail);
    }
  }
  Fingerprint out;
  if (!sha.Finish(&out)) return absl::InternalError("OpenSSL SHA-256 failed");
  return out;
}

}  // namespace slimkv::cache
