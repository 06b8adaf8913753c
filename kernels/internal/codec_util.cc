#include "kernels/internal/codec_util.h"

#include <cmath>

#include "absl/strings/str_cat.h"
#include "kernels/rope_retention.h"

namespace slimkv::kernels::internal {

std::vector<float> LoadF32(ConstTensor t, int64_t n) {
  std::vector<float> out(n);
  ConvertDType(t.data, t.dtype, out.data(), DType::kF32, n);
  return out;
}

std::vector<double> LoadF64(ConstTensor t, int64_t n) {
  const std::vector<float> f = LoadF32(t, n);  // exact: every KV dtype widens to float
  return std::vector<double>(f.begin(), f.end());
}

void StoreF32(const float* src, int64_t n, MutableTensor t) {
  ConvertDType(src, DType::kF32, t.data, t.dtype, n);
}

void StoreF64(const double* src, int64_t n, MutableTensor t) {
  // double → float → dtype rounds twice; for fp16/bf16 the double-rounding error is far below
  // the tolerance the reference is compared with.
  const std::vector<float> f(src, src + n);
  StoreF32(f.data(), n, t);
}

std::vector<int> ProjectedKColumns(const KvCodecLayer& l) {
  return ComplementColumns(std::vector<int>(l.kept_k_cols, l.kept_k_cols + l.n_kept), l.proj.e());
}

std::vector<int> LatentHeadMap(const LatentLayout& l) {
  std::vector<int> map(static_cast<size_t>(l.heads) * l.k_head_dim, 0);
  for (int h = 0; h < l.heads; ++h) {
    int* row = map.data() + static_cast<size_t>(h) * l.k_head_dim;
    for (int j = 0; j < l.rope_dim; ++j) row[LatentRopeCol(l, h, j)] = -(j + 1);
    int nope = 0;
    for (int i = 0; i < l.k_head_dim; ++i) {
      if (row[i] >= 0) row[i] = nope++;
    }
  }
  return map;
}

}  // namespace slimkv::kernels::internal
