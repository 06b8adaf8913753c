#include "kernels/kv_projection.h"

#include "absl/strings/str_cat.h"

namespace slimkv::kernels {

absl::Status ValidateKvGeometry(const KvProjection& w) {
  if (w.d <= 0 || w.h_kv <= 0 || w.d_h <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("kv projection: d=", w.d, " h_kv=", w.h_kv, " d_h=", w.d_h,
                     " must all be positive"));
  }
  return absl::OkStatus();
}

absl::Status ValidateKvProjection(const KvProjection& w) {
  if (absl::Status s = ValidateKvGeometry(w); !s.ok()) return s;
  if (w.w_k == nullptr) return absl::InvalidArgumentError("kv projection: w_k missing");
  if (w.w_v == nullptr) return absl::InvalidArgumentError("kv projection: w_v missing");
  return absl::OkStatus();
}

}  // namespace slimkv::kernels
