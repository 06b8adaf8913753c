#include "kernels/codecs_ref.h"

#include <vector>

#include "kernels/internal/codec_util.h"

namespace slimkv::kernels {
namespace {

using internal::LoadF64;
using internal::StoreF64;

double Bias(const float* b, int i) { return b == nullptr ? 0.0 : b[i]; }

// Σ_i a[i]·m[i, col] for the row-major matrix m with leading dimension ld.
double DotColumn(const double* a, int n, const float* m, int64_t ld, int col) {
  double acc = 0.0;
  for (int i = 0; i < n; ++i) acc += a[i] * m[i * ld + col];
  return acc;
}

void Rope(const KvCodecLayer& l, std::vector<double>& k, int64_t tokens,
          const int32_t* positions, bool inverse) {
  if (l.rope == nullptr) return;  // a layer without RoPE (t5 cross-attention)
  ApplyRopeRef(l.rope->params(), k.data(), tokens, l.proj.h_kv, positions, inverse);
}

// K_raw of the engine's K.
std::vector<double> LoadKRaw(const KvCodecLayer& l, int64_t tokens, const int32_t* positions,
                             ConstTensor k) {
  std::vector<double> kr = LoadF64(k, tokens * l.proj.e());
  Rope(l, kr, tokens, positions, /*inverse=*/true);
  return kr;
}

// Rotates K_raw into engine form and writes both outputs.
void StoreKv(const KvCodecLayer& l, int64_t tokens, const int32_t* positions,
             std::vector<double>& kr, const std::vector<double>& v, MutableTensor k_out,
             MutableTensor v_out) {
  Rope(l, kr, tokens, positions, /*inverse=*/false);
  StoreF64(kr.data(), kr.size(), k_out);
  StoreF64(v.data(), v.size(), v_out);
}

}  // namespace

absl::Status EncodeFullRef(const KvProjection& p, int64_t tokens, ConstTensor k, ConstTensor v,
                           MutableTensor stored) {
  if (absl::Status s = ValidateKvProjection(p); !s.ok()) return s;
  const int64_t n = tokens * p.e();
  const std::vector<double> kd = LoadF64(k, n), vd = LoadF64(v, n);
  StoreF64(kd.data(), n, stored);
  const size_t half_bytes = n * DTypeSize(stored.dtype);
  StoreF64(vd.data(), n, {static_cast<char*>(stored.data) + half_bytes, stored.dtype});
  return absl::OkStatus();
}

absl::Status DecodeFullRef(const KvProjection& p, int64_t tokens, ConstTensor stored,
                           MutableTensor k, MutableTensor v) {
  if (absl::Status s = ValidateKvProjection(p); !s.ok()) return s;
  const int64_t n = tokens * p.e();
  const std::vector<double> all = LoadF64(stored, 2 * n);
  StoreF64(all.data(), n, k);
  StoreF64(all.data() + n, n, v);
  return absl::OkStatus();
}

absl::Status EncodeSlimRef(const KvCodecLayer& l, int64_t tokens, const int32_t* positions,
                           ConstTensor k, MutableTensor stored) {
  if (absl::Status s = ValidateCodecLayer(l, CodecMode::kSlim); !s.ok()) return s;
  const std::vector<double> kr = LoadKRaw(l, tokens, positions, k);
  StoreF64(kr.data(), kr.size(), stored);
  return absl::OkStatus();
}

absl::Status DecodeSlimRef(const KvCodecLayer& l, int64_t tokens, const int32_t* positions,
                           ConstTensor stored, MutableTensor k, MutableTensor v) {
  if (absl::Status s = ValidateCodecLayer(l, CodecMode::kSlim); !s.ok()) return s;
  const int e = l.proj.e();
  std::vector<double> kr = LoadF64(stored, tokens * e);
  std::vector<double> vd(kr.size());
  std::vector<double> centered(e);
  for (int64_t t = 0; t < tokens; ++t) {
    for (int i = 0; i < e; ++i) centered[i] = kr[t * e + i] - Bias(l.proj.b_k, i);
    for (int j = 0; j < e; ++j) {
      vd[t * e + j] = DotColumn(centered.data(), e, l.w_kv, e, j) + Bias(l.proj.b_v, j);
    }
  }
  StoreKv(l, tokens, positions, kr, vd, k, v);
  return absl::OkStatus();
}

absl::Status EncodeXcacheFromXRef(const KvCodecLayer& l, int64_t tokens, ConstTensor x,
                                  MutableTensor stored) {
  if (absl::Status s = ValidateCodecLayer(l, CodecMode::kXcacheGivenX); !s.ok()) return s;
  const std::vector<double> xd = LoadF64(x, tokens * l.proj.d);
  StoreF64(xd.data(), xd.size(), stored);
  return absl::OkStatus();
}

absl::Status EncodeXcacheFromKvRef(const KvCodecLayer& l, int64_t tokens,
                                   const int32_t* positions, ConstTensor k, ConstTensor v,
                                   MutableTensor stored) {
  if (absl::Status s = ValidateCodecLayer(l, CodecMode::kXcacheFromKv); !s.ok()) return s;
  const int d = l.proj.d, e = l.proj.e();
  const std::vector<double> kr = LoadKRaw(l, tokens, positions, k);
  const std::vector<double> vd = LoadF64(v, tokens * e);
  std::vector<double> xd(tokens * d);
  std::vector<double> y(2 * e);  // [K_raw − b_K, V − b_V] of one token
  for (int64_t t = 0; t < tokens; ++t) {
    for (int i = 0; i < e; ++i) {
      y[i] = kr[t * e + i] - Bias(l.proj.b_k, i);
      y[e + i] = vd[t * e + i] - Bias(l.proj.b_v, i);
    }
    for (int j = 0; j < d; ++j) xd[t * d + j] = DotColumn(y.data(), 2 * e, l.pinv, d, j);
  }
  StoreF64(xd.data(), xd.size(), stored);
  return absl::OkStatus();
}

absl::Status DecodeXcacheRef(const KvCodecLayer& l, int64_t tokens, const int32_t* positions,
                             ConstTensor stored, MutableTensor k, MutableTensor v) {
  if (absl::Status s = ValidateCodecLayer(l, CodecMode::kXcacheGivenX); !s.ok()) return s;
  const int d = l.proj.d, e = l.proj.e();
  const std::vector<double> xd = LoadF64(stored, tokens * d);
  std::vector<double> kr(tokens * e), vd(tokens * e);
  for (int64_t t = 0; t < tokens; ++t) {
    for (int j = 0; j < e; ++j) {
      kr[t * e + j] = DotColumn(&xd[t * d], d, l.proj.w_k, e, j) + Bias(l.proj.b_k, j);
      vd[t * e + j] = DotColumn(&xd[t * d], d, l.proj.w_v, e, j) + Bias(l.proj.b_v, j);
    }
  }
  StoreKv(l, tokens, positions, kr, vd, k, v);
  return absl::OkStatus();
}

absl::Status EncodeProjectedRef(const KvCodecLayer& l, int64_t tokens, const int32_t* positions,
                                ConstTensor k, ConstTensor v, MutableTensor stored) {
  if (absl::Status s = ValidateCodecLayer(l, CodecMode::kProjected); !s.ok()) return s;
  const int e = l.proj.e(), n = l.n_proj(), width = l.n_kept + l.rank;
  const std::vector<int> pk = internal::ProjectedKColumns(l);
  const int nk = static_cast<int>(pk.size());
  const std::vector<double> kr = LoadKRaw(l, tokens, positions, k);
  const std::vector<double> vd = LoadF64(v, tokens * e);
  std::vector<double> out(tokens * width);
  std::vector<double> y(n);  // the projected columns of [K_raw − b_K, V − b_V]
  for (int64_t t = 0; t < tokens; ++t) {
    for (int i = 0; i < l.n_kept; ++i) out[t * width + i] = kr[t * e + l.kept_k_cols[i]];
    for (int i = 0; i < nk; ++i) y[i] = kr[t * e + pk[i]] - Bias(l.proj.b_k, pk[i]);
    for (int i = 0; i < e; ++i) y[nk + i] = vd[t * e + i] - Bias(l.proj.b_v, i);
    for (int r = 0; r < l.rank; ++r) {
      out[t * width + l.n_kept + r] = DotColumn(y.data(), n, l.basis, l.rank, r);
    }
  }
  StoreF64(out.data(), out.size(), stored);
  return absl::OkStatus();
}

absl::Status DecodeProjectedRef(const KvCodecLayer& l, int64_t tokens, const int32_t* positions,
                                ConstTensor stored, MutableTensor k, MutableTensor v) {
  if (absl::Status s = ValidateCodecLayer(l, CodecMode::kProjected); !s.ok()) return s;
  const int e = l.proj.e(), width = l.n_kept + l.rank;
  const std::vector<int> pk = internal::ProjectedKColumns(l);
  const int nk = static_cast<int>(pk.size());
  const std::vector<double> in = LoadF64(stored, tokens * width);
  std::vector<double> kr(tokens * e), vd(tokens * e);
  for (int64_t t = 0; t < tokens; ++t) {
    const double* c = &in[t * width + l.n_kept];
    // Row i of B_R dotted with c is column i of c·B_Rᵀ.
    auto project = [&](int i) {
      double acc = 0.0;
      for (int r = 0; r < l.rank; ++r) acc += c[r] * l.basis[static_cast<int64_t>(i) * l.rank + r];
      return acc;
    };
    for (int i = 0; i < l.n_kept; ++i) kr[t * e + l.kept_k_cols[i]] = in[t * width + i];
    for (int i = 0; i < nk; ++i) kr[t * e + pk[i]] = project(i) + Bias(l.proj.b_k, pk[i]);
    for (int i = 0; i < e; ++i) vd[t * e + i] = project(nk + i) + Bias(l.proj.b_v, i);
  }
  StoreKv(l, tokens, positions, kr, vd, k, v);
  return absl::OkStatus();
}

absl::Status EncodeLatentNativeRef(const LatentLayout& l, int64_t tokens, ConstTensor latent,
                                   MutableTensor stored) {
  if (absl::Status s = ValidateLatentLayout(l); !s.ok()) return s;
  const std::vector<double> in = LoadF64(latent, tokens * l.stored_elems());
  StoreF64(in.data(), in.size(), stored);
  return absl::OkStatus();
}

absl::Status DecodeLatentNativeRef(const LatentLayout& l, int64_t tokens, ConstTensor stored,
                                   MutableTensor k, MutableTensor v) {
  if (absl::Status s = ValidateLatentLayout(l); !s.ok()) return s;
  const int width = l.stored_elems(), dn = l.d_nope(), dk = l.k_head_dim, dv = l.v_head_dim;
  const std::vector<int> map = internal::LatentHeadMap(l);
  const std::vector<double> in = LoadF64(stored, tokens * width);
  std::vector<double> kd(tokens * l.heads * dk), vd(tokens * l.heads * dv);
  for (int64_t t = 0; t < tokens; ++t) {
    const double* c = &in[t * width];
    const double* rope = c + l.d_c;
    for (int h = 0; h < l.heads; ++h) {
      double* kh = &kd[(t * l.heads + h) * dk];
      const double* rope_h = l.shared_rope ? rope : rope + h * l.rope_dim;
      for (int i = 0; i < dk; ++i) {
        const int src = map[h * dk + i];
        kh[i] = src >= 0 ? DotColumn(c, l.d_c, l.w_uk, int64_t{l.heads} * dn, h * dn + src)
                         : rope_h[-src - 1];
      }
      for (int j = 0; j < dv; ++j) {
        vd[(t * l.heads + h) * dv + j] = DotColumn(c, l.d_c, l.w_uv, int64_t{l.heads} * dv, h * dv + j);
      }
    }
  }
  StoreF64(kd.data(), kd.size(), k);
  StoreF64(vd.data(), vd.size(), v);
  return absl::OkStatus();
}

}  // namespace slimkv::kernels
