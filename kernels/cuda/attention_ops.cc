// kernels/gpu.h attention on CUDA, the host side: checks shapes like the CPU ops, lays out one
// stream-ordered scratch allocation per call and launches the kernels of attention.cuh on the
// calling thread's stream.
#include <cuda_runtime.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <limits>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "kernels/cuda/internal/host.h"
#include "kernels/gpu.h"
#include "kernels/cuda/attention.cuh"
#include "kernels/internal/codec_util.h"

namespace slimkv::kernels::gpu {

namespace {

// The shapes of one call's generic pass (attention.cuh) and what follows it.
struct Pass {
  PartialAttentionParams partial;  // shapes and RoPE; pages, q and outputs are set by Run
  // After CombineSplits: o = acc (w null), or o = ProjectHeads(acc) with these.
  const float* w = nullptr;
  int64_t ldw = 0;
  const float* bias = nullptr;
  int heads_per_group = 1;
  int d_out = 0;
  // Native MLA with d_nope > 0: columns [0, d_c) of q come from AbsorbQuery on q_nope (with
  // d_nope = 0 they stay 0, as the CPU's q̃ does).
  const float* w_uk = nullptr;
  std::vector<float> q_nope;  // [h_q, d_nope]
  int d_nope = 0;
  float absorb_scale = 1.0f;
};

int KeyLen(const PartialAttentionParams& p) { return p.a_len + p.b_len; }

absl::Status Fits(const PartialAttentionParams& p) {
  if (PartialAttentionSmemBytes(p) > SharedMemoryLimit()) {
    return absl::OutOfRangeError(absl::StrCat("a value row of ", p.v_len,
                                              " floats does not fit one block's shared memory"));
  }
  return absl::OkStatus();
}

// Checks the pages and returns their total tokens: INVALID_ARGUMENT for negative tokens, a page
// with tokens but no data, or pages of different dtypes.
absl::StatusOr<int64_t> CheckPages(std::span<const DevicePage> pages, const float* q,
                                   AttentionOut out) {
  if (q == nullptr || out.o == nullptr || out.lse == nullptr) {
    return absl::InvalidArgumentError("attention: q, o and lse must not be null");
  }
  int64_t total = 0;
  const DevicePage* first = nullptr;
  for (const DevicePage& page : pages) {
    if (page.tokens < 0) return absl::InvalidArgumentError("attention: a page has tokens < 0");
    if (page.tokens == 0) continue;
    if (page.data == nullptr) return absl::InvalidArgumentError("attention: a page has no data");
    if (first != nullptr && page.dtype != first->dtype) {
      return absl::InvalidArgumentError("attention: the pages of one call must share a dtype");
    }
    first = &page;
    total += page.tokens;
  }
  return total;
}

// Offsets of one call's scratch sections, each 256-byte aligned.
class Layout {
 public:
  size_t Add(size_t bytes) {
    const size_t at = size_;
    size_ += (bytes + 255) / 256 * 256;
    return at;
  }
  size_t size() const { return size_; }

 private:
  size_t size_ = 0;
};

// One stream-ordered device allocation, freed on the stream when it goes out of scope.
class Scratch {
 public:
  ~Scratch() {
    if (base_ != nullptr) (void)cudaFreeAsync(base_, kStream);
  }
  absl::Status Allocate(size_t bytes) {
    return Cuda(cudaMallocAsync(reinterpret_cast<void**>(&base_), bytes, kStream), "device scratch");
  }
  template <class T>
  T* At(size_t offset) const {
    return reinterpret_cast<T*>(base_ + offset);
  }

