#include "cache/codec/page_attention.h"

#include <algorithm>
#include <limits>
#include <optional>
#include <vector>

#include "absl/strings/str_cat.h"
#include "cache/codec/page_codec.h"
#include "kernels/gpu.h"

namespace slimkv::cache {
namespace {

namespace gpu = kernels::gpu;

// One kernel call on pages that share the layer's stored mode.
absl::Status AttendRunOnCpu(const ModelCodec& codec, uint32_t layer, Mode mode,
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

// Attends one run on the GPU into `out`: kNone when it did, else why not (then `out` holds
// nothing meaningful, and *why the failed call's status when a call failed). Pages are
// run_pages, which start at index `first` of the prefix.
GpuFallback AttendRunOnGpu(const ModelCodec& codec, GpuTier* tier, uint32_t layer, Mode mode,
                           std::span<const std::shared_ptr<const Page>> run_pages, size_t first,
                           const float* q, const kernels::AttentionParams& p,
                           kernels::AttentionOut out, absl::Status* why) {
  if (const GpuFallback closed = GpuPathClosed(tier); closed != GpuFallback::kNone) return closed;
  const ModelConfig& c = codec.config();
  const kernels::KvHeads heads{static_cast<int>(c.num_kv_heads), static_cast<int>(c.k_head_dim),
                               static_cast<int>(c.v_head_dim)};
  // The layer's codec view, for the modes that read matrices.
  std::optional<kernels::KvCodecLayer> kv;
  absl::Status supported;
  switch (mode) {
    case Mode::kFull:
      supported = gpu::SupportsAttendFull(heads, p.h_q);
      break;
    case Mode::kSlim:
      if (!codec.has_weights() || codec.is_mla()) return GpuFallback::kUnsupported;
      if (absl::StatusOr<kernels::KvCodecLayer> v = codec.kv(layer, kernels::CodecMode::kSlim);
          v.ok()) {
        kv = *v;
        supported = gpu::SupportsAttendSlim(*kv, p.h_q);
      } else {
        supported = v.status();
      }
      break;
    case Mode::kLatent:
      if (!codec.has_weights() || !codec.is_mla()) return GpuFallback::kUnsupported;
      supported = gpu::SupportsAttendLatent(codec.latent(layer), p.h_q);
      break;
    case Mode::kXcache:
      return GpuFallback::kUnsupported;
  }
  if (!supported.ok()) return GpuFallback::kUnsupported;

  uint64_t payload_bytes = 0;
  for (const std::shared_ptr<const Page>& page : run_pages) {
    payload_bytes += GpuTier::DeviceBytes(*page);
  }
  if (payload_bytes > tier->budget_bytes()) return GpuFallback::kNoRoom;
  std::vector<GpuTier::DeviceLayerValues> values;
  std::vector<gpu::DevicePage> device_pages;
  values.reserve(run_pages.size());
  int32_t end_position = 0;
  for (size_t i = 0; i < run_pages.size(); ++i) {
    const uint32_t tokens = run_pages[i]->geometry.page_tokens;
    const auto position = static_cast<int32_t>((first + i) * tokens);
    absl::StatusOr<GpuTier::DeviceLayerValues> v =
        tier->ReadLayer(codec, run_pages[i], layer, position);
    if (!v.ok()) return FallbackForFailure(v.status(), why);
    device_pages.push_back(v->page);
    values.push_back(*std::move(v));
    end_position = position + static_cast<int32_t>(tokens);
  }
  std::shared_ptr<const gpu::DeviceLayer> device_layer;
  if (mode == Mode::kSlim || mode == Mode::kLatent) {
    auto made = mode == Mode::kSlim
                    ? tier->SlimLayer(run_pages[0]->model, layer, *kv, end_position)
                    : tier->LatentLayer(run_pages[0]->model, layer, codec.latent(layer));
    if (!made.ok()) return FallbackForFailure(made.status(), why);
    device_layer = *std::move(made);
  }
  // One call per stretch of pages of one device dtype (the ops take one; a quantized page is
  // float32 on the device, an unquantized one its put dtype), merged exactly like runs.
  const int d_v = static_cast<int>(c.v_head_dim);
  std::vector<float> part_o(size_t{c.num_q_heads} * c.v_head_dim), part_lse(c.num_q_heads);
  for (size_t begin = 0; begin < device_pages.size();) {
    size_t end = begin + 1;
    while (end < device_pages.size() && device_pages[end].dtype == device_pages[begin].dtype) {
      ++end;
    }
    const std::span<const gpu::DevicePage> part(device_pages.data() + begin, end - begin);
    const kernels::AttentionOut part_out =
        begin == 0 ? out : kernels::AttentionOut{part_o.data(), part_lse.data()};
    absl::Status s;
    switch (mode) {
      case Mode::kFull:
        s = gpu::AttendFull(heads, part, q, p, part_out);
        break;
      case Mode::kSlim:
        s = gpu::AttendSlim(*kv, *device_layer, part, q, p, part_out);
        break;
      case Mode::kLatent:
        s = gpu::AttendLatent(codec.latent(layer), *device_layer, part, q, p, part_out);
        break;
      case Mode::kXcache:
        break;  // refused above
    }
    if (!s.ok()) return FallbackForFailure(s, why);
    if (begin != 0) {
      kernels::MergeAttention(p.h_q, d_v, out.o, out.lse, part_o.data(), part_lse.data(), out.o,
                              out.lse);
    }
    begin = end;
  }
  return GpuFallback::kNone;
}

}  // namespace

kernels::AttentionParams AttentionParamsOf(const ModelConfig& config) {
  return {.h_q = static_cast<int>(config.num_q_heads),
          .scale = config.softmax_scale,
          .softcap = config.attn_logit_softcapping};
}

absl::Status AttendLayer(const ModelCodec& codec,
                         std::span<const std::shared_ptr<const Page>> pages, uint32_t layer,
                         const float* q, kernels::AttentionOut out, AttendCalls* calls,
                         GpuTier* gpu) {
  const ModelConfig& c = codec.config();
  if (layer >= c.num_layers) {
    return absl::InvalidArgumentError(
        absl::StrCat("layer: ", layer, " but the model has ", c.num_layers, " layers"));
  }
  const kernels::AttentionParams p = AttentionParamsOf(c);
  const size_t no = size_t{c.num_q_heads} * c.v_head_dim;
  std::vector<float> o(no, 0.0f), lse(c.num_q_heads, -std::numeric_limits<float>::infinity());
  std::vector<float> run_o(no), run_lse(c.num_q_heads);
  std::vector<StoredLayerValues> stored;
  std::vector<kernels::StoredPage> run;
  std::vector<AttendRun> made;
  for (size_t begin = 0; begin < pages.size();) {
    const Mode mode = pages[begin]->layers[layer].mode;
    size_t end = begin;
    while (end < pages.size() && pages[end]->layers[layer].mode == mode) ++end;
    const std::span<const std::shared_ptr<const Page>> run_pages =
        pages.subspan(begin, end - begin);
    const kernels::AttentionOut run_out{run_o.data(), run_lse.data()};
    AttendRun r{.mode = mode, .pages = static_cast<uint32_t>(end - begin)};
    r.fallback =
        AttendRunOnGpu(codec, gpu, layer, mode, run_pages, begin, q, p, run_out, &r.gpu_error);
    r.device = r.fallback == GpuFallback::kNone ? KernelDevice::kGpu : KernelDevice::kCpu;
    if (r.device == KernelDevice::kCpu) {
      stored.clear();
      run.clear();
      for (size_t i = begin; i < end; ++i) {
        absl::StatusOr<StoredLayerValues> v = ReadStoredLayer(codec, *pages[i], layer);
        if (!v.ok()) return v.status();
        stored.push_back(*std::move(v));
      }
      for (size_t i = begin; i < end; ++i) {
        const uint32_t tokens = pages[i]->geometry.page_tokens;
        run.push_back({stored[i - begin].values, tokens, static_cast<int32_t>(i * tokens)});
      }
      if (absl::Status s = AttendRunOnCpu(codec, layer, mode, run, q, p, run_out); !s.ok()) {
        return s;
      }
    }
    made.push_back(r);
    kernels::MergeAttention(p.h_q, static_cast<int>(c.v_head_dim), o.data(), lse.data(),
                            run_o.data(), run_lse.data(), o.data(), lse.data());
    begin = end;
  }
  std::copy(o.begin(), o.end(), out.o);
  std::copy(lse.begin(), lse.end(), out.lse);
  if (calls != nullptr) calls->runs.insert(calls->runs.end(), made.begin(), made.end());
  return absl::OkStatus();
}

}  // namespace slimkv::cache
