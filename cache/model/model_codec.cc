#include "cache/model/model_codec.h"

#include <cmath>
#include <limits>
#include <mutex>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/strings/str_cat.h"

namespace slimkv::cache {
namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();

std::vector<float> ToFloat(const std::vector<double>& v) {
  return std::vector<float>(v.begin(), v.end());
}
std::vector<double> ToDouble(const std::vector<float>& v) {
  return std::vector<double>(v.begin(), v.end());
}

absl::StatusOr<std::vector<float>> WeightF32(const TensorView& view) {
  absl::StatusOr<MatrixF64> m = WeightToMatrixF64(view);
  if (!m.ok()) return m.status();
  return ToFloat(m->data);
}

// W_K and W_V of layer `l` as float32 [d, e] (the checkpoint's dtype converted).
absl::Status ReadKvProjection(const LayerWeights& lw, uint32_t l, std::vector<float>* w_k,
                              std::vector<float>* w_v) {
  if (!lw.k || !lw.v) {
    return absl::InvalidArgumentError(absl::StrCat("layer ", l, ": no K/V projection"));
  }
  absl::StatusOr<std::vector<float>> wk = WeightF32(*lw.k);
  if (!wk.ok()) return wk.status();
  absl::StatusOr<std::vector<float>> wv = WeightF32(*lw.v);
  if (!wv.ok()) return wv.status();
  *w_k = *std::move(wk);
  *w_v = *std::move(wv);
  return absl::OkStatus();
}

// The matrices derived from W_K, W_V that a mode reads, computed in float64 and kept in
// float32 (stored in the FactorStore widened back to float64, as they always were).
enum class Derived { kWkv, kPinv, kBasis };

std::string EntryName(Derived which, int rank) {
  switch (which) {
    case Derived::kWkv: return "w_kv";
    case Derived::kPinv: return "pinv";
    case Derived::kBasis: return absl::StrCat("basis-r", rank);
  }
  return "";
}

size_t EntryCount(Derived which, const kernels::KvProjection& p, int rank) {
  const size_t e = static_cast<size_t>(p.e()), d = static_cast<size_t>(p.d);
  switch (which) {
    case Derived::kWkv: return e * e;
    case Derived::kPinv: return 2 * e * d;
    case Derived::kBasis: return 2 * e * static_cast<size_t>(rank);
  }
  return 0;
}

// `svd` carries the joint SVD from pinv to the basis when both are computed in one go.
absl::StatusOr<std::vector<float>> ComputeDerived(Derived which, const kernels::KvProjection& p,
                                                  int rank, std::optional<kernels::JointSvd>* svd) {
  if (which == Derived::kWkv) return kernels::ComputeSlimMatrix(p);
  if (!*svd) {
    absl::StatusOr<kernels::JointSvd> s = kernels::ComputeJointSvd(p);
    if (!s.ok()) return s.status();
    *svd = *std::move(s);
  }
  if (which == Derived::kPinv) return kernels::JointPinv(**svd);
  return kernels::JointBasis(**svd, rank);
}

}  // namespace

std::optional<kernels::RopeParams> RopeParamsOf(const ModelConfig& c) {
  if (c.mla.has_value() || c.rope.rotary_dim == 0) return std::nullopt;
  kernels::RopeParams p;
  p.theta = c.rope.theta;
  p.head_dim = static_cast<int>(c.k_head_dim);
  p.rotary_dim = static_cast<int>(c.rope.rotary_dim);
  p.pairing = c.rope.pairing;
  const RopeScaling& s = c.rope.scaling;
  p.scaling.type = s.type;
  p.scaling.factor = s.factor;
  p.scaling.original_max_position_embeddings =
      s.original_max_position_embeddings != 0 ? s.original_max_position_embeddings
                                              : c.rope.max_position_embeddings;
  p.scaling.beta_fast = s.beta_fast;
  p.scaling.beta_slow = s.beta_slow;
  p.scaling.mscale = s.mscale;
  p.scaling.mscale_all_dim = s.mscale_all_dim;
  p.scaling.attention_factor = s.attention_factor;
  p.scaling.truncate = s.truncate;
  p.scaling.low_freq_factor = s.low_freq_factor;
  p.scaling.high_freq_factor = s.high_freq_factor;
  return p;
}

