#include "kernels/internal/blas_util.h"

#include <cblas.h>

#include "kernels/internal/codec_util.h"

namespace slimkv::kernels::internal {

F32In::F32In(ConstTensor t, int64_t n) {
  if (t.dtype == DType::kF32) {
    ptr_ = static_cast<const float*>(t.data);
  } else {
    copy_ = LoadF32(t, n);
    ptr_ = copy_.data();
  }
}

void Gemm(int64_t m, int n, int k, const float* a, int lda, const float* b, int ldb, bool trans_b,
          float beta, float* c, int ldc) {
  if (m == 0 || n == 0) return;
  cblas_sgemm(CblasRowMajor, CblasNoTrans, trans_b ? CblasTrans : CblasNoTrans,
              static_cast<int>(m), n, k, 1.0f, a, lda, b, ldb, beta, c, ldc);
}

void AddRows(float* m, int64_t rows, int cols, int ld, const float* bias) {
  if (bias == nullptr) return;
  for (int64_t r = 0; r < rows; ++r) {
    float* row = m + r * ld;
    for (int c = 0; c < cols; ++c) row[c] += bias[c];
  }
}

void SubtractBiasTimes(const float* bias, const float* m, int n_in, int n_out,
                       std::vector<float>* acc) {
  if (bias == nullptr) return;
  if (acc->empty()) acc->assign(n_out, 0.0f);
  cblas_sgemv(CblasRowMajor, CblasTrans, n_in, n_out, -1.0f, m, n_out, bias, 1, 1.0f,
              acc->data(), 1);
}

}  // namespace slimkv::kernels::internal
