// Float32 helpers of the CPU fast paths (codecs, attention) on top of OpenBLAS: dtype views,
// row-major GEMM, bias rows. Internal to kernels/; built only where BLAS is present.
//
// Thread-safety: stateless functions; an F32In is used by one thread.
#pragma once

#include <cstdint>
#include <vector>

#include "kernels/codec_layer.h"

namespace slimkv::kernels::internal {

// An input as float32: the tensor itself when it already is, else a converted copy.
class F32In {
 public:
  F32In(ConstTensor t, int64_t n);
  const float* get() const { return ptr_; }

 private:
  std::vector<float> copy_;
  const float* ptr_;
};

// C[m, n] = A[m, k]·op(B) + beta·C, row-major; op(B) = B [k, n] or, with trans_b, Bᵀ of B [n, k].
// Nothing when m or n is 0.
void Gemm(int64_t m, int n, int k, const float* a, int lda, const float* b, int ldb, bool trans_b,
          float beta, float* c, int ldc);

// Adds `bias` [cols] (if any) to every row of m [rows, cols] with leading dimension ld.
void AddRows(float* m, int64_t rows, int cols, int ld, const float* bias);

// *acc −= bias·M for M [n_in, n_out]; a null bias changes nothing, and an empty *acc starts at
// zero. An empty result means "no bias at all".
void SubtractBiasTimes(const float* bias, const float* m, int n_in, int n_out,
                       std::vector<float>* acc);

inline const float* OrNull(const std::vector<float>& v) { return v.empty() ? nullptr : v.data(); }

}  // namespace slimkv::kernels::internal
