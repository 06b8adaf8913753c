// kernels/gpu.h SelfTest: the known-answer check of the GPU ops, through their public entry
// points, against float64 references computed here (AttendRef for attention; K and V built
// directly for reconstruction) on small fixed pages. Run once per process.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <tuple>
#include <vector>

#include "absl/strings/str_cat.h"
#include "kernels/attention_ref.h"
#include "kernels/gpu.h"
#include "kernels/rope.h"

namespace slimkv::kernels::gpu {

namespace {

// Small fixed cases: float32 random values rounded to bf16 (so the bf16 pages hold the same
// values), three pages of 13, 40 and 1 tokens at scattered positions.
struct Case {
  std::vector<std::pair<int, int32_t>> pages = {{13, 0}, {40, 13}, {1, 700}};
  uint64_t state = 0x9e3779b97f4a7c15ull;
  float Next() {  // uniform in [-1, 1), then rounded to bf16
    state = state * 6364136223846793005ull + 1442695040888963407ull;
    const float u = static_cast<float>(static_cast<int64_t>(state >> 40) - (1 << 23)) / (1 << 23);
    uint32_t bits;
    std::memcpy(&bits, &u, 4);
    bits &= 0xffff0000u;
    float r;
    std::memcpy(&r, &bits, 4);
    return r;
  }
  std::vector<float> Values(size_t n) {
    std::vector<float> v(n);
    for (float& x : v) x = Next();
    return v;
  }
  int Tokens() const {
    int t = 0;
    for (const auto& pg : pages) t += pg.first;
    return t;
  }
};

// Uploads pages of `cols` stored columns as dtype t (F32 or BF16); returns the device pages and
// keeps their buffers in *keep.
absl::StatusOr<std::vector<DevicePage>> UploadPages(const Case& c, const std::vector<float>& rows,
                                                    int64_t cols, DType t,
                                                    std::vector<DeviceBuffer>* keep) {
  std::vector<DevicePage> pages;
  int64_t at = 0;
  for (const auto& [tokens, first] : c.pages) {
    const int64_t n = int64_t{tokens} * cols;
    std::vector<uint8_t> host(n * DTypeSize(t));
    for (int64_t k = 0; k < n; ++k) {
      const float v = rows[at + k];
      if (t == DType::kF32) {
        std::memcpy(&host[4 * k], &v, 4);
      } else {
        uint32_t bits;
        std::memcpy(&bits, &v, 4);
        const uint16_t b = static_cast<uint16_t>(bits >> 16);
        std::memcpy(&host[2 * k], &b, 2);
      }
    }
    absl::StatusOr<DeviceBuffer> b = DeviceBuffer::Allocate(host.size());
    if (!b.ok()) return b.status();
    if (absl::Status s = b->Upload(host.data(), host.size()); !s.ok()) return s;
    pages.push_back({b->data(), t, tokens, first});
    keep->push_back(*std::move(b));
    at += n;
  }
  return pages;
}

absl::Status Compare(const char* what, const std::vector<float>& o, const std::vector<float>& lse,
                     const std::vector<double>& o_ref, const std::vector<double>& lse_ref) {
  double num = 0, den = 0, lse_err = 0;
  for (size_t k = 0; k < o.size(); ++k) {
    if (!std::isfinite(o[k])) return absl::InternalError(absl::StrCat(what, ": o not finite"));
    num += (o[k] - o_ref[k]) * (o[k] - o_ref[k]);
    den += o_ref[k] * o_ref[k];
  }
  for (size_t i = 0; i < lse.size(); ++i) {
    lse_err = std::max(lse_err, std::abs(lse[i] - lse_ref[i]) / std::max(1.0, std::abs(lse_ref[i])));
  }
  const double o_err = std::sqrt(num / std::max(den, 1e-300));
  if (o_err <= 1e-4 && lse_err <= 1e-4) return absl::OkStatus();
  return absl::InternalError(absl::StrCat(what, ": disagrees with the CPU reference (o ", o_err,
                                          ", lse ", lse_err, ")"));
}

// Engine K [T, h, d_k], V [T, h, d_v] → AttendRef.
absl::Status Reference(const KvHeads& heads, int T, const std::vector<double>& k,
                       const std::vector<double>& v, const std::vector<float>& q,
                       const AttentionParams& p, std::vector<double>* o, std::vector<double>* lse) {
  const std::vector<double> qd(q.begin(), q.end());
  o->assign(size_t{1} * p.h_q * heads.d_v, 0.0);
  lse->assign(p.h_q, 0.0);
  return AttendRef(heads, T, k.data(), v.data(), qd.data(), p, o->data(), lse->data());
}

// Runs `decode` on page `page` (tokens [first, first + page.tokens) of the case) into float32
// K [T, k_cols] and V [T, v_cols] and compares them with rows of the float64 k, v of all tokens.
template <class Decode>
absl::Status CompareDecode(const char* what, const DevicePage& page, int64_t first,
                           const std::vector<double>& k, const std::vector<double>& v,
                           int64_t k_cols, int64_t v_cols, Decode decode) {
  const int64_t nk = page.tokens * k_cols, nv = page.tokens * v_cols;
  absl::StatusOr<DeviceBuffer> kd = DeviceBuffer::Allocate(sizeof(float) * nk);
  if (!kd.ok()) return kd.status();
  absl::StatusOr<DeviceBuffer> vd = DeviceBuffer::Allocate(sizeof(float) * nv);
  if (!vd.ok()) return vd.status();
  if (absl::Status s = decode(page, kd->data(), vd->data()); !s.ok()) return s;
  std::vector<float> kh(nk), vh(nv);
  if (absl::Status s = kd->Download(kh.data(), sizeof(float) * nk); !s.ok()) return s;
  if (absl::Status s = vd->Download(vh.data(), sizeof(float) * nv); !s.ok()) return s;
  for (auto [got, want, cols] : {std::tuple{&kh, &k, k_cols}, std::tuple{&vh, &v, v_cols}}) {
    double num = 0, den = 0;
    for (size_t i = 0; i < got->size(); ++i) {
      const double w = (*want)[first * cols + i];
      if (!std::isfinite((*got)[i])) return absl::InternalError(absl::StrCat(what, ": not finite"));
      num += ((*got)[i] - w) * ((*got)[i] - w);
      den += w * w;
    }
    if (std::sqrt(num / std::max(den, 1e-300)) > 1e-4) {
      return absl::InternalError(absl::StrCat(what, ": disagrees with the CPU reference (",
                                              std::sqrt(num / std::max(den, 1e-300)), ")"));
    }
  }
  return absl::OkStatus();
}

absl::Status CheckFull(DType t) {
  Case c;
  const KvHeads heads{2, 16, 8};
  const AttentionParams p{4, 0.25, 0.0};
  const int T = c.Tokens(), ek = 32, ev = 16;
  std::vector<float> rows;  // page by page: K [T_p, ek] then V [T_p, ev]
  std::vector<double> k, v;
  for (const auto& [tokens, first] : c.pages) {
    const std::vector<float> kp = c.Values(size_t{1} * tokens * ek), vp = c.Values(size_t{1} * tokens * ev);
    rows.insert(rows.end(), kp.begin(), kp.end());
    rows.insert(rows.end(), vp.begin(), vp.end());
    k.insert(k.end(), kp.begin(), kp.end());
    v.insert(v.end(), vp.begin(), vp.end());
  }
  std::vector<DeviceBuffer> keep;
  absl::StatusOr<std::vector<DevicePage>> pages = UploadPages(c, rows, ek + ev, t, &keep);
  if (!pages.ok()) return pages.status();
  const std::vector<float> q = c.Values(size_t{4} * 16);
  std::vector<float> o(4 * 8), lse(4);
  if (absl::Status s = AttendFull(heads, *pages, q.data(), p, {o.data(), lse.data()}); !s.ok()) return s;
  std::vector<double> o_ref, lse_ref;
  if (absl::Status s = Reference(heads, T, k, v, q, p, &o_ref, &lse_ref); !s.ok()) return s;
  return Compare("full", o, lse, o_ref, lse_ref);
}

absl::Status CheckSlim(DType t) {
  Case c;
  const int h_kv = 2, dh = 8, e = h_kv * dh, T = c.Tokens();
  const AttentionParams p{4, 0.35, 0.0};
  RopeParams rp;
  rp.head_dim = dh;
  rp.rotary_dim = dh;
  absl::StatusOr<RopeTable> rope = RopeTable::Create(rp);
  if (!rope.ok()) return rope.status();
  const std::vector<float> w_kv = c.Values(size_t{1} * e * e), b_k = c.Values(e), b_v = c.Values(e);
  std::vector<float> w_k(size_t{1} * e * e, 0.0f);  // unused by slim attention; d = e
  KvCodecLayer l;
  l.proj = {e, h_kv, dh, w_k.data(), w_k.data(), b_k.data(), b_v.data()};
  l.rope = &*rope;
  l.w_kv = w_kv.data();
  const std::vector<float> raw = c.Values(size_t{1} * T * e);
  // Engine K = R_p·K_raw, V = K_raw·W_KV + b_V − b_K·W_KV, in float64.
  std::vector<double> k(raw.begin(), raw.end()), v(size_t{1} * T * e);
  std::vector<int32_t> pos;
  for (const auto& [tokens, first] : c.pages) {
    for (int i = 0; i < tokens; ++i) pos.push_back(first + i);
  }
  ApplyRopeRef(rp, k.data(), T, h_kv, pos.data(), /*inverse=*/false);
  for (int t = 0; t < T; ++t) {
    for (int col = 0; col < e; ++col) {
      double a = b_v[col];
      for (int r = 0; r < e; ++r) a += (double{raw[size_t{1} * t * e + r]} - b_k[r]) * w_kv[size_t{1} * r * e + col];
      v[size_t{1} * t * e + col] = a;
    }
  }
  absl::StatusOr<std::unique_ptr<DeviceLayer>> layer = DeviceLayer::ForSlim(l, 1024);
  if (!layer.ok()) return layer.status();
  std::vector<DeviceBuffer> keep;
  absl::StatusOr<std::vector<DevicePage>> pages = UploadPages(c, raw, e, t, &keep);
  if (!pages.ok()) return pages.status();
  const std::vector<float> q = c.Values(size_t{4} * dh);
  std::vector<float> o(4 * dh), lse(4);
  if (absl::Status s = AttendSlim(l, **layer, *pages, q.data(), p, {o.data(), lse.data()}); !s.ok()) {
    return s;
  }
  std::vector<double> o_ref, lse_ref;
  if (absl::Status s = Reference({h_kv, dh, dh}, T, k, v, q, p, &o_ref, &lse_ref); !s.ok()) return s;
  if (absl::Status s = Compare("slim", o, lse, o_ref, lse_ref); !s.ok()) return s;
  // Reconstruction of the second page (tokens 13..52).
  return CompareDecode("slim decode", (*pages)[1], c.pages[0].first, k, v, e, e,
                       [&](const DevicePage& pg, void* kd, void* vd) {
                         return DecodeSlim(l, **layer, pg, DType::kF32, kd, vd);
                       });
}

absl::Status CheckLatent(DType t) {
  Case c;
  LatentLayout l;
  l.heads = 2;
  l.d_c = 24;
  l.k_head_dim = 12;
  l.v_head_dim = 8;
  l.rope_dim = 4;
  l.shared_rope = true;
  const int T = c.Tokens(), dn = l.d_nope(), width = l.stored_elems();
  const std::vector<float> w_uk = c.Values(size_t{1} * l.d_c * l.heads * dn);
  const std::vector<float> w_uv = c.Values(size_t{1} * l.d_c * l.heads * l.v_head_dim);
  l.w_uk = w_uk.data();
  l.w_uv = w_uv.data();
  const AttentionParams p{4, 0.3, 0.0};
  const std::vector<float> rows = c.Values(size_t{1} * T * width);
  // Engine K_h = [c·W_UK,h | k_rope], V_h = c·W_UV,h.
  std::vector<double> k(size_t{1} * T * l.heads * l.k_head_dim), v(size_t{1} * T * l.heads * l.v_head_dim);
  for (int tk = 0; tk < T; ++tk) {
    const float* row = &rows[size_t{1} * tk * width];
    for (int h = 0; h < l.heads; ++h) {
      double* kh = &k[(size_t{1} * tk * l.heads + h) * l.k_head_dim];
      double* vh = &v[(size_t{1} * tk * l.heads + h) * l.v_head_dim];
      for (int j = 0; j < dn; ++j) {
        double a = 0;
        for (int r = 0; r < l.d_c; ++r) a += double{row[r]} * w_uk[size_t{1} * r * l.heads * dn + h * dn + j];
        kh[j] = a;
      }
      for (int j = 0; j < l.rope_dim; ++j) kh[dn + j] = row[l.d_c + j];
      for (int j = 0; j < l.v_head_dim; ++j) {
        double a = 0;
        for (int r = 0; r < l.d_c; ++r) {
          a += double{row[r]} * w_uv[size_t{1} * r * l.heads * l.v_head_dim + h * l.v_head_dim + j];
        }
        vh[j] = a;
      }
    }
  }
  absl::StatusOr<std::unique_ptr<DeviceLayer>> layer = DeviceLayer::ForLatent(l);
  if (!layer.ok()) return layer.status();
  std::vector<DeviceBuffer> keep;
  absl::StatusOr<std::vector<DevicePage>> pages = UploadPages(c, rows, width, t, &keep);
  if (!pages.ok()) return pages.status();
  const std::vector<float> q = c.Values(size_t{4} * l.k_head_dim);
  std::vector<float> o(4 * l.v_head_dim), lse(4);
  if (absl::Status s = AttendLatent(l, **layer, *pages, q.data(), p, {o.data(), lse.data()});
      !s.ok()) {
    return s;
  }
  std::vector<double> o_ref, lse_ref;
  if (absl::Status s = Reference({l.heads, l.k_head_dim, l.v_head_dim}, T, k, v, q, p, &o_ref, &lse_ref);
      !s.ok()) {
    return s;
  }
  if (absl::Status s = Compare("latent", o, lse, o_ref, lse_ref); !s.ok()) return s;
  return CompareDecode("latent decode", (*pages)[1], c.pages[0].first, k, v,
                       int64_t{l.heads} * l.k_head_dim, int64_t{l.heads} * l.v_head_dim,
                       [&](const DevicePage& pg, void* kd, void* vd) {
                         return DecodeLatent(l, **layer, pg, DType::kF32, kd, vd);
                       });
}

absl::Status RunSelfTest() {
  if (!Device().usable) {
    return absl::UnavailableError(absl::StrCat("no usable GPU: ", Device().reason));
  }
  for (DType t : {DType::kF32, DType::kBF16}) {
    for (absl::Status (*check)(DType) : {CheckFull, CheckSlim, CheckLatent}) {
      if (absl::Status s = check(t); !s.ok()) {
        return absl::UnavailableError(absl::StrCat("GPU self-test (", DTypeName(t), "): ", s.message()));
      }
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status SelfTest() {
  static const absl::Status status = RunSelfTest();
  return status;
}

}  // namespace slimkv::kernels::gpu