 private:
  uint8_t* base_ = nullptr;
};

// Runs a pass over `pages` for queries q [h_q, key_len] (host, scaled) into out (host).
absl::Status Run(Pass pass, std::span<const DevicePage> pages, const std::vector<float>& q,
                 int64_t total, AttentionOut out) {
  PartialAttentionParams& pp = pass.partial;
  const int h_q = pp.h_q, key_len = KeyLen(pp), v_len = pp.v_len;
  const int d_out = pass.w != nullptr ? pass.d_out : v_len;
  if (total == 0) {
    std::fill(out.o, out.o + int64_t{h_q} * d_out, 0.0f);
    std::fill(out.lse, out.lse + h_q, -std::numeric_limits<float>::infinity());
    return absl::OkStatus();
  }
  if (absl::Status s = Fits(pp); !s.ok()) return s;

  // Host side of the page table: only pages with tokens.
  std::vector<const void*> data;
  std::vector<int64_t> start = {0};
  std::vector<int32_t> position;
  for (const DevicePage& page : pages) {
    if (page.tokens == 0) continue;
    data.push_back(page.data);
    position.push_back(page.first_position);
    start.push_back(start.back() + page.tokens);
    pp.pages.type = static_cast<RowType>(page.dtype);
  }
  const int n_pages = static_cast<int>(data.size());
  // Splits: about four blocks per multiprocessor in all, each at least 256 tokens.
  const int64_t want = std::max<int64_t>(1, 4 * int64_t{Device().sm_count} / h_q);
  int64_t per_split = std::max<int64_t>(256, (total + want - 1) / want);
  per_split = (per_split + kAttentionTile - 1) / kAttentionTile * kAttentionTile;
  const int n_splits = static_cast<int>((total + per_split - 1) / per_split);

  Layout layout;
  const size_t at_data = layout.Add(sizeof(void*) * n_pages);
  const size_t at_start = layout.Add(sizeof(int64_t) * (n_pages + 1));
  const size_t at_position = layout.Add(sizeof(int32_t) * n_pages);
  const size_t at_q = layout.Add(sizeof(float) * q.size());
  const size_t at_q_nope = layout.Add(sizeof(float) * pass.q_nope.size());
  const size_t host_bytes = layout.size();  // everything above is uploaded in one copy
  const size_t n_part = size_t{1} * n_splits * h_q;
  const size_t at_part_acc = layout.Add(sizeof(float) * n_part * v_len);
  const size_t at_part_max = layout.Add(sizeof(float) * n_part);
  const size_t at_part_sum = layout.Add(sizeof(float) * n_part);
  const size_t at_acc = layout.Add(sizeof(float) * h_q * v_len);
  const size_t at_lse = layout.Add(sizeof(float) * h_q);
  const size_t at_o = layout.Add(sizeof(float) * h_q * d_out);

  std::vector<uint8_t> staging(host_bytes);
  std::memcpy(staging.data() + at_data, data.data(), sizeof(void*) * n_pages);
  std::memcpy(staging.data() + at_start, start.data(), sizeof(int64_t) * (n_pages + 1));
  std::memcpy(staging.data() + at_position, position.data(), sizeof(int32_t) * n_pages);
  std::memcpy(staging.data() + at_q, q.data(), sizeof(float) * q.size());
  if (!pass.q_nope.empty()) {
    std::memcpy(staging.data() + at_q_nope, pass.q_nope.data(), sizeof(float) * pass.q_nope.size());
  }

  Scratch scratch;
  if (absl::Status s = scratch.Allocate(layout.size()); !s.ok()) return s;
  if (absl::Status s = Cuda(cudaMemcpyAsync(scratch.At<uint8_t>(0), staging.data(), host_bytes,
                                            cudaMemcpyHostToDevice, kStream),
                            "upload of the page table");
      !s.ok()) {
    return s;
  }
  if (pass.w_uk != nullptr) {  // native MLA: q̃ into columns [0, d_c) of each query row
    AbsorbQueryParams a;
    a.h_q = h_q;
    a.heads_per_group = pp.heads_per_kv;
    a.d_nope = pass.d_nope;
    a.d_c = pp.a_len;
    a.q_nope = scratch.At<float>(at_q_nope);
    a.w = pass.w_uk;
    a.ldw = int64_t{pass.d_nope} * (h_q / pp.heads_per_kv);
    a.scale = pass.absorb_scale;
    a.out = scratch.At<float>(at_q);
    a.ld_out = key_len;
    if (absl::Status s = Cuda(AbsorbQuery(a, kStream), "query absorption"); !s.ok()) return s;
  }
  pp.pages.data = scratch.At<const void* const>(at_data);
  pp.pages.start = scratch.At<const int64_t>(at_start);
  pp.pages.position = scratch.At<const int32_t>(at_position);
  pp.pages.n_pages = n_pages;
  pp.pages.total_tokens = total;
  pp.q = scratch.At<const float>(at_q);
  pp.tokens_per_split = per_split;
  pp.n_splits = n_splits;
  pp.part_acc = scratch.At<float>(at_part_acc);
  pp.part_max = scratch.At<float>(at_part_max);
  pp.part_sum = scratch.At<float>(at_part_sum);
  if (absl::Status s = Cuda(PartialAttention(pp, kStream), "attention"); !s.ok()) return s;
  CombineSplitsParams c;
  c.h_q = h_q;
  c.v_len = v_len;
  c.n_splits = n_splits;
  c.part_acc = pp.part_acc;
  c.part_max = pp.part_max;
  c.part_sum = pp.part_sum;
  c.acc = scratch.At<float>(at_acc);
  c.lse = scratch.At<float>(at_lse);
  if (absl::Status s = Cuda(CombineSplits(c, kStream), "split merge"); !s.ok()) return s;
  const float* o = c.acc;
  if (pass.w != nullptr) {
    ProjectHeadsParams pr;
    pr.h_q = h_q;
    pr.heads_per_group = pass.heads_per_group;
    pr.in_len = v_len;
    pr.d_out = d_out;
    pr.in = c.acc;
    pr.w = pass.w;
    pr.ldw = pass.ldw;
    pr.bias = pass.bias;
    pr.out = scratch.At<float>(at_o);
    if (absl::Status s = Cuda(ProjectHeads(pr, kStream), "value projection"); !s.ok()) return s;
    o = pr.out;
  }
  // Download into host staging first: nothing is written to `out` unless every step succeeded.
  std::vector<float> result(size_t{1} * h_q * d_out + h_q);
  if (absl::Status s = Cuda(cudaMemcpyAsync(result.data(), o, sizeof(float) * h_q * d_out,
                                            cudaMemcpyDeviceToHost, kStream),
                            "download of o");
      !s.ok()) {
    return s;
  }
  if (absl::Status s = Cuda(cudaMemcpyAsync(result.data() + size_t{1} * h_q * d_out, c.lse,
                                            sizeof(float) * h_q, cudaMemcpyDeviceToHost, kStream),
                            "download of lse");
      !s.ok()) {
    return s;
  }
  if (absl::Status s = Cuda(cudaStreamSynchronize(kStream), "attention"); !s.ok()) return s;
  std::copy(result.begin(), result.begin() + int64_t{h_q} * d_out, out.o);
  std::copy(result.begin() + int64_t{h_q} * d_out, result.end(), out.lse);
  return absl::OkStatus();
}

std::vector<float> ScaledQ(const float* q, int64_t n, double scale) {
  std::vector<float> s(n);
  for (int64_t i = 0; i < n; ++i) s[i] = static_cast<float>(scale * q[i]);
  return s;
}

Pass FullPass(const KvHeads& h, int h_q) {
  Pass pass;
  PartialAttentionParams& p = pass.partial;
  p.row_elems = int64_t{h.h_kv} * h.d_k;
  p.value_plane = true;
  p.v_row_elems = int64_t{h.h_kv} * h.d_v;
  p.h_q = h_q;
  p.heads_per_kv = h.h_kv > 0 ? h_q / h.h_kv : 1;
  p.a_stride = p.a_len = h.d_k;
  p.v_stride = p.v_len = h.d_v;
  return pass;
}

Pass SlimPass(const KvCodecLayer& l, int h_q) {
  Pass pass;
  PartialAttentionParams& p = pass.partial;
  const int e = l.proj.e();
  p.row_elems = e;
  p.h_q = h_q;
  p.heads_per_kv = l.proj.h_kv > 0 ? h_q / l.proj.h_kv : 1;
  p.a_stride = p.a_len = l.proj.d_h;
  p.v_len = e;
  pass.ldw = e;
  pass.heads_per_group = p.heads_per_kv;
  pass.d_out = l.proj.d_h;
  return pass;
}

Pass LatentPass(const LatentLayout& l, int h_q) {
  Pass pass;
  PartialAttentionParams& p = pass.partial;
  p.row_elems = l.stored_elems();
  p.h_q = h_q;
  p.heads_per_kv = l.heads > 0 ? h_q / l.heads : 1;
  p.a_len = l.d_c;
  p.b_off = l.d_c;
  p.b_stride = l.shared_rope ? 0 : l.rope_dim;
  p.b_len = l.rope_dim;
  p.v_len = l.d_c;
  pass.ldw = int64_t{l.heads} * l.v_head_dim;
  pass.heads_per_group = p.heads_per_kv;
  pass.d_out = l.v_head_dim;
  pass.d_nope = l.d_nope();
  return pass;
}

}  // namespace

absl::Status SupportsAttendFull(const KvHeads& heads, int h_q) {
  if (absl::Status s = Usable(); !s.ok()) return s;
  if (absl::Status s = SelfTest(); !s.ok()) return s;
  return Fits(FullPass(heads, h_q).partial);
}

absl::Status SupportsAttendSlim(const KvCodecLayer& l, int h_q) {
  if (absl::Status s = Usable(); !s.ok()) return s;
  if (absl::Status s = SelfTest(); !s.ok()) return s;
  return Fits(SlimPass(l, h_q).partial);
}

absl::Status SupportsAttendLatent(const LatentLayout& l, int h_q) {
  if (absl::Status s = Usable(); !s.ok()) return s;
  if (absl::Status s = SelfTest(); !s.ok()) return s;
  return Fits(LatentPass(l, h_q).partial);
}

// ---- Attention ----

absl::Status AttendFull(const KvHeads& heads, std::span<const DevicePage> pages, const float* q,
                        const AttentionParams& p, AttentionOut out) {
  if (absl::Status s = Usable(); !s.ok()) return s;
  if (heads.d_k <= 0 || heads.d_v <= 0) {
    return absl::InvalidArgumentError("attention: head dims must be positive");
  }
  if (absl::Status s = ValidateAttentionParams(p, heads.h_kv); !s.ok()) return s;
  absl::StatusOr<int64_t> total = CheckPages(pages, q, out);
  if (!total.ok()) return total.status();
  Pass pass = FullPass(heads, p.h_q);
  pass.partial.softcap = static_cast<float>(p.softcap);
  return Run(std::move(pass), pages, ScaledQ(q, int64_t{p.h_q} * heads.d_k, p.scale), *total, out);
}

absl::Status AttendSlim(const KvCodecLayer& l, const DeviceLayer& layer,
                        std::span<const DevicePage> pages, const float* q,
                        const AttentionParams& p, AttentionOut out) {
  if (absl::Status s = Usable(); !s.ok()) return s;
  if (absl::Status s = ValidateCodecLayer(l, CodecMode::kSlim); !s.ok()) return s;
  if (absl::Status s = ValidateAttentionParams(p, l.proj.h_kv); !s.ok()) return s;
  absl::StatusOr<int64_t> total = CheckPages(pages, q, out);
  if (!total.ok()) return total.status();
  const DeviceLayer::Impl& d = layer.impl();
  if (d.w.data() == nullptr || (l.rope != nullptr) != (d.cos.data() != nullptr)) {
    return absl::InvalidArgumentError("attention: the DeviceLayer is not this slim layer's");
  }
  if (l.rope != nullptr) {
    for (const DevicePage& page : pages) {
      if (page.tokens > 0 && int64_t{page.first_position} + page.tokens > d.max_position) {
        return absl::FailedPreconditionError(absl::StrCat(
            "attention: position ", int64_t{page.first_position} + page.tokens - 1,
            " is past the device RoPE table (", d.max_position, " positions)"));
      }
    }
  }
  Pass pass = SlimPass(l, p.h_q);
  pass.partial.softcap = static_cast<float>(p.softcap);
  if (l.rope != nullptr) {
    pass.partial.cos = static_cast<const float*>(d.cos.data());
    pass.partial.sin = static_cast<const float*>(d.sin.data());
    pass.partial.rotary_dim = l.rope->params().rotary_dim;
    pass.partial.half_split = l.rope->params().pairing == RopePairing::kHalfSplit;
  }
  pass.w = static_cast<const float*>(d.w.data());
  pass.bias = static_cast<const float*>(d.bias.data());
  return Run(std::move(pass), pages, ScaledQ(q, int64_t{p.h_q} * l.proj.d_h, p.scale), *total,
             out);
}

absl::Status AttendLatent(const LatentLayout& l, const DeviceLayer& layer,
                          std::span<const DevicePage> pages, const float* q,
                          const AttentionParams& p, AttentionOut out) {
  if (absl::Status s = Usable(); !s.ok()) return s;
  if (absl::Status s = ValidateLatentLayout(l); !s.ok()) return s;
  if (absl::Status s = ValidateAttentionParams(p, l.heads); !s.ok()) return s;
  absl::StatusOr<int64_t> total = CheckPages(pages, q, out);
  if (!total.ok()) return total.status();
  const DeviceLayer::Impl& d = layer.impl();
  if (d.w.data() == nullptr || (l.d_nope() > 0) != (d.w_uk.data() != nullptr)) {
    return absl::InvalidArgumentError("attention: the DeviceLayer is not this latent layer's");
  }
  // Split each q head into q_nope [d_nope] (absorbed on the device) and the scaled rope part,
  // which goes straight to columns [d_c, d_c + rope_dim) of the query row.
  const int dk = l.k_head_dim, dn = l.d_nope(), r = l.rope_dim, key_len = l.d_c + r;
  const int group = p.h_q / l.heads;
  const std::vector<int> map = internal::LatentHeadMap(l);
  Pass pass = LatentPass(l, p.h_q);
  pass.partial.softcap = static_cast<float>(p.softcap);
  pass.w = static_cast<const float*>(d.w.data());
  pass.w_uk = static_cast<const float*>(d.w_uk.data());
  pass.absorb_scale = static_cast<float>(p.scale);
  pass.q_nope.assign(size_t{1} * p.h_q * dn, 0.0f);
  std::vector<float> query(size_t{1} * p.h_q * key_len, 0.0f);
  for (int i = 0; i < p.h_q; ++i) {
    const int g = i / group;
    for (int c = 0; c < dk; ++c) {
      const int src = map[g * dk + c];
      const float v = q[int64_t{i} * dk + c];
      if (src >= 0) {
        pass.q_nope[size_t{1} * i * dn + src] = v;
      } else {
        query[size_t{1} * i * key_len + l.d_c + (-src - 1)] = static_cast<float>(p.scale * v);
      }
    }
  }
  return Run(std::move(pass), pages, query, *total, out);
}

}  // namespace slimkv::kernels::gpu
