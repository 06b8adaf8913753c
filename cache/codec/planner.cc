#include "cache/codec/planner.h"

#include <algorithm>
#include <cmath>
#include <optional>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "cache/model/factor_store.h"
#include "cache/codec/page_codec.h"
#include "kernels/kv_projection.h"
#include "kernels/quant_format.h"

namespace slimkv::cache {
namespace {


constexpr double kInf = std::numeric_limits<double>::infinity();

// Bytes per token of one stored part under planner quantizer `q`: the page codec's own byte
// rule (StoredPartBytes) over a 32-token block, which is whole for every format (int4
// per-channel groups span 32 tokens).
double PartBytes(const StoredPart& p, PlanQuant q, kernels::DType store) {
  static_assert(static_cast<int>(Quant::kNone) == static_cast<int>(PlanQuant::kNone) + 1 &&
                static_cast<int>(Quant::kInt4) == static_cast<int>(PlanQuant::kInt4) + 1);
  constexpr uint64_t kBlock = kernels::kInt4GroupSize;
  const Quant quant = static_cast<Quant>(static_cast<int>(q) + 1);
  return static_cast<double>(StoredPartBytes(p, quant, store, kBlock)) / kBlock;
}

ModePlan Sized(std::vector<StoredPart> parts, kernels::DType store) {
  ModePlan m;
  for (const StoredPart& p : parts) m.elements += p.cols;
  for (int q = 0; q < kNumPlanQuants; ++q) {
    for (const StoredPart& p : parts) m.bytes[q] += PartBytes(p, static_cast<PlanQuant>(q), store);
  }
  m.bytes_4bit = m.elements / 2.0;
  return m;
}

ModePlan NotApplicable(ModePlan m, std::string reason) {
  m.applicable = false;
  m.reason = std::move(reason);
  return m;
}

absl::Status ValidateOptions(const PlanOptions& o) {
  if (!(o.tolerance > 0)) {
    return absl::InvalidArgumentError(absl::StrCat("tolerance must be > 0, got ", o.tolerance));
  }
  if (o.rank.fixed_rank < 0) {
    return absl::InvalidArgumentError(absl::StrCat("rank must be > 0, got ", o.rank.fixed_rank));
  }
  if (o.rank.fixed_rank > 0 && o.rank.energy != 0) {
    return absl::InvalidArgumentError("give a fixed rank or an energy fraction, not both");
  }
  if (o.rank.energy != 0 && !(o.rank.energy > 0 && o.rank.energy <= 1)) {
    return absl::InvalidArgumentError(
        absl::StrCat("energy must be in (0, 1], got ", o.rank.energy));
  }
  return absl::OkStatus();
}

bool RankPlanned(const PlanOptions& o) { return o.rank.fixed_rank > 0 || o.rank.energy > 0; }

// The sizes and applicability of every mode for one layer of `c` (the same for every layer
// except the projected rank, which the analysis may set later).
LayerPlan SizeLayer(const ModelConfig& c, const PlanOptions& o, uint32_t layer) {
  LayerPlan lp;
  lp.layer = layer;
  const kernels::DType st = o.store_dtype;
  const int64_t d = c.hidden_size, h_kv = c.num_kv_heads;
  const int64_t ek = h_kv * c.k_head_dim, ev = h_kv * c.v_head_dim, e = ek;
  const bool mla = c.mla.has_value();
  auto& modes = lp.modes;

  ModePlan& full = modes[static_cast<int>(PlanMode::kFull)];
  full = Sized({{ek, true, 0}, {ev, false, 0}}, st);
  full.applicable = true;

  ModePlan& slim = modes[static_cast<int>(PlanMode::kSlim)];
  slim = Sized({{e, true, 0}}, st);
  if (mla) {
    slim = NotApplicable(slim, "MLA model: K and V come from the latent; use latent");
  } else if (std::string misfit = SlimMisfit(c); !misfit.empty()) {
    slim = NotApplicable(slim, misfit);
  } else {
    slim.applicable = true;
  }

  ModePlan& xc = modes[static_cast<int>(PlanMode::kXcache)];
  xc = Sized({{d, false, 0}}, st);
  if (mla) {
    xc = NotApplicable(xc, "MLA model: the latent is smaller than x; use latent");
  } else if (std::string misfit = XcacheMisfit(c); !misfit.empty()) {
    xc = NotApplicable(xc, misfit);
  } else {
    xc.applicable = true;
  }

  ModePlan& lat = modes[static_cast<int>(PlanMode::kLatentNative)];
  if (mla && c.mla->layout == LatentLayout::kDeepSeek) {
    const int64_t dc = c.mla->kv_lora_rank, dr = c.mla->qk_rope_head_dim;
    lat = Sized({{dc + dr, false, dr}}, st);
    lat.applicable = true;
  } else if (mla) {  // MHA2MLA: per KV head r rope dims + d_kv latent
    lat = Sized({{h_kv * (c.mla->qk_rope_head_dim + c.mla->kv_lora_rank), false, 0}}, st);
    lat.applicable = true;
  } else {
    lat = NotApplicable(Sized({}, st),
                        "needs an MLA model (DeepSeek V2/V3, TransMLA or MHA2MLA conversion)");
  }

  ModePlan& proj = modes[static_cast<int>(PlanMode::kLatentProjected)];
  const int64_t max_rank = std::min(d, 2 * e);
  if (mla) {
    proj = NotApplicable(Sized({}, st), "MLA model: the native latent is exact; use latent");
  } else if (std::string misfit = KeyRecoveryMisfit(c); !misfit.empty()) {
    proj = NotApplicable(Sized({}, st), misfit);
  } else if (!RankPlanned(o)) {
    proj = NotApplicable(Sized({}, st), "give --rank R or --energy F to plan it");
  } else if (o.rank.fixed_rank > 0) {
    lp.projected_rank = static_cast<int>(std::min<int64_t>(o.rank.fixed_rank, max_rank));
    proj = Sized({{lp.projected_rank, false, 0}}, st);
    proj.applicable = true;
    proj.reason = "lossy: error measured per page";
  } else {
    proj = NotApplicable(Sized({}, st), "rank by energy needs the weights (*.safetensors)");
  }

  const PlanMode fallback = mla ? PlanMode::kLatentNative : PlanMode::kFull;
  lp.chosen = {fallback, fallback, fallback};
  return lp;
}

void FillRatios(LayerPlan* lp) {
  const double ref = lp->modes[static_cast<int>(PlanMode::kFull)].bytes[0];
  for (ModePlan& m : lp->modes) {
    for (int q = 0; q < kNumPlanQuants; ++q) m.ratio[q] = m.bytes[q] / ref;
  }
}

void FillTotals(ModelPlan* plan) {
  for (int m = 0; m < kNumPlanModes; ++m) {
    for (int q = 0; q < kNumPlanQuants; ++q) {
      double sum = 0;
      for (const LayerPlan& lp : plan->layers) {
        sum = lp.modes[m].applicable ? sum + lp.modes[m].bytes[q] : kNotKnown;
      }
      plan->total_bytes[m][q] = sum;
    }
  }
  for (size_t t = 0; t < kPlanDTypes.size(); ++t) {
    double sum = 0;
    for (const LayerPlan& lp : plan->layers) {
      sum += lp.modes[static_cast<int>(lp.chosen[t])].bytes[0];
    }
    plan->chosen_bytes[t] = sum;
  }
}

// Fills κ, errors, the projected rank and the chosen modes of a sized non-MLA layer from its
// conditioning.
absl::Status ApplyAnalysis(const ModelConfig& c, const PlanOptions& o,
                           const kernels::Conditioning& cond, LayerPlan* lp) {
  // PredictedRelError reads only the shape of the projection.
  kernels::KvProjection shape;
  shape.d = static_cast<int>(c.hidden_size);
  shape.h_kv = static_cast<int>(c.num_kv_heads);
  shape.d_h = static_cast<int>(c.k_head_dim);
  lp->analyzed = true;
  lp->kappa_k = cond.kappa_k;
  lp->kappa_v = cond.kappa_v;
  lp->kappa_kv = cond.kappa_kv;
  auto& modes = lp->modes;
  ModePlan& slim = modes[static_cast<int>(PlanMode::kSlim)];
  ModePlan& xc = modes[static_cast<int>(PlanMode::kXcache)];
  slim.kappa = cond.kappa_k;
  xc.kappa = cond.kappa_kv;
  for (size_t t = 0; t < kPlanDTypes.size(); ++t) {
    modes[static_cast<int>(PlanMode::kFull)].predicted_error[t] = 0;
    slim.predicted_error[t] =
        kernels::PredictedRelError(cond, shape, kernels::PredictedMode::kSlim, kPlanDTypes[t]);
    xc.predicted_error[t] = kernels::PredictedRelError(
        cond, shape, kernels::PredictedMode::kXcacheFromKv, kPlanDTypes[t]);
  }

  if (RankPlanned(o) && !cond.sigma_kv.empty()) {
    absl::StatusOr<int> r = kernels::SelectRank(cond.sigma_kv, o.rank);
    if (!r.ok()) return r.status();
    lp->projected_rank = *r;
    ModePlan& proj = modes[static_cast<int>(PlanMode::kLatentProjected)];
    proj = Sized({{*r, false, 0}}, o.store_dtype);
    proj.applicable = true;
    proj.reason = "lossy: error measured per page";
    const double norm = kernels::TailNorm(cond.sigma_kv, 0);
    const double rel = norm > 0 ? kernels::TailNorm(cond.sigma_kv, *r) / norm : 0.0;
    proj.predicted_error = {rel, rel, rel};
  }

  for (size_t t = 0; t < kPlanDTypes.size(); ++t) {
    PlanMode best = PlanMode::kFull;
    for (PlanMode m : {PlanMode::kSlim, PlanMode::kXcache}) {
      const ModePlan& mp = modes[static_cast<int>(m)];
      if (!mp.applicable || !(mp.predicted_error[t] <= o.tolerance)) continue;
      if (best == PlanMode::kFull || mp.elements < modes[static_cast<int>(best)].elements) best = m;
    }
    lp->chosen[t] = best;
  }
  return absl::OkStatus();
}

std::vector<float> ToFloat(const MatrixF64& m) {
  return std::vector<float>(m.data.begin(), m.data.end());
}

// κ and the joint spectrum of one layer, from `store` or computed from the checkpoint.
absl::StatusOr<kernels::Conditioning> AnalyzeLayer(const ModelConfig& c,
                                                   const SafetensorsDir& weights, uint32_t layer,
                                                   const FactorStore* store,
                                                   const Fingerprint& fp, bool* from_cache) {
  absl::StatusOr<LayerWeights> lw = LoadLayerWeights(weights, c, layer);
  if (!lw.ok()) return lw.status();
  if (!lw->k || !lw->v) {
    return absl::InvalidArgumentError(absl::StrCat("layer ", layer, ": no K/V projection"));
  }
  absl::StatusOr<MatrixF64> wk = WeightToMatrixF64(*lw->k);
  if (!wk.ok()) return wk.status();
  absl::StatusOr<MatrixF64> wv = WeightToMatrixF64(*lw->v);
  if (!wv.ok()) return wv.status();
  const std::vector<float> k = ToFloat(*wk), v = ToFloat(*wv);
  kernels::KvProjection p;
  p.d = static_cast<int>(c.hidden_size);
  p.h_kv = static_cast<int>(c.num_kv_heads);
  p.d_h = static_cast<int>(c.k_head_dim);
  p.w_k = k.data();
  p.w_v = v.data();
  return CachedConditioning(store, fp, layer, p, from_cache);
}

}  // namespace

const char* PlanModeName(PlanMode m) {
  switch (m) {
    case PlanMode::kFull: return "full";
    case PlanMode::kSlim: return "slim";
    case PlanMode::kXcache: return "xcache";
    case PlanMode::kLatentNative: return "latent";
    case PlanMode::kLatentProjected: return "projected";
  }
  return "?";
}

const char* PlanQuantName(PlanQuant q) {
  switch (q) {
    case PlanQuant::kNone: return "none";
    case PlanQuant::kFp8: return "fp8";
    case PlanQuant::kInt8: return "int8";
    case PlanQuant::kInt4: return "int4";
  }
  return "?";
}

absl::StatusOr<ModelPlan> PlanFromConfig(const ModelConfig& config, const PlanOptions& options) {
  if (absl::Status s = ValidateOptions(options); !s.ok()) return s;
  ModelPlan plan;
  plan.config = config;
  plan.options = options;
  plan.layers.reserve(config.num_layers);
  for (uint32_t l = 0; l < config.num_layers; ++l) {
    plan.layers.push_back(SizeLayer(config, options, l));
    FillRatios(&plan.layers.back());
  }
  FillTotals(&plan);
  return plan;
}

absl::StatusOr<ModelPlan> PlanWithWeights(const ModelConfig& config,
                                          const SafetensorsDir& weights,
                                          const PlanOptions& options,
                                          const std::string& factor_dir,
                                          const PlanProgress& progress) {
  absl::StatusOr<ModelPlan> plan = PlanFromConfig(config, options);
  if (!plan.ok()) return plan.status();
  plan->has_weights = true;
  const uint32_t n = config.num_layers;
  auto report = [&](absl::string_view what, uint32_t done) {
    if (progress) progress(what, done, n);
  };
  if (config.mla.has_value()) {
    // The native latent is exact and stored as sent: there is nothing to factorize. Still
    // check that the checkpoint matches the config.
    for (uint32_t l = 0; l < n; ++l) {
      report(absl::StrCat("layer ", l, ": checking MLA weights"), l);
      if (absl::StatusOr<LayerWeights> lw = LoadLayerWeights(weights, config, l); !lw.ok()) {
        return lw.status();
      }
      for (double& e : plan->layers[l].modes[static_cast<int>(PlanMode::kLatentNative)]
                           .predicted_error) {
        e = 0;
      }
    }
    report("done", n);
    FillTotals(&*plan);
    return plan;
  }

  std::optional<FactorStore> store;
  Fingerprint fp{};
  if (!factor_dir.empty()) {
    report("fingerprinting the checkpoint", 0);
    absl::StatusOr<Fingerprint> f = ModelFingerprint(config, &weights);
    if (!f.ok()) return f.status();
    fp = *f;
    store.emplace(factor_dir);
  }
  for (uint32_t l = 0; l < n; ++l) {
    LayerPlan& lp = plan->layers[l];
    report(absl::StrFormat("layer %u/%u: conditioning (d=%u, 2e=%u)", l + 1, n,
                           config.hidden_size, 2 * config.num_kv_heads * config.k_head_dim),
           l);
    bool cached = false;
    absl::StatusOr<kernels::Conditioning> cond =
        AnalyzeLayer(config, weights, l, store ? &*store : nullptr, fp, &cached);
    if (!cond.ok()) return cond.status();
    lp.from_cache = cached;
    if (absl::Status s = ApplyAnalysis(config, options, *cond, &lp); !s.ok()) return s;
    FillRatios(&lp);
  }
  report("done", n);
  FillTotals(&*plan);
  return plan;
}

}  // namespace slimkv::cache
