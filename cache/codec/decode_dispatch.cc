#include "cache/codec/decode_dispatch.h"

#include "cache/codec/page_codec.h"
#include "kernels/gpu.h"

namespace slimkv::cache {
namespace {

namespace gpu = kernels::gpu;

// Decodes on the GPU into k, v: kNone when it did, else why not (*why: a failed call's status).
GpuFallback DecodeOnGpu(const ModelCodec& codec, const std::shared_ptr<const Page>& page,
                        uint32_t l, uint32_t page_index, kernels::DType out, void* k, void* v,
                        GpuTier* tier, absl::Status* why) {
  if (const GpuFallback closed = GpuPathClosed(tier); closed != GpuFallback::kNone) return closed;
  const Mode mode = page->layers[l].mode;
  const bool slim = mode == Mode::kSlim && !codec.is_mla();
  const bool latent = mode == Mode::kLatent && codec.is_mla();
  if (!codec.has_weights() || !(slim || latent)) return GpuFallback::kUnsupported;
  const uint32_t tokens = page->geometry.page_tokens;
  const auto position = static_cast<int32_t>(page_index * tokens);
  absl::StatusOr<GpuTier::DeviceLayerValues> values = tier->ReadLayer(codec, page, l, position);
  if (!values.ok()) return FallbackForFailure(values.status(), why);
  const uint64_t k_bytes = page->geometry.TensorElems(Role::kK) * kernels::DTypeSize(out);
  const uint64_t v_bytes = page->geometry.TensorElems(Role::kV) * kernels::DTypeSize(out);
  absl::StatusOr<gpu::DeviceBuffer> k_dev = gpu::DeviceBuffer::Allocate(k_bytes);
  if (!k_dev.ok()) return FallbackForFailure(k_dev.status(), why);
  absl::StatusOr<gpu::DeviceBuffer> v_dev = gpu::DeviceBuffer::Allocate(v_bytes);
  if (!v_dev.ok()) return FallbackForFailure(v_dev.status(), why);
  absl::Status s;
  if (slim) {
    absl::StatusOr<kernels::KvCodecLayer> kv = codec.kv(l, kernels::CodecMode::kSlim);
    if (!kv.ok()) return GpuFallback::kUnsupported;
    auto layer = tier->SlimLayer(page->model, l, *kv, position + static_cast<int32_t>(tokens));
    s = layer.ok() ? gpu::DecodeSlim(*kv, **layer, values->page, out, k_dev->data(), v_dev->data())
                   : layer.status();
  } else {
    const kernels::LatentLayout& layout = codec.latent(l);
    auto layer = tier->LatentLayer(page->model, l, layout);
    s = layer.ok() ? gpu::DecodeLatent(layout, **layer, values->page, out, k_dev->data(),
                                       v_dev->data())
                   : layer.status();
  }
  if (s.ok()) s = k_dev->Download(k, k_bytes);
  if (s.ok()) s = v_dev->Download(v, v_bytes);
  return s.ok() ? GpuFallback::kNone : FallbackForFailure(s, why);
}

}  // namespace

absl::Status DecodeLayerDispatched(const ModelCodec& codec, const std::shared_ptr<const Page>& page,
                                   uint32_t l, uint32_t page_index, kernels::DType out, void* k,
                                   void* v, GpuTier* gpu, DecodeWhere* where) {
  DecodeWhere w;
  if (l < page->layers.size()) {
    w.fallback = DecodeOnGpu(codec, page, l, page_index, out, k, v, gpu, &w.gpu_error);
  }
  w.device = w.fallback == GpuFallback::kNone && l < page->layers.size() ? KernelDevice::kGpu
                                                                         : KernelDevice::kCpu;
  if (where != nullptr) *where = w;
  if (w.device == KernelDevice::kGpu) return absl::OkStatus();
  return DecodeLayer(codec, *page, l, page_index, out, k, v);
}

}  // namespace slimkv::cache
