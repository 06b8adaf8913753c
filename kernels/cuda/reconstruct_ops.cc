// kernels/gpu.h DecodeSlim and DecodeLatent on CUDA, the host side of reconstruct.cuh.
#include <cuda_runtime.h>

#include "kernels/cuda/internal/host.h"
#include "kernels/cuda/reconstruct.cuh"
#include "kernels/dtype.h"
#include "kernels/gpu.h"

namespace slimkv::kernels::gpu {

namespace {

// Common checks of a reconstruction call: OK (with *done when there is nothing to do) or why not.
absl::Status CheckDecode(const DevicePage& page, DType out, const void* k, const void* v,
                         bool* done) {
  if (absl::Status s = Usable(); !s.ok()) return s;
  if (page.tokens < 0) return absl::InvalidArgumentError("decode: tokens < 0");
  if (!IsValidDType(static_cast<int>(out)) || !IsValidDType(static_cast<int>(page.dtype))) {
    return absl::InvalidArgumentError("decode: bad dtype");
  }
  *done = page.tokens == 0;
  if (!*done && (page.data == nullptr || k == nullptr || v == nullptr)) {
    return absl::InvalidArgumentError("decode: null page, k or v");
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status DecodeSlim(const KvCodecLayer& l, const DeviceLayer& layer, const DevicePage& page,
                        DType out, void* k, void* v) {
  if (absl::Status s = ValidateCodecLayer(l, CodecMode::kSlim); !s.ok()) return s;
  bool done = false;
  if (absl::Status s = CheckDecode(page, out, k, v, &done); !s.ok() || done) return s;
  const DeviceLayer::Impl& d = layer.impl();
  if (d.w.data() == nullptr || (l.rope != nullptr) != (d.cos.data() != nullptr)) {
    return absl::InvalidArgumentError("decode: the DeviceLayer is not this slim layer's");
  }
  if (l.rope != nullptr && int64_t{page.first_position} + page.tokens > d.max_position) {
    return absl::FailedPreconditionError("decode: positions past the device RoPE table");
  }
  const int e = l.proj.e();
  RotateRowsParams r;
  r.in = page.data;
  r.in_type = static_cast<RowType>(page.dtype);
  r.rows = page.tokens;
  r.heads = l.proj.h_kv;
  r.head_dim = l.proj.d_h;
  if (l.rope != nullptr) {
    r.cos = static_cast<const float*>(d.cos.data());
    r.sin = static_cast<const float*>(d.sin.data());
    r.rotary_dim = l.rope->params().rotary_dim;
    r.half_split = l.rope->params().pairing == RopePairing::kHalfSplit;
  }
  r.first_position = page.first_position;
  r.out = k;
  r.out_type = static_cast<RowType>(out);
  ProjectRowsParams pv;
  pv.in = page.data;
  pv.in_type = r.in_type;
  pv.ld_in = e;
  pv.rows = page.tokens;
  pv.k = e;
  pv.w = static_cast<const float*>(d.w.data());
  pv.ldw = e;
  pv.n = e;
  pv.bias = static_cast<const float*>(d.bias.data());
  pv.out = v;
  pv.out_type = r.out_type;
  pv.ld_out = e;
  if (absl::Status s = Cuda(RotateRows(r, kStream), "slim K"); !s.ok()) return s;
  if (absl::Status s = Cuda(ProjectRows(pv, kStream), "slim V"); !s.ok()) return s;
  return Cuda(cudaStreamSynchronize(kStream), "slim decode");
}

absl::Status DecodeLatent(const LatentLayout& l, const DeviceLayer& layer, const DevicePage& page,
                          DType out, void* k, void* v) {
  if (absl::Status s = ValidateLatentLayout(l); !s.ok()) return s;
  bool done = false;
  if (absl::Status s = CheckDecode(page, out, k, v, &done); !s.ok() || done) return s;
  const DeviceLayer::Impl& d = layer.impl();
  if (d.w.data() == nullptr || (l.d_nope() > 0) != (d.w_uk.data() != nullptr)) {
    return absl::InvalidArgumentError("decode: the DeviceLayer is not this latent layer's");
  }
  const int H = l.heads, dk = l.k_head_dim, dn = l.d_nope(), dv = l.v_head_dim;
  const RowType in_type = static_cast<RowType>(page.dtype), out_type = static_cast<RowType>(out);
  ProjectRowsParams pk;
  pk.in = page.data;
  pk.in_type = in_type;
  pk.ld_in = l.stored_elems();
  pk.rows = page.tokens;
  pk.k = l.d_c;
  pk.w = static_cast<const float*>(d.w_uk.data());
  pk.ldw = int64_t{H} * dn;
  pk.n = H * dn;
  pk.out = k;
  pk.out_type = out_type;
  pk.ld_out = int64_t{H} * dk;
  pk.col_map = static_cast<const int*>(d.nope_dst.data());
  GatherColumnsParams g;
  g.in = page.data;
  g.in_type = in_type;
  g.ld_in = l.stored_elems();
  g.rows = page.tokens;
  g.n = H * l.rope_dim;
  g.src = static_cast<const int*>(d.rope_src.data());
  g.dst = static_cast<const int*>(d.rope_dst.data());
  g.out = k;
  g.out_type = out_type;
  g.ld_out = int64_t{H} * dk;
  ProjectRowsParams pv = pk;
  pv.w = static_cast<const float*>(d.w.data());
  pv.ldw = int64_t{H} * dv;
  pv.n = H * dv;
  pv.out = v;
  pv.ld_out = int64_t{H} * dv;
  pv.col_map = nullptr;
  if (dn > 0) {
    if (absl::Status s = Cuda(ProjectRows(pk, kStream), "latent K"); !s.ok()) return s;
  }
  if (absl::Status s = Cuda(GatherColumns(g, kStream), "latent k_rope"); !s.ok()) return s;
  if (absl::Status s = Cuda(ProjectRows(pv, kStream), "latent V"); !s.ok()) return s;
  return Cuda(cudaStreamSynchronize(kStream), "latent decode");
}

}  // namespace slimkv::kernels::gpu