// Everything one layer's codecs read; `kv` and `latent` view the vectors beside them.
struct ModelCodec::Layer {
  // Constant after Build.
  std::vector<float> b_k, b_v;            // [e], [e]
  std::vector<float> w_uk, w_uv;          // MLA: [d_c, heads·d_nope], [d_c, heads·d_v]
  bool has_w_kv = false;                  // false when slim cannot apply: no_slim says why
  bool has_pinv = false;                  // false when x is not recoverable: no_pinv says why
  std::string no_slim, no_pinv, no_latent;
  kernels::Conditioning cond;
  double projected_error = kInf;  // ‖A − A·B·Bᵀ‖_F / ‖A‖_F
  kernels::KvCodecLayer kv;       // W and derived-matrix pointers null: kv() fills a copy
  kernels::LatentLayout latent;

  // W_K, W_V and the derived matrices: empty until the first kv() that needs them (or Build,
  // for derived matrices without a FactorStore) fills them; never changed after that, so views
  // may point into them without the lock.
  std::mutex mu;
  std::vector<float> w_k ABSL_GUARDED_BY(mu);    // [d, e]
  std::vector<float> w_v ABSL_GUARDED_BY(mu);    // [d, e]
  std::vector<float> w_kv ABSL_GUARDED_BY(mu);   // [e, e]
  std::vector<float> pinv ABSL_GUARDED_BY(mu);   // [2e, d]
  std::vector<float> basis ABSL_GUARDED_BY(mu);  // [2e, R]

  std::vector<float>& Slot(Derived which) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    return which == Derived::kWkv ? w_kv : which == Derived::kPinv ? pinv : basis;
  }
};

ModelCodec::ModelCodec(const ModelConfig& config) : config_(config) {}
ModelCodec::~ModelCodec() = default;

std::unique_ptr<const ModelCodec> ModelCodec::WithoutWeights(const ModelConfig& config) {
  return std::unique_ptr<const ModelCodec>(new ModelCodec(config));
}

absl::StatusOr<std::unique_ptr<const ModelCodec>> ModelCodec::Build(
    const ModelConfig& config, std::shared_ptr<const SafetensorsDir> weights,
    const Fingerprint& fingerprint, const FactorStore* store, const CodecOptions& options,
    const std::atomic<bool>* cancel) {
  if (weights == nullptr) return absl::InvalidArgumentError("model codec: no weights");
  std::unique_ptr<ModelCodec> codec(new ModelCodec(config));
  codec->weights_ = std::move(weights);
  if (store != nullptr) codec->store_.emplace(*store);
  codec->fingerprint_ = fingerprint;
  if (std::optional<kernels::RopeParams> p = RopeParamsOf(config)) {
    absl::StatusOr<kernels::RopeTable> table = kernels::RopeTable::Create(*p);
    if (!table.ok()) return table.status();
    codec->rope_.emplace(*std::move(table));
  }
  for (uint32_t l = 0; l < config.num_layers; ++l) {
    if (cancel != nullptr && cancel->load()) {
      return absl::CancelledError("model codec: the daemon is shutting down");
    }
    if (absl::Status s = codec->BuildLayer(fingerprint, store, options, l); !s.ok()) {
      return s;
    }
  }
  codec->has_weights_ = true;
  return std::unique_ptr<const ModelCodec>(std::move(codec));
}

