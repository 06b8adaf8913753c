// Get's reconstruction of one page layer, GPU first: the dispatch side of cache/codec/page_codec.h
// DecodeLayer. Slim and native MLA latent layers are decoded on the GPU (kernels/gpu.h
// DecodeSlim, DecodeLatent: the GEMMs there are what makes these modes cost on the CPU) from
// the page's copy in the GPU tier, and K, V copied back to the caller's buffers. Full layers
// (a conversion, cheaper on the CPU than a device round trip), xcache and projected latent, and
// every case the GPU cannot take — no GPU tier, no usable device, a full tier, a failed CUDA
// call — are decoded by DecodeLayer on the CPU exactly as without a GPU, and `where` says why.
//
// Thread-safety: stateless; pages are immutable; the GPU tier is internally synchronized.
#pragma once

#include <cstdint>
#include <memory>

#include "absl/status/status.h"
#include "cache/codec/gpu_tier.h"
#include "cache/model/model_codec.h"
#include "cache/store/page.h"
#include "kernels/dtype.h"

namespace slimkv::cache {

// Where one layer was decoded, and why not on the GPU.
struct DecodeWhere {
  KernelDevice device = KernelDevice::kCpu;
  GpuFallback fallback = GpuFallback::kNone;  // kNone exactly when device is kGpu
  absl::Status gpu_error = absl::OkStatus();   // the failed GPU call's status, else OK
};

// As DecodeLayer (same arguments, results and errors; k and v are host buffers of the layer's K
// and V in `out`), trying the GPU first when `gpu` is not null. *where (may be null) is set.
[[nodiscard]] absl::Status DecodeLayerDispatched(const ModelCodec& codec,
                                                 const std::shared_ptr<const Page>& page,
                                                 uint32_t l, uint32_t page_index,
                                                 kernels::DType out, void* k, void* v,
                                                 GpuTier* gpu, DecodeWhere* where);

}  // namespace slimkv::cache
