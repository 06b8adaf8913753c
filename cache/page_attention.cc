#include "cache/page_attention.h"

#include <algorithm>
#include <limits>
#include <vector>

#include "absl/strings/str_cat.h"
#include "cache/page_codec.h"

namespace slimkv::cache {
namespace {

// One kernel call on pages that share the layer's stored mode.
absl::Status AttendRun(const ModelCodec& codec, uint32_t layer, Mode mode,
                       std::span<const kernels::StoredPage> run, const float* q,
                       const kernels::AttentionParams& p, kernels::AttentionOut out) {
  const ModelConfig& c = codec.config();
  absl::Status s;
  switch (mode) {
    case Mode::kFull:
      s = kernels::AttendFull({static_cast<int>(c.num_kv_heads), static_cast<int>(c.k_head_dim),
                               static_cast<int>(c.v_head_dim)},
                              run, q, p, out);
      break;
    case Mode::kSlim: {
      absl::StatusOr<kernels::KvCodecLayer> kv = codec.kv(layer, kernels::CodecMode::kSlim);
      s = kv.ok() ? kernels::AttendSlim(*kv, run, q, p, out) : kv.status();
      break;
    }
    case Mode::kXcache: {
      absl::StatusOr<kernels::KvCodecLayer> kv = codec.kv(layer, kernels::CodecMode::kXcacheGivenX);
      s = kv.ok() ? kernels::AttendXcache(*kv, run, q, p, out) : kv.status();
      break;
    }
    case Mode::kLatent:
      if (codec.is_mla()) {
        s = kernels::AttendLatent(codec.latent(layer), run, q, p, out);
      } else {
        absl::StatusOr<kernels::KvCodecLayer> kv = codec.kv(layer, kernels::CodecMode::kProjected);
        s = kv.ok() ? kernels::AttendProjected(*kv, run, q, p, out) : kv.status();
      }
      break;
  }
  if (s.ok()) return s;
  return absl::InternalError(absl::StrCat("attend layer ", layer, " (", ModeName(mode),
                                          "): ", s.message()));
}

}  // namespace

kernels::AttentionParams AttentionParamsOf(const ModelConfig& config) {
  return {.h_q = static_cast<int>(config.num_q_heads),
          .scale = config.softmax_scale,
          .softcap = config.attn_logit_softcapping};
}

absl::Status AttendLayer(const ModelCodec& codec,
                         std::span<const std::shared_ptr<const Page>> pages, uint32_t layer,
                         const float* q, kernels::AttentionOut out, AttendCalls* calls) {
  const ModelConfig& c = codec.config();
  if (layer >= c.num_layers) {
    return absl::InvalidArgumentError(
        absl::StrCat("layer: ", layer, " but the model has ", c.num_layers, " layers"));
  }
  std::vector<StoredLayerValues> stored;
  stored.reserve(pages.size());
  for (const std::shared_ptr<const Page>& page : pages) {
    absl::StatusOr<StoredLayerValues> v = ReadStoredLayer(codec, *page, layer);
    if (!v.ok()) return v.status();
    stored.push_back(*std::move(v));
  }
  const kernels::AttentionParams p = AttentionParamsOf(c);
  const size_t no = size_t{c.num_q_heads} * c.v_head_dim;
  std::vector<float> o(no, 0.0f), lse(c.num_q_heads, -std::numeric_limits<float>::infinity());
  std::vector<float> run_o(no), run_lse(c.num_q_heads);
  std::vector<kernels::StoredPage> run;
  AttendCalls made;
  for (size_t begin = 0; begin < pages.size();) {
    const Mode mode = stored[begin].mode;
    run.clear();
    size_t end = begin;
    for (; end < pages.size() && stored[end].mode == mode; ++end) {
      const uint32_t tokens = pages[end]->geometry.page_tokens;
      run.push_back({stored[end].values, tokens, static_cast<int32_t>(end * tokens)});
    }
    if (absl::Status s = AttendRun(codec, layer, mode, run, q, p, {run_o.data(), run_lse.data()});
        !s.ok()) {
      return s;
    }
    ++made.by_mode[static_cast<size_t>(mode)];
    kernels::MergeAttention(p.h_q, static_cast<int>(c.v_head_dim), o.data(), lse.data(),
                            run_o.data(), run_lse.data(), o.data(), lse.data());
    begin = end;
  }
  std::copy(o.begin(), o.end(), out.o);
  std::copy(lse.begin(), lse.end(), out.lse);
  if (calls != nullptr) {
    for (size_t m = 0; m < made.by_mode.size(); ++m) calls->by_mode[m] += made.by_mode[m];
  }
  return absl::OkStatus();
}

}  // namespace slimkv::cache