absl::Status ModelCodec::BuildLayer(const Fingerprint& fp, const FactorStore* store,
                                    const CodecOptions& options, uint32_t l) {
  auto layer = std::make_unique<Layer>();
  absl::StatusOr<LayerWeights> lw = LoadLayerWeights(*weights_, config_, l);
  if (!lw.ok()) return lw.status();
  const int d = static_cast<int>(config_.hidden_size);
  const int h_kv = static_cast<int>(config_.num_kv_heads);

  if (config_.mla.has_value()) {
    const MlaConfig& m = *config_.mla;
    kernels::LatentLayout& lat = layer->latent;
    const bool deepseek = m.layout == LatentLayout::kDeepSeek;
    lat.heads = deepseek ? static_cast<int>(config_.num_q_heads) : h_kv;
    lat.d_c = static_cast<int>(deepseek ? m.kv_lora_rank : h_kv * m.kv_lora_rank);
    lat.k_head_dim = static_cast<int>(config_.k_head_dim);
    lat.v_head_dim = static_cast<int>(config_.v_head_dim);
    lat.rope_dim = static_cast<int>(m.qk_rope_head_dim);
    lat.shared_rope = deepseek;
    const int nope = lat.d_nope(), dv = lat.v_head_dim, dc = lat.d_c;
    layer->w_uk.resize(size_t{1} * dc * lat.heads * nope);
    layer->w_uv.resize(size_t{1} * dc * lat.heads * dv);
    if (deepseek) {
      // kv_b [heads·(nope + dv), d_c]: per head, nope rows of W_UK,hᵀ then dv rows of W_UV,hᵀ.
      const std::vector<double> b = ViewToF64(*lw->kv_b);
      for (int h = 0; h < lat.heads; ++h) {
        for (int c = 0; c < dc; ++c) {
          for (int i = 0; i < nope; ++i) {
            layer->w_uk[size_t{1} * c * lat.heads * nope + h * nope + i] =
                static_cast<float>(b[(size_t{1} * h * (nope + dv) + i) * dc + c]);
          }
          for (int j = 0; j < dv; ++j) {
            layer->w_uv[size_t{1} * c * lat.heads * dv + h * dv + j] =
                static_cast<float>(b[(size_t{1} * h * (nope + dv) + nope + j) * dc + c]);
          }
        }
      }
    } else if (lw->k_up_bias || lw->v_up_bias) {
      layer->no_latent = "MHA2MLA checkpoint with up-projection biases: not supported";
    } else {
      absl::StatusOr<std::vector<float>> uk = WeightF32(*lw->k_up);  // [d_c, h·nope]
      if (!uk.ok()) return uk.status();
      absl::StatusOr<std::vector<float>> uv = WeightF32(*lw->v_up);  // [d_c, h·dv]
      if (!uv.ok()) return uv.status();
      layer->w_uk = *std::move(uk);
      layer->w_uv = *std::move(uv);
    }
    lat.w_uk = layer->w_uk.data();
    lat.w_uv = layer->w_uv.data();
    if (absl::Status s = kernels::ValidateLatentLayout(lat); !s.ok()) return s;
    layers_.push_back(std::move(layer));
    return absl::OkStatus();
  }

  // W_K, W_V for the factorizations below, dropped with this frame (kv() reads them again).
  std::vector<float> wk, wv;
  if (absl::Status s = ReadKvProjection(*lw, l, &wk, &wv); !s.ok()) return s;
  if (lw->k_bias) layer->b_k = ToFloat(ViewToF64(*lw->k_bias));
  if (lw->v_bias) layer->b_v = ToFloat(ViewToF64(*lw->v_bias));

  kernels::KvCodecLayer& kv = layer->kv;
  kv.proj.d = d;
  kv.proj.h_kv = h_kv;
  kv.proj.d_h = static_cast<int>(config_.k_head_dim);
  kv.proj.b_k = layer->b_k.empty() ? nullptr : layer->b_k.data();
  kv.proj.b_v = layer->b_v.empty() ? nullptr : layer->b_v.data();
  kv.rope = rope_ ? &*rope_ : nullptr;
  const int e = kv.proj.e();
  kernels::KvProjection proj = kv.proj;  // with the weights, for this frame
  proj.w_k = wk.data();
  proj.w_v = wv.data();

  // Computing κ also yields the joint SVD (one eigensolve): kept for pinv and the basis below.
  kernels::JointSvd joint;
  absl::StatusOr<kernels::Conditioning> cond =
      CachedConditioning(store, fp, l, proj, nullptr, &joint);
  if (!cond.ok()) return cond.status();
  layer->cond = *std::move(cond);
  std::optional<kernels::JointSvd> svd;
  if (!joint.sigma.empty()) svd = std::move(joint);

  absl::StatusOr<int> rank = kernels::SelectRank(layer->cond.sigma_kv, options.latent_rank);
  if (!rank.ok()) return rank.status();
  kv.rank = *rank;
  const double norm = kernels::TailNorm(layer->cond.sigma_kv, 0);
  layer->projected_error = norm > 0 ? kernels::TailNorm(layer->cond.sigma_kv, *rank) / norm : 0;

  // Each derived matrix is computed now unless the store holds it already (one SVD serves
  // pinv and the basis), then dropped once the store has it: kv() reads it back on first use.
  // The SVD is released with this frame.
  // Returns whether the matrix exists; FAILED_PRECONDITION from LAPACK (singular W_K, x not
  // recoverable) is an answer, put in `why_not`.
  auto prepare = [&](Derived which, std::string* why_not) -> absl::StatusOr<bool> {
    const std::string name = EntryName(which, *rank);
    if (store_ && store_->Holds(fp, l, name, EntryCount(which, proj, *rank))) return true;
    absl::StatusOr<std::vector<float>> m = ComputeDerived(which, proj, *rank, &svd);
    if (!m.ok()) {
      if (!absl::IsFailedPrecondition(m.status())) return m.status();
      *why_not = std::string(m.status().message());
      return false;
    }
    if (store_ && store_->Put(fp, l, name, ToDouble(*m)).ok()) return true;
    std::lock_guard<std::mutex> lock(layer->mu);
    layer->Slot(which) = *std::move(m);  // no store, or it would not take it: keep it
    return true;
  };
  if (e >= d) {
    absl::StatusOr<bool> has = prepare(Derived::kWkv, &layer->no_slim);
    if (!has.ok()) return has.status();
    layer->has_w_kv = *has;
  } else {
    layer->no_slim = "e < d";
  }
  if (d < 2 * e) {
    absl::StatusOr<bool> has = prepare(Derived::kPinv, &layer->no_pinv);
    if (!has.ok()) return has.status();
    layer->has_pinv = *has;
  } else {
    layer->no_pinv = "d >= 2e";
  }
  std::string no_basis;
  absl::StatusOr<bool> has_basis = prepare(Derived::kBasis, &no_basis);
  if (!has_basis.ok()) return has_basis.status();
  if (!*has_basis) return absl::FailedPreconditionError(absl::StrCat("layer ", l, ": ", no_basis));
  layers_.push_back(std::move(layer));
  return absl::OkStatus();
}

