#include "kernels/attention_ref.h"

#include <cmath>
#include <limits>
#include <vector>

#include "absl/strings/str_cat.h"
#include "kernels/internal/codec_util.h"

namespace slimkv::kernels {

absl::Status ValidateAttentionParams(const AttentionParams& p, int kv_heads) {
  if (kv_heads <= 0) {
    return absl::InvalidArgumentError(absl::StrCat("attention: kv heads ", kv_heads, " <= 0"));
  }
  if (p.h_q <= 0 || p.h_q % kv_heads != 0) {
    return absl::InvalidArgumentError(absl::StrCat("attention: h_q ", p.h_q,
                                                   " is not a positive multiple of the ",
                                                   kv_heads, " KV heads"));
  }
  if (!std::isfinite(p.scale)) return absl::InvalidArgumentError("attention: scale not finite");
  if (!std::isfinite(p.softcap) || p.softcap < 0) {
    return absl::InvalidArgumentError("attention: softcap must be finite and >= 0");
  }
  return absl::OkStatus();
}

absl::Status AttendRef(const KvHeads& heads, int64_t tokens, const double* k, const double* v,
                       const double* q, const AttentionParams& p, double* o, double* lse) {
  if (absl::Status s = ValidateAttentionParams(p, heads.h_kv); !s.ok()) return s;
  if (heads.d_k <= 0 || heads.d_v <= 0 || tokens < 0 || q == nullptr || o == nullptr ||
      lse == nullptr || (tokens > 0 && (k == nullptr || v == nullptr))) {
    return absl::InvalidArgumentError("attention: bad head dims, tokens or buffers");
  }
  const int group = p.h_q / heads.h_kv, dk = heads.d_k, dv = heads.d_v;
  std::vector<double> logits(tokens);
  for (int i = 0; i < p.h_q; ++i) {
    const int g = i / group;
    const double* qi = q + static_cast<int64_t>(i) * dk;
    double* oi = o + static_cast<int64_t>(i) * dv;
    for (int j = 0; j < dv; ++j) oi[j] = 0.0;
    if (tokens == 0) {
      lse[i] = -std::numeric_limits<double>::infinity();
      continue;
    }
    double m = -std::numeric_limits<double>::infinity();
    for (int64_t t = 0; t < tokens; ++t) {
      const double* kt = k + (t * heads.h_kv + g) * dk;
      double dot = 0.0;
      for (int j = 0; j < dk; ++j) dot += qi[j] * kt[j];
      double logit = p.scale * dot;
      if (p.softcap > 0) logit = p.softcap * std::tanh(logit / p.softcap);
      logits[t] = logit;
      m = std::max(m, logit);
    }
    double sum = 0.0;
    for (int64_t t = 0; t < tokens; ++t) sum += std::exp(logits[t] - m);
    lse[i] = m + std::log(sum);
    for (int64_t t = 0; t < tokens; ++t) {
      const double w = std::exp(logits[t] - lse[i]);
      const double* vt = v + (t * heads.h_kv + g) * dv;
      for (int j = 0; j < dv; ++j) oi[j] += w * vt[j];
    }
  }
  return absl::OkStatus();
}

}  // namespace slimkv::kernels
