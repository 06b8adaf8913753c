#include "kernels/attention.h"

#include <cblas.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <numeric>
#include <vector>

#include "absl/strings/str_cat.h"
#include "kernels/codecs.h"
#include "kernels/internal/blas_util.h"
#include "kernels/internal/codec_util.h"

namespace slimkv::kernels {
namespace {

using internal::AddRows;
using internal::Gemm;

constexpr float kNegInf = -std::numeric_limits<float>::infinity();

absl::Status ValidateCall(std::span<const StoredPage> pages, const float* q, AttentionOut out) {
  if (q == nullptr || out.o == nullptr || out.lse == nullptr) {
    return absl::InvalidArgumentError("attention: q, o and lse must be set");
  }
  for (size_t i = 0; i < pages.size(); ++i) {
    if (pages[i].tokens < 0 || (pages[i].tokens > 0 && pages[i].data.data == nullptr) ||
        pages[i].tokens > std::numeric_limits<int>::max()) {
      return absl::InvalidArgumentError(
          absl::StrCat("attention: page ", i, " has ", pages[i].tokens, " tokens or no data"));
    }
  }
  return absl::OkStatus();
}

// The page's stored values as float32: the page itself, or a conversion into `scratch`.
const float* PageF32(const StoredPage& page, int64_t cols, std::vector<float>* scratch) {
  if (page.data.dtype == DType::kF32) return static_cast<const float*>(page.data.data);
  scratch->resize(page.tokens * cols);
  ConvertDType(page.data.data, page.data.dtype, scratch->data(), DType::kF32, scratch->size());
  return scratch->data();
}

std::vector<int32_t> PagePositions(const StoredPage& page) {
  std::vector<int32_t> p(page.tokens);
  std::iota(p.begin(), p.end(), page.first_position);
  return p;
}

// Softmax over all pages in one pass (FlashAttention's running maximum): per head the largest
// logit so far, Σ exp(logit − max) in float64, and acc [h_q, cols] = Σ exp(logit − max)·row,
// rescaled whenever the maximum grows. No exp ever sees a positive argument.
class OnlineSoftmax {
 public:
  OnlineSoftmax(int h_q, int cols)
      : h_q_(h_q), cols_(cols), max_(h_q, kNegInf), sum_(h_q, 0.0),
        acc_(static_cast<size_t>(h_q) * cols, 0.0f) {}

  // logits [h_q, tokens] (already scaled) become the page's weights exp(logit − max), softcap
  // applied first; acc and the sums are rescaled to the new maximum.
  void Update(float* logits, int64_t tokens, double softcap) {
    for (int i = 0; i < h_q_; ++i) {
      float* row = logits + i * tokens;
      if (softcap > 0) {
        for (int64_t t = 0; t < tokens; ++t) {
          row[t] = static_cast<float>(softcap * std::tanh(row[t] / softcap));
        }
      }
      const float m = std::max(max_[i], *std::max_element(row, row + tokens));
      if (m != max_[i] && sum_[i] != 0.0) {
        const float alpha = std::exp(max_[i] - m);
        sum_[i] *= alpha;
        float* acc = &acc_[static_cast<size_t>(i) * cols_];
        for (int c = 0; c < cols_; ++c) acc[c] *= alpha;
      }
      double s = 0.0;
      for (int64_t t = 0; t < tokens; ++t) {
        row[t] = std::exp(row[t] - m);
        s += row[t];
      }
      sum_[i] += s;
      max_[i] = m;
    }
  }

  float* acc() { return acc_.data(); }

  // acc /= sum per head; lse = max + log(sum). REQUIRES at least one Update with tokens.
  void Finish(float* lse) {
    for (int i = 0; i < h_q_; ++i) {
      const float inv = static_cast<float>(1.0 / sum_[i]);
      float* acc = &acc_[static_cast<size_t>(i) * cols_];
      for (int c = 0; c < cols_; ++c) acc[c] *= inv;
      lse[i] = static_cast<float>(double{max_[i]} + std::log(sum_[i]));
    }
  }