absl::Status ModelCodec::Supports(Mode m, PageInput input) const {
  const bool mla = is_mla();
  if (input == PageInput::kLatent && !mla) {
    return absl::FailedPreconditionError(
        "input: the latent is sent only for MLA models; send K and V (or x)");
  }
  if (input == PageInput::kX && mla) {
    return absl::FailedPreconditionError("input: MLA models send their latent, not x");
  }
  const bool needs_weights = m != Mode::kFull || input != PageInput::kKv;
  if (needs_weights && !has_weights_) {
    return absl::FailedPreconditionError(absl::StrCat(
        "mode ", ModeName(m), " from ", input == PageInput::kKv ? "K,V" : "this input",
        " needs the model's weights; it was registered from config.json alone"));
  }
  switch (m) {
    case Mode::kFull:
      return absl::OkStatus();
    case Mode::kSlim:
      if (mla) return absl::FailedPreconditionError("slim: MLA model; use latent");
      if (std::string misfit = SlimMisfit(config_); !misfit.empty()) {
        return absl::FailedPreconditionError(misfit);
      }
      return absl::OkStatus();
    case Mode::kXcache:
      if (mla) return absl::FailedPreconditionError("xcache: MLA model; use latent");
      if (std::string misfit = XcacheMisfit(config_); !misfit.empty()) {
        return absl::FailedPreconditionError(absl::StrCat("xcache: ", misfit));
      }
      return absl::OkStatus();
    case Mode::kLatent:
      if (mla && input == PageInput::kKv) {
        return absl::FailedPreconditionError(
            "latent: the latent cannot be recovered from K and V; send the latent (input LATENT)");
      }
      if (mla && !layers_.empty() && !layers_[0]->no_latent.empty()) {
        return absl::FailedPreconditionError(absl::StrCat("latent: ", layers_[0]->no_latent));
      }
      if (std::string misfit = KeyRecoveryMisfit(config_); !misfit.empty()) {
        return absl::FailedPreconditionError(absl::StrCat("latent: ", misfit));
      }
      return absl::OkStatus();
  }
  return absl::InvalidArgumentError("mode: unknown");
}

