#include "kernels/codec_layer.h"

#include <vector>

#include "absl/strings/str_cat.h"

namespace slimkv::kernels {

absl::Status ValidateCodecLayer(const KvCodecLayer& l, CodecMode m) {
  // Only xcache from x multiplies by W_K, W_V; the others may be handed a view without them.
  if (absl::Status s = m == CodecMode::kXcacheGivenX ? ValidateKvProjection(l.proj)
                                                      : ValidateKvGeometry(l.proj);
      !s.ok()) {
    return s;
  }
  if (m == CodecMode::kFull) return absl::OkStatus();
  if (l.rope != nullptr && l.rope->params().head_dim != l.proj.d_h) {
    return absl::InvalidArgumentError(absl::StrCat("codec layer: rope head_dim ",
                                                   l.rope->params().head_dim,
                                                   " != d_h ", l.proj.d_h));
  }
  const int d = l.proj.d, e = l.proj.e();
  switch (m) {
    case CodecMode::kSlim:
      if (e < d) {
        return absl::FailedPreconditionError(
            absl::StrCat("slim needs e ≥ d; layer has e=", e, " < d=", d));
      }
      if (l.w_kv == nullptr) return absl::FailedPreconditionError("slim: W_KV not computed");
      break;
    case CodecMode::kXcacheFromKv:
      if (l.pinv == nullptr) {
        return absl::FailedPreconditionError("xcache from K,V: pinv([W_K W_V]) not computed");
      }
      break;
    case CodecMode::kProjected: {
      if (l.n_kept < 0 || l.n_kept > e || (l.n_kept > 0 && l.kept_k_cols == nullptr)) {
        return absl::InvalidArgumentError("projected: kept_k_cols/n_kept inconsistent");
      }
      for (int i = 0; i < l.n_kept; ++i) {
        if (l.kept_k_cols[i] < 0 || l.kept_k_cols[i] >= e ||
            (i > 0 && l.kept_k_cols[i] <= l.kept_k_cols[i - 1])) {
          return absl::InvalidArgumentError("projected: kept_k_cols must be ascending in [0, e)");
        }
      }
      if (l.basis == nullptr || l.rank <= 0 || l.rank > l.n_proj()) {
        return absl::FailedPreconditionError(
            absl::StrCat("projected: basis missing or rank ", l.rank, " outside [1, ",
                         l.n_proj(), "]"));
      }
      break;
    }
    default:
      break;
  }
  return absl::OkStatus();
}

absl::Status ValidateLatentLayout(const LatentLayout& l) {
  if (l.heads <= 0 || l.d_c <= 0 || l.k_head_dim <= 0 || l.v_head_dim <= 0 || l.rope_dim < 0 ||
      l.rope_dim > l.k_head_dim) {
    return absl::InvalidArgumentError(absl::StrCat(
        "latent layout: heads=", l.heads, " d_c=", l.d_c, " k_head_dim=", l.k_head_dim,
        " v_head_dim=", l.v_head_dim, " rope_dim=", l.rope_dim, " out of range"));
  }
  if (l.w_uk == nullptr || l.w_uv == nullptr) {
    return absl::InvalidArgumentError("latent layout: w_uk and w_uv are required");
  }
  if (l.rope_cols != nullptr) {
    for (int h = 0; h < l.heads; ++h) {
      std::vector<bool> seen(l.k_head_dim, false);
      for (int j = 0; j < l.rope_dim; ++j) {
        const int c = l.rope_cols[h * l.rope_dim + j];
        if (c < 0 || c >= l.k_head_dim || seen[c]) {
          return absl::InvalidArgumentError(
              absl::StrCat("latent layout: rope_cols of head ", h, " invalid or repeated"));
        }
        seen[c] = true;
      }
    }
  }
  return absl::OkStatus();
}

}  // namespace slimkv::kernels