 private:
  const int h_q_, cols_;
  std::vector<float> max_;
  std::vector<double> sum_;
  std::vector<float> acc_;
};

// scale·q, so that a GEMM yields scaled logits.
std::vector<float> ScaledQ(const float* q, int64_t n, double scale) {
  std::vector<float> out(n);
  for (int64_t i = 0; i < n; ++i) out[i] = static_cast<float>(scale * q[i]);
  return out;
}

// logits [h_q, T] = Q_g·K_gᵀ per KV head g, K in engine form [T, h_kv, d_k] with `ldk` floats
// per token; q head i reads KV head i / (h_q / h_kv).
void HeadLogits(int h_q, int h_kv, int d_k, const float* qs, const float* k, int ldk, int T,
                float* logits) {
  const int group = h_q / h_kv;
  for (int g = 0; g < h_kv; ++g) {
    Gemm(group, T, d_k, qs + static_cast<int64_t>(g) * group * d_k, d_k, k + g * d_k, ldk,
         /*trans_b=*/true, 0.0f, logits + static_cast<int64_t>(g) * group * T, T);
  }
}

// acc [h_q, d_v] += P_g·V_g per KV head g, V [T, h_kv, d_v] with `ldv` floats per token.
void HeadValues(int h_q, int h_kv, int d_v, const float* w, const float* v, int ldv, int T,
                float* acc) {
  const int group = h_q / h_kv;
  for (int g = 0; g < h_kv; ++g) {
    Gemm(group, d_v, T, w + static_cast<int64_t>(g) * group * T, T, v + g * d_v, ldv, false,
         1.0f, acc + static_cast<int64_t>(g) * group * d_v, d_v);
  }
}

// o[group g] = acc[group g] [G, w]·M[:, g·d_out, +d_out] + bias[g·d_out, +d_out], M [w, ·]
// with leading dimension ldm: the values' projection, applied once after the softmax.
void ProjectGroups(int h_q, int groups, int w, const float* acc, const float* m, int ldm,
                   int d_out, const float* bias, float* o) {
  const int group = h_q / groups;
  for (int g = 0; g < groups; ++g) {
    float* og = o + static_cast<int64_t>(g) * group * d_out;
    Gemm(group, d_out, w, acc + static_cast<int64_t>(g) * group * w, w, m + g * d_out, ldm, false,
         0.0f, og, d_out);
    AddRows(og, group, d_out, d_out, bias == nullptr ? nullptr : bias + g * d_out);
  }
}

int64_t TotalTokens(std::span<const StoredPage> pages) {
  int64_t n = 0;
  for (const StoredPage& p : pages) n += p.tokens;
  return n;
}

// No tokens at all: the identity of MergeAttention.
void WriteEmpty(const AttentionParams& p, int d_v, AttentionOut out) {
  std::fill(out.o, out.o + static_cast<int64_t>(p.h_q) * d_v, 0.0f);
  std::fill(out.lse, out.lse + p.h_q, kNegInf);
}

// What every Attend* checks first, `layer` being the mode's own check of its layer. Returns
// true when the call is done: no tokens at all, the empty result written.
absl::StatusOr<bool> Begin(const absl::Status& layer, int kv_heads, int d_v,
                           std::span<const StoredPage> pages, const float* q,
                           const AttentionParams& p, AttentionOut out) {
  if (!layer.ok()) return layer;
  if (absl::Status s = ValidateAttentionParams(p, kv_heads); !s.ok()) return s;
  if (absl::Status s = ValidateCall(pages, q, out); !s.ok()) return s;
  if (TotalTokens(pages) > 0) return false;
  WriteEmpty(p, d_v, out);
  return true;
}

// Runs `step(page, logits)` over the pages with tokens, page by page, with a logits buffer
// [h_q, tokens]; each step fills it, calls OnlineSoftmax::Update and adds its weighted rows.
template <class Step>
void Sweep(std::span<const StoredPage> pages, int h_q, Step step) {
  std::vector<float> logits;
  for (const StoredPage& page : pages) {
    if (page.tokens == 0) continue;
    logits.resize(static_cast<size_t>(h_q) * page.tokens);
    step(page, logits.data());
  }
}

}  // namespace

absl::Status AttendFull(const KvHeads& heads, std::span<const StoredPage> pages, const float* q,
                        const AttentionParams& p, AttentionOut out) {
  const absl::StatusOr<bool> done =
      Begin(heads.d_k > 0 && heads.d_v > 0
                ? absl::OkStatus()
                : absl::InvalidArgumentError("attention: head dims must be positive"),
            heads.h_kv, heads.d_v, pages, q, p, out);
  if (!done.ok() || *done) return done.status();
  const int ek = heads.h_kv * heads.d_k, ev = heads.h_kv * heads.d_v;
  const std::vector<float> qs = ScaledQ(q, int64_t{p.h_q} * heads.d_k, p.scale);
  OnlineSoftmax softmax(p.h_q, heads.d_v);
  std::vector<float> scratch;
  Sweep(pages, p.h_q, [&](const StoredPage& page, float* logits) {
    const int T = static_cast<int>(page.tokens);
    const float* kv = PageF32(page, ek + ev, &scratch);
    HeadLogits(p.h_q, heads.h_kv, heads.d_k, qs.data(), kv, ek, T, logits);
    softmax.Update(logits, T, p.softcap);
    HeadValues(p.h_q, heads.h_kv, heads.d_v, logits, kv + int64_t{T} * ek, ev, T, softmax.acc());
  });
  softmax.Finish(out.lse);
  std::memcpy(out.o, softmax.acc(), sizeof(float) * p.h_q * heads.d_v);
  return absl::OkStatus();
}

absl::Status AttendSlim(const KvCodecLayer& l, std::span<const StoredPage> pages, const float* q,
                        const AttentionParams& p, AttentionOut out) {
  const absl::StatusOr<bool> done =
      Begin(ValidateCodecLayer(l, CodecMode::kSlim), l.proj.h_kv, l.proj.d_h, pages, q,
            p, out);
  if (!done.ok() || *done) return done.status();
  const int e = l.proj.e(), dh = l.proj.d_h, h_kv = l.proj.h_kv;
  const std::vector<float> qs = ScaledQ(q, int64_t{p.h_q} * dh, p.scale);
  // acc_i = Σ_t s_i,t·K_raw,t: a whole e-row per q head, since W_KV mixes the heads.
  OnlineSoftmax softmax(p.h_q, e);
  std::vector<float> raw_scratch, rotated;
  Sweep(pages, p.h_q, [&](const StoredPage& page, float* logits) {
    const int T = static_cast<int>(page.tokens);
    const float* k_raw = PageF32(page, e, &raw_scratch);
    const float* k = k_raw;
    if (l.rope != nullptr) {  // the engine's K = R_p·K_raw, rebuilt in a page-sized scratch
      rotated.assign(k_raw, k_raw + int64_t{T} * e);
      l.rope->Apply(rotated.data(), T, h_kv, PagePositions(page).data(), /*inverse=*/false);
      k = rotated.data();
    }
    HeadLogits(p.h_q, h_kv, dh, qs.data(), k, e, T, logits);
    softmax.Update(logits, T, p.softcap);
    Gemm(p.h_q, e, T, logits, T, k_raw, e, false, 1.0f, softmax.acc(), e);
  });
  softmax.Finish(out.lse);
  // Σ_t s = 1, so o_i = acc_i·W_KV[:, g] + (b_V − b_K·W_KV)[g].
  std::vector<float> bias;
  if (l.proj.b_v != nullptr) bias.assign(l.proj.b_v, l.proj.b_v + e);
  internal::SubtractBiasTimes(l.proj.b_k, l.w_kv, e, e, &bias);
  ProjectGroups(p.h_q, h_kv, e, softmax.acc(), l.w_kv, e, dh, internal::OrNull(bias), out.o);
  return absl::OkStatus();
}

absl::Status AttendXcache(const KvCodecLayer& l, std::span<const StoredPage> pages,
                          const float* q, const AttentionParams& p, AttentionOut out) {
  const absl::StatusOr<bool> done =
      Begin(ValidateCodecLayer(l, CodecMode::kXcacheGivenX), l.proj.h_kv, l.proj.d_h, pages, q,
            p, out);
  if (!done.ok() || *done) return done.status();
  const int d = l.proj.d, e = l.proj.e(), dh = l.proj.d_h, h_kv = l.proj.h_kv;
  const std::vector<float> qs = ScaledQ(q, int64_t{p.h_q} * dh, p.scale);
  OnlineSoftmax softmax(p.h_q, d);  // acc_i = Σ_t s_i,t·x_t
  std::vector<float> x_scratch, k;
  Sweep(pages, p.h_q, [&](const StoredPage& page, float* logits) {
    const int T = static_cast<int>(page.tokens);
    const float* x = PageF32(page, d, &x_scratch);
    k.resize(int64_t{T} * e);
    Gemm(T, e, d, x, d, l.proj.w_k, e, false, 0.0f, k.data(), e);
    AddRows(k.data(), T, e, e, l.proj.b_k);
    if (l.rope != nullptr) {
      l.rope->Apply(k.data(), T, h_kv, PagePositions(page).data(), /*inverse=*/false);
    }
    HeadLogits(p.h_q, h_kv, dh, qs.data(), k.data(), e, T, logits);
    softmax.Update(logits, T, p.softcap);
    Gemm(p.h_q, d, T, logits, T, x, d, false, 1.0f, softmax.acc(), d);
  });
  softmax.Finish(out.lse);
  ProjectGroups(p.h_q, h_kv, d, softmax.acc(), l.proj.w_v, e, dh, l.proj.b_v, out.o);
  return absl::OkStatus();
}

absl::Status AttendProjected(const KvCodecLayer& l, std::span<const StoredPage> pages,
                             const float* q, const AttentionParams& p, AttentionOut out) {
  const absl::StatusOr<bool> done =
      Begin(ValidateCodecLayer(l, CodecMode::kProjected), l.proj.h_kv, l.proj.d_h, pages, q,
            p, out);
  if (!done.ok() || *done) return done.status();
  const int e = l.proj.e(), dh = l.proj.d_h, h_kv = l.proj.h_kv;
  const std::vector<float> qs = ScaledQ(q, int64_t{p.h_q} * dh, p.scale);
  OnlineSoftmax softmax(p.h_q, dh);
  std::vector<float> k, v;
  absl::Status status;
  Sweep(pages, p.h_q, [&](const StoredPage& page, float* logits) {
    const int T = static_cast<int>(page.tokens);
    k.resize(int64_t{T} * e);
    v.resize(int64_t{T} * e);
    // Validated above: decoding a validated layer cannot fail.
    status.Update(DecodeProjected(l, T, PagePositions(page).data(), page.data,
                                  {k.data(), DType::kF32}, {v.data(), DType::kF32}));
    HeadLogits(p.h_q, h_kv, dh, qs.data(), k.data(), e, T, logits);
    softmax.Update(logits, T, p.softcap);
    HeadValues(p.h_q, h_kv, dh, logits, v.data(), e, T, softmax.acc());
  });
  if (!status.ok()) return status;
  softmax.Finish(out.lse);
  std::memcpy(out.o, softmax.acc(), sizeof(float) * p.h_q * dh);
  return absl::OkStatus();
}

absl::Status AttendLatent(const LatentLayout& l, std::span<const StoredPage> pages,
                          const float* q, const AttentionParams& p, AttentionOut out) {
  const absl::StatusOr<bool> done =
      Begin(ValidateLatentLayout(l), l.heads, l.v_head_dim, pages, q, p, out);
  if (!done.ok() || *done) return done.status();
  const int H = l.heads, dk = l.k_head_dim, dn = l.d_nope(), dv = l.v_head_dim, dc = l.d_c;
  const int r = l.rope_dim, width = l.stored_elems(), group = p.h_q / H;
  // Absorbed queries: q̃_i = scale·W_UK,g·q_nope,i [d_c] and scale·q_rope,i [r].
  const std::vector<int> map = internal::LatentHeadMap(l);
  std::vector<float> q_lat(static_cast<size_t>(p.h_q) * dc), q_rope(static_cast<size_t>(p.h_q) * r);
  std::vector<float> q_nope(dn);
  for (int i = 0; i < p.h_q; ++i) {
    const int g = i / group;
    const float* qi = q + static_cast<int64_t>(i) * dk;
    for (int c = 0; c < dk; ++c) {
      const int src = map[g * dk + c];
      if (src >= 0) {
        q_nope[src] = qi[c];
      } else {
        q_rope[static_cast<size_t>(i) * r + (-src - 1)] = static_cast<float>(p.scale * qi[c]);
      }
    }
    if (dn > 0) {
      cblas_sgemv(CblasRowMajor, CblasNoTrans, dc, dn, static_cast<float>(p.scale),
                  l.w_uk + static_cast<int64_t>(g) * dn, H * dn, q_nope.data(), 1, 0.0f,
                  &q_lat[static_cast<size_t>(i) * dc], 1);
    }
  }
  OnlineSoftmax softmax(p.h_q, dc);  // acc_i = Σ_t s_i,t·c_t
  std::vector<float> scratch;
  Sweep(pages, p.h_q, [&](const StoredPage& page, float* logits) {
    const int T = static_cast<int>(page.tokens);
    const float* rows = PageF32(page, width, &scratch);
    Gemm(p.h_q, T, dc, q_lat.data(), dc, rows, width, true, 0.0f, logits, T);
    if (l.shared_rope) {
      Gemm(p.h_q, T, r, q_rope.data(), r, rows + dc, width, true, 1.0f, logits, T);
    } else {
      for (int g = 0; g < H; ++g) {
        Gemm(group, T, r, &q_rope[static_cast<size_t>(g) * group * r], r, rows + dc + g * r,
             width, true, 1.0f, logits + static_cast<int64_t>(g) * group * T, T);
      }
    }
    softmax.Update(logits, T, p.softcap);
    Gemm(p.h_q, dc, T, logits, T, rows, width, false, 1.0f, softmax.acc(), dc);
  });
  softmax.Finish(out.lse);
  ProjectGroups(p.h_q, H, dc, softmax.acc(), l.w_uv, H * dv, dv, nullptr, out.o);
  return absl::OkStatus();
}

void MergeAttention(int h_q, int d_v, const float* o1, const float* lse1, const float* o2,
                    const float* lse2, float* o, float* lse) {
  for (int i = 0; i < h_q; ++i) {
    const double a = lse1[i], b = lse2[i];
    const double m = std::max(a, b);
    const int64_t at = static_cast<int64_t>(i) * d_v;
    if (m == -std::numeric_limits<double>::infinity()) {
      std::fill(o + at, o + at + d_v, 0.0f);
      lse[i] = kNegInf;
      continue;
    }
    const double w1 = std::exp(a - m), w2 = std::exp(b - m), sum = w1 + w2;
    for (int j = 0; j < d_v; ++j) {
      // A side with weight 0 contributes nothing, even if its o is not finite.
      const double x = (w1 > 0 ? w1 * o1[at + j] : 0.0) + (w2 > 0 ? w2 * o2[at + j] : 0.0);
      o[at + j] = static_cast<float>(x / sum);
    }
    lse[i] = static_cast<float>(m + std::log(sum));
  }
}

}  // namespace slimkv::kernels