absl::Status ModelCodec::LayerSupports(uint32_t l, Mode m, PageInput input) const {
  if (m == Mode::kFull) return absl::OkStatus();
  if (l >= layers_.size()) {
    return absl::FailedPreconditionError(absl::StrCat(ModeName(m), ": no weights"));
  }
  const Layer& layer = *layers_[l];
  if (m == Mode::kSlim && !layer.has_w_kv) {
    return absl::FailedPreconditionError(absl::StrCat("slim: layer ", l, ": ", layer.no_slim));
  }
  if (m == Mode::kXcache && input == PageInput::kKv && !layer.has_pinv) {
    return absl::FailedPreconditionError(
        absl::StrCat("xcache from K,V: layer ", l, ": x is not recoverable: ", layer.no_pinv));
  }
  return absl::OkStatus();
}

double ModelCodec::PredictedError(uint32_t l, Mode m, PageInput input, kernels::DType t) const {
  if (m == Mode::kFull) return 0;
  if (!has_weights_) return kInf;
  const Layer& layer = *layers_[l];
  switch (m) {
    case Mode::kSlim:
      return kernels::PredictedRelError(layer.cond, layer.kv.proj, kernels::PredictedMode::kSlim,
                                        t);
    case Mode::kXcache:
      return kernels::PredictedRelError(layer.cond, layer.kv.proj,
                                        input == PageInput::kX
                                            ? kernels::PredictedMode::kXcacheGivenX
                                            : kernels::PredictedMode::kXcacheFromKv,
                                        t);
    case Mode::kLatent:
      return is_mla() ? 0 : layer.projected_error;
    default:
      return kInf;
  }
}

int64_t ModelCodec::StoredCols(uint32_t l, Mode m) const {
  const int64_t h = config_.num_kv_heads;
  switch (m) {
    case Mode::kFull: return h * (config_.k_head_dim + config_.v_head_dim);
    case Mode::kSlim: return h * config_.k_head_dim;
    case Mode::kXcache: return config_.hidden_size;
    case Mode::kLatent:
      return is_mla() ? InputCols(PageInput::kLatent, Role::kK)
                      : kernels::ProjectedStoredElems(layers_[l]->kv);
  }
  return 0;
}

int64_t ModelCodec::InputCols(PageInput input, Role role) const {
  const int64_t h = config_.num_kv_heads;
  switch (input) {
    case PageInput::kKv:
      return h * (role == Role::kK ? config_.k_head_dim : config_.v_head_dim);
    case PageInput::kX:
      return config_.hidden_size;
    case PageInput::kLatent: {
      if (!is_mla()) return 0;
      const MlaConfig& m = *config_.mla;
      return m.layout == LatentLayout::kDeepSeek
                 ? int64_t{m.kv_lora_rank} + m.qk_rope_head_dim
                 : h * (int64_t{m.kv_lora_rank} + m.qk_rope_head_dim);
    }
  }
  return 0;
}

