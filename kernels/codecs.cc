#include "kernels/codecs.h"

#include <cstring>
#include <vector>

#include "kernels/internal/blas_util.h"
#include "kernels/internal/codec_util.h"

namespace slimkv::kernels {
namespace {

using internal::AddRows;
using internal::F32In;
using internal::Gemm;
using internal::LoadF32;
using internal::OrNull;
using internal::StoreF32;
using internal::SubtractBiasTimes;

// An output written as float32: straight into the tensor when it is float32, else into
// scratch rounded to the tensor's dtype by Commit().
class F32Out {
 public:
  F32Out(MutableTensor t, int64_t n) : t_(t), n_(n) {
    if (t.dtype == DType::kF32) {
      ptr_ = static_cast<float*>(t.data);
    } else {
      scratch_.resize(n);
      ptr_ = scratch_.data();
    }
  }
  float* get() { return ptr_; }
  void Commit() {
    if (t_.dtype != DType::kF32) StoreF32(ptr_, n_, t_);
  }

 private:
  MutableTensor t_;
  int64_t n_;
  std::vector<float> scratch_;
  float* ptr_;
};

// Applies R_p (or R_pᵀ) to K [T, h_kv, d_h] in place; nothing for a layer without RoPE.
void RotateKeys(const KvCodecLayer& l, float* k, int64_t tokens, int heads,
                const int32_t* positions, bool inverse) {
  if (l.rope != nullptr) l.rope->Apply(k, tokens, heads, positions, inverse);
}

// K_raw [T, e] of the engine's K.
std::vector<float> LoadKRaw(const KvCodecLayer& l, int64_t tokens, const int32_t* positions,
                            ConstTensor k) {
  std::vector<float> kr = LoadF32(k, tokens * l.proj.e());
  RotateKeys(l, kr.data(), tokens, l.proj.h_kv, positions, /*inverse=*/true);
  return kr;
}

// Projected K columns of K_raw − b_K (when n_kept > 0) gathered into [T, nk], biases kept.
std::vector<float> GatherColumns(const float* m, int64_t rows, int ld, const std::vector<int>& cols) {
  std::vector<float> out(rows * cols.size());
  for (int64_t r = 0; r < rows; ++r) {
    for (size_t i = 0; i < cols.size(); ++i) out[r * cols.size() + i] = m[r * ld + cols[i]];
  }
  return out;
}

}  // namespace

absl::Status EncodeFull(const KvProjection& p, int64_t tokens, ConstTensor k, ConstTensor v,
                        MutableTensor stored) {
  if (absl::Status s = ValidateKvProjection(p); !s.ok()) return s;
  const int64_t n = tokens * p.e();
  ConvertDType(k.data, k.dtype, stored.data, stored.dtype, n);
  ConvertDType(v.data, v.dtype, static_cast<char*>(stored.data) + n * DTypeSize(stored.dtype),
               stored.dtype, n);
  return absl::OkStatus();
}

absl::Status DecodeFull(const KvProjection& p, int64_t tokens, ConstTensor stored,
                        MutableTensor k, MutableTensor v) {
  if (absl::Status s = ValidateKvProjection(p); !s.ok()) return s;
  const int64_t n = tokens * p.e();
  ConvertDType(stored.data, stored.dtype, k.data, k.dtype, n);
  ConvertDType(static_cast<const char*>(stored.data) + n * DTypeSize(stored.dtype), stored.dtype,
               v.data, v.dtype, n);
  return absl::OkStatus();
}

absl::Status EncodeSlim(const KvCodecLayer& l, int64_t tokens, const int32_t* positions,
                        ConstTensor k, MutableTensor stored) {
  if (absl::Status s = ValidateCodecLayer(l, CodecMode::kSlim); !s.ok()) return s;
  const int64_t n = tokens * l.proj.e();
  F32Out out(stored, n);
  ConvertDType(k.data, k.dtype, out.get(), DType::kF32, n);
  RotateKeys(l, out.get(), tokens, l.proj.h_kv, positions, /*inverse=*/true);
  out.Commit();
  return absl::OkStatus();
}

absl::Status DecodeSlim(const KvCodecLayer& l, int64_t tokens, const int32_t* positions,
                        ConstTensor stored, MutableTensor k, MutableTensor v) {
  if (absl::Status s = ValidateCodecLayer(l, CodecMode::kSlim); !s.ok()) return s;
  const int e = l.proj.e();
  const int64_t n = tokens * e;
  const F32In kr(stored, n);
  F32Out vo(v, n);
  Gemm(tokens, e, e, kr.get(), e, l.w_kv, e, false, 0.0f, vo.get(), e);
  // (K_raw − b_K)·W_KV + b_V = K_raw·W_KV + (b_V − b_K·W_KV).
  std::vector<float> bias;
  if (l.proj.b_v != nullptr) bias.assign(l.proj.b_v, l.proj.b_v + e);
  SubtractBiasTimes(l.proj.b_k, l.w_kv, e, e, &bias);
  AddRows(vo.get(), tokens, e, e, OrNull(bias));
  vo.Commit();
  F32Out ko(k, n);
  std::memcpy(ko.get(), kr.get(), n * sizeof(float));
  RotateKeys(l, ko.get(), tokens, l.proj.h_kv, positions, /*inverse=*/false);
  ko.Commit();
  return absl::OkStatus();
}

absl::Status EncodeXcacheFromX(const KvCodecLayer& l, int64_t tokens, ConstTensor x,
                               MutableTensor stored) {
  if (absl::Status s = ValidateCodecLayer(l, CodecMode::kXcacheGivenX); !s.ok()) return s;
  ConvertDType(x.data, x.dtype, stored.data, stored.dtype, tokens * l.proj.d);
  return absl::OkStatus();
}

absl::Status EncodeXcacheFromKv(const KvCodecLayer& l, int64_t tokens, const int32_t* positions,
                                ConstTensor k, ConstTensor v, MutableTensor stored) {
  if (absl::Status s = ValidateCodecLayer(l, CodecMode::kXcacheFromKv); !s.ok()) return s;
  const int d = l.proj.d, e = l.proj.e();
  const std::vector<float> kr = LoadKRaw(l, tokens, positions, k);
  const F32In vi(v, tokens * e);
  const float* p_k = l.pinv;                          // rows [0, e) of pinv
  const float* p_v = l.pinv + static_cast<int64_t>(e) * d;  // rows [e, 2e)
  F32Out xo(stored, tokens * d);
  Gemm(tokens, d, e, kr.data(), e, p_k, d, false, 0.0f, xo.get(), d);
  Gemm(tokens, d, e, vi.get(), e, p_v, d, false, 1.0f, xo.get(), d);
  // x = K_raw·P_K + V·P_V − (b_K·P_K + b_V·P_V).
  std::vector<float> bias;
  SubtractBiasTimes(l.proj.b_k, p_k, e, d, &bias);
  SubtractBiasTimes(l.proj.b_v, p_v, e, d, &bias);
  AddRows(xo.get(), tokens, d, d, OrNull(bias));
  xo.Commit();
  return absl::OkStatus();
}

absl::Status DecodeXcache(const KvCodecLayer& l, int64_t tokens, const int32_t* positions,
                          ConstTensor stored, MutableTensor k, MutableTensor v) {
  if (absl::Status s = ValidateCodecLayer(l, CodecMode::kXcacheGivenX); !s.ok()) return s;
  const int d = l.proj.d, e = l.proj.e();
  const F32In x(stored, tokens * d);
  F32Out ko(k, tokens * e), vo(v, tokens * e);
  Gemm(tokens, e, d, x.get(), d, l.proj.w_k, e, false, 0.0f, ko.get(), e);
  AddRows(ko.get(), tokens, e, e, l.proj.b_k);
  RotateKeys(l, ko.get(), tokens, l.proj.h_kv, positions, /*inverse=*/false);
  ko.Commit();
  Gemm(tokens, e, d, x.get(), d, l.proj.w_v, e, false, 0.0f, vo.get(), e);
  AddRows(vo.get(), tokens, e, e, l.proj.b_v);
  vo.Commit();
  return absl::OkStatus();
}

absl::Status EncodeProjected(const KvCodecLayer& l, int64_t tokens, const int32_t* positions,
                             ConstTensor k, ConstTensor v, MutableTensor stored) {
  if (absl::Status s = ValidateCodecLayer(l, CodecMode::kProjected); !s.ok()) return s;
  const int e = l.proj.e(), R = l.rank, width = l.n_kept + R;
  const std::vector<int> pk = internal::ProjectedKColumns(l);
  const int nk = static_cast<int>(pk.size());
  const std::vector<float> kr = LoadKRaw(l, tokens, positions, k);
  const F32In vi(v, tokens * e);
  F32Out out(stored, tokens * width);
  float* c = out.get() + l.n_kept;
  const float* b_k_rows = l.basis;                                   // [nk, R]
  const float* b_v_rows = l.basis + static_cast<int64_t>(nk) * R;    // [e, R]
  std::vector<float> bias_k;  // b_K restricted to the projected columns
  if (l.n_kept == 0) {
    Gemm(tokens, R, e, kr.data(), e, b_k_rows, R, false, 0.0f, c, width);
    if (l.proj.b_k != nullptr) bias_k.assign(l.proj.b_k, l.proj.b_k + e);
  } else {
    const std::vector<float> kp = GatherColumns(kr.data(), tokens, e, pk);
    Gemm(tokens, R, nk, kp.data(), nk, b_k_rows, R, false, 0.0f, c, width);
    const std::vector<int> kept(l.kept_k_cols, l.kept_k_cols + l.n_kept);
    const std::vector<float> kk = GatherColumns(kr.data(), tokens, e, kept);
    for (int64_t t = 0; t < tokens; ++t) {
      std::memcpy(out.get() + t * width, &kk[t * l.n_kept], l.n_kept * sizeof(float));
    }
    if (l.proj.b_k != nullptr) bias_k = GatherColumns(l.proj.b_k, 1, e, pk);
  }
  Gemm(tokens, R, e, vi.get(), e, b_v_rows, R, false, 1.0f, c, width);
  // c = [K_p, V]·B_R − [b_K,p, b_V]·B_R.
  std::vector<float> bias;
  SubtractBiasTimes(OrNull(bias_k), b_k_rows, nk, R, &bias);
  SubtractBiasTimes(l.proj.b_v, b_v_rows, e, R, &bias);
  AddRows(c, tokens, R, width, OrNull(bias));
  out.Commit();
  return absl::OkStatus();
}

absl::Status DecodeProjected(const KvCodecLayer& l, int64_t tokens, const int32_t* positions,
                             ConstTensor stored, MutableTensor k, MutableTensor v) {
  if (absl::Status s = ValidateCodecLayer(l, CodecMode::kProjected); !s.ok()) return s;
  const int e = l.proj.e(), R = l.rank, width = l.n_kept + R;
  const std::vector<int> pk = internal::ProjectedKColumns(l);
  const int nk = static_cast<int>(pk.size());
  const F32In in(stored, tokens * width);
  const float* c = in.get() + l.n_kept;
  const float* b_k_rows = l.basis;
  const float* b_v_rows = l.basis + static_cast<int64_t>(nk) * R;
  F32Out ko(k, tokens * e), vo(v, tokens * e);
  if (l.n_kept == 0) {
    Gemm(tokens, e, R, c, width, b_k_rows, R, true, 0.0f, ko.get(), e);
  } else {
    std::vector<float> kp(tokens * nk);
    Gemm(tokens, nk, R, c, width, b_k_rows, R, true, 0.0f, kp.data(), nk);
    for (int64_t t = 0; t < tokens; ++t) {
      float* row = ko.get() + t * e;
      const float* kept = in.get() + t * width;
      for (int i = 0; i < nk; ++i) row[pk[i]] = kp[t * nk + i];
      // Kept columns were stored exactly; the bias added below is subtracted back here.
      for (int i = 0; i < l.n_kept; ++i) {
        row[l.kept_k_cols[i]] = kept[i] - (l.proj.b_k ? l.proj.b_k[l.kept_k_cols[i]] : 0.0f);
      }
    }
  }
  AddRows(ko.get(), tokens, e, e, l.proj.b_k);
  RotateKeys(l, ko.get(), tokens, l.proj.h_kv, positions, /*inverse=*/false);
  ko.Commit();
  Gemm(tokens, e, R, c, width, b_v_rows, R, true, 0.0f, vo.get(), e);
  AddRows(vo.get(), tokens, e, e, l.proj.b_v);
  vo.Commit();
  return absl::OkStatus();
}

absl::Status EncodeLatentNative(const LatentLayout& l, int64_t tokens, ConstTensor latent,
                                MutableTensor stored) {
  if (absl::Status s = ValidateLatentLayout(l); !s.ok()) return s;
  ConvertDType(latent.data, latent.dtype, stored.data, stored.dtype, tokens * l.stored_elems());
  return absl::OkStatus();
}

absl::Status DecodeLatentNative(const LatentLayout& l, int64_t tokens, ConstTensor stored,
                                MutableTensor k, MutableTensor v) {
  if (absl::Status s = ValidateLatentLayout(l); !s.ok()) return s;
  const int width = l.stored_elems(), dn = l.d_nope(), dk = l.k_head_dim, dv = l.v_head_dim;
  const int H = l.heads;
  const F32In in(stored, tokens * width);
  F32Out vo(v, tokens * H * dv);
  Gemm(tokens, H * dv, l.d_c, in.get(), width, l.w_uv, H * dv, false, 0.0f, vo.get(), H * dv);
  vo.Commit();
  std::vector<float> nope(tokens * H * dn);
  if (dn > 0) Gemm(tokens, H * dn, l.d_c, in.get(), width, l.w_uk, H * dn, false, 0.0f, nope.data(), H * dn);
  const std::vector<int> map = internal::LatentHeadMap(l);
  F32Out ko(k, tokens * H * dk);
  for (int64_t t = 0; t < tokens; ++t) {
    const float* rope = in.get() + t * width + l.d_c;
    for (int h = 0; h < H; ++h) {
      float* kh = ko.get() + (t * H + h) * dk;
      const float* nh = &nope[(t * H + h) * dn];
      const float* rh = l.shared_rope ? rope : rope + h * l.rope_dim;
      for (int i = 0; i < dk; ++i) {
        const int src = map[h * dk + i];
        kh[i] = src >= 0 ? nh[src] : rh[-src - 1];
      }
    }
  }
  ko.Commit();
  return absl::OkStatus();
}

}  // namespace slimkv::kernels
