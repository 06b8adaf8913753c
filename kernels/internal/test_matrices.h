// Synthetic matrices and small dense helpers for the kernels' tests: Gaussian and orthogonal
// matrices, weights of a chosen condition number, dtype round trips, a typed buffer, the
// relative Frobenius error and a reference matmul. Test-only; double precision throughout.
//
// Thread-safety: stateless functions.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

#include "kernels/codec_layer.h"
#include "kernels/dtype.h"
#include "kernels/rope.h"

namespace slimkv::kernels::test {

using Mat = std::vector<double>;  // row-major, shape implied

inline Mat Gaussian(std::mt19937_64& rng, size_t n) {
  std::normal_distribution<double> g;
  Mat m(n);
  for (double& v : m) v = g(rng);
  return m;
}

// Random orthogonal n×n (Gram–Schmidt, twice for accuracy).
inline Mat Orthogonal(std::mt19937_64& rng, int n) {
  Mat q = Gaussian(rng, static_cast<size_t>(n) * n);  // columns are the vectors
  for (int j = 0; j < n; ++j) {
    for (int pass = 0; pass < 2; ++pass) {
      for (int i = 0; i < j; ++i) {
        double dot = 0;
        for (int r = 0; r < n; ++r) dot += q[r * n + i] * q[r * n + j];
        for (int r = 0; r < n; ++r) q[r * n + j] -= dot * q[r * n + i];
      }
    }
    double norm = 0;
    for (int r = 0; r < n; ++r) norm += q[r * n + j] * q[r * n + j];
    for (int r = 0; r < n; ++r) q[r * n + j] /= std::sqrt(norm);
  }
  return q;
}

// rows×cols = U·diag(σ)·Vᵀ with σ log-spaced from 1 down to 1/kappa.
inline std::vector<float> Conditioned(std::mt19937_64& rng, int rows, int cols, double kappa) {
  const int m = std::min(rows, cols);
  const Mat u = Orthogonal(rng, rows), v = Orthogonal(rng, cols);
  std::vector<float> w(static_cast<size_t>(rows) * cols);
  for (int r = 0; r < rows; ++r) {
    for (int c = 0; c < cols; ++c) {
      double acc = 0;
      for (int i = 0; i < m; ++i) {
        const double s = m == 1 ? 1.0 : std::pow(kappa, -static_cast<double>(i) / (m - 1));
        acc += u[r * rows + i] * s * v[c * cols + i];
      }
      w[static_cast<size_t>(r) * cols + c] = static_cast<float>(acc);
    }
  }
  return w;
}

// RoPE of a test geometry: theta 10000, scaling (when any) by 4 from 512 positions, dynamic NTK
// at 2048.
inline RopeParams TestRope(int head_dim, int rotary_dim, RopePairing pairing,
                           RopeScalingType scaling) {
  RopeParams p;
  p.theta = 10000;
  p.head_dim = head_dim;
  p.rotary_dim = rotary_dim;
  p.pairing = pairing;
  p.scaling.type = scaling;
  p.scaling.factor = 4.0;
  p.scaling.original_max_position_embeddings = 512;
  p.scaling.dynamic_seq_len = 2048;
  return p;
}

inline std::vector<float> ToF(const Mat& m) { return std::vector<float>(m.begin(), m.end()); }

// Values as the engine holds them in `t`, widened back to double.
inline Mat RoundTo(const Mat& m, DType t) {
  std::vector<float> f = ToF(m);
  std::vector<uint16_t> h(f.size());
  if (t == DType::kF32) return Mat(f.begin(), f.end());
  ConvertDType(f.data(), DType::kF32, h.data(), t, f.size());
  ConvertDType(h.data(), t, f.data(), DType::kF32, f.size());
  return Mat(f.begin(), f.end());
}

// A buffer of n elements of dtype t.
struct Buf {
  Buf(DType t, size_t n) : dtype(t), bytes(n * DTypeSize(t)), n(n) {}
  static Buf From(const Mat& m, DType t) {
    Buf b(t, m.size());
    const std::vector<float> f = ToF(m);
    ConvertDType(f.data(), DType::kF32, b.bytes.data(), t, m.size());
    return b;
  }
  ConstTensor in() const { return {bytes.data(), dtype}; }
  MutableTensor out() { return {bytes.data(), dtype}; }
  Mat values() const {
    std::vector<float> f(n);
    ConvertDType(bytes.data(), dtype, f.data(), DType::kF32, n);
    return Mat(f.begin(), f.end());
  }
  DType dtype;
  std::vector<unsigned char> bytes;
  size_t n;
};

inline double RelFro(const Mat& got, const Mat& want) {
  double num = 0, den = 0;
  for (size_t i = 0; i < want.size(); ++i) {
    num += (got[i] - want[i]) * (got[i] - want[i]);
    den += want[i] * want[i];
  }
  return std::sqrt(num / den);
}

// out[rows, n] = a[rows, k]·b[k, n] + bias.
inline Mat MatMul(const Mat& a, const float* b, int rows, int k, int n, const float* bias = nullptr) {
  Mat out(static_cast<size_t>(rows) * n);
  for (int r = 0; r < rows; ++r) {
    for (int j = 0; j < n; ++j) {
      double acc = bias ? bias[j] : 0.0;
      for (int i = 0; i < k; ++i) acc += a[r * k + i] * b[static_cast<size_t>(i) * n + j];
      out[static_cast<size_t>(r) * n + j] = acc;
    }
  }
  return out;
}

}  // namespace slimkv::kernels::test