absl::Status ModelCodec::LoadProjection(uint32_t l, Layer& layer) const {
  if (!layer.w_k.empty()) return absl::OkStatus();
  absl::StatusOr<LayerWeights> lw = LoadLayerWeights(*weights_, config_, l);
  if (!lw.ok()) return lw.status();
  return ReadKvProjection(*lw, l, &layer.w_k, &layer.w_v);
}

absl::StatusOr<kernels::KvCodecLayer> ModelCodec::kv(uint32_t l, kernels::CodecMode m) const {
  Layer& layer = *layers_[l];
  kernels::KvCodecLayer view = layer.kv;
  std::lock_guard<std::mutex> lock(layer.mu);
  auto with_projection = [&]() -> absl::Status {
    if (absl::Status s = LoadProjection(l, layer); !s.ok()) return s;
    view.proj.w_k = layer.w_k.data();
    view.proj.w_v = layer.w_v.data();
    return absl::OkStatus();
  };
  Derived which;
  switch (m) {
    case kernels::CodecMode::kSlim:
      if (!layer.has_w_kv) {
        return absl::FailedPreconditionError(absl::StrCat("slim: layer ", l, ": ", layer.no_slim));
      }
      which = Derived::kWkv;
      break;
    case kernels::CodecMode::kXcacheFromKv:
      if (!layer.has_pinv) {
        return absl::FailedPreconditionError(
            absl::StrCat("xcache from K,V: layer ", l, ": ", layer.no_pinv));
      }
      which = Derived::kPinv;
      break;
    case kernels::CodecMode::kProjected:
      which = Derived::kBasis;
      break;
    case kernels::CodecMode::kXcacheGivenX:
      if (absl::Status s = with_projection(); !s.ok()) {
        return absl::InternalError(absl::StrCat("layer ", l, ": W_K, W_V: ", s.message()));
      }
      return view;
    default:
      return view;  // full reads no matrix
  }
  std::vector<float>& slot = layer.Slot(which);
  if (slot.empty()) {
    std::optional<kernels::JointSvd> svd;
    absl::StatusOr<std::vector<double>> v = GetOrCompute(
        store_ ? &*store_ : nullptr, fingerprint_, l, EntryName(which, view.rank),
        EntryCount(which, view.proj, view.rank), [&]() -> absl::StatusOr<std::vector<double>> {
          if (absl::Status s = with_projection(); !s.ok()) return s;
          absl::StatusOr<std::vector<float>> m = ComputeDerived(which, view.proj, view.rank, &svd);
          if (!m.ok()) return m.status();
          return ToDouble(*m);
        });
    if (!v.ok()) {
      return absl::InternalError(absl::StrCat("layer ", l, ": ", EntryName(which, view.rank),
                                              ": ", v.status().message()));
    }
    slot = ToFloat(*v);
  }
  switch (which) {
    case Derived::kWkv: view.w_kv = slot.data(); break;
    case Derived::kPinv: view.pinv = slot.data(); break;
    case Derived::kBasis: view.basis = slot.data(); break;
  }
  return view;
}

uint64_t ModelCodec::ResidentMatrixBytes() const {
  uint64_t bytes = 0;
  for (const std::unique_ptr<Layer>& layer : layers_) {
    std::lock_guard<std::mutex> lock(layer->mu);
    bytes += 4 * (layer->w_k.size() + layer->w_v.size() + layer->w_kv.size() +
                  layer->pinv.size() + layer->basis.size());
  }
  return bytes;
}
const kernels::LatentLayout& ModelCodec::latent(uint32_t l) const { return layers_[l]->latent; }

}  // namespace slimkv::cache
