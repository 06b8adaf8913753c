#include "kernels/layer_factors.h"

#include <cblas.h>
#include <lapacke.h>

#include <algorithm>
#include <cmath>
#include <limits>

#include "absl/strings/str_cat.h"

namespace slimkv::kernels {
namespace {

constexpr double kEps = std::numeric_limits<double>::epsilon();

// Columns `cols` of the row-major [rows, ld] float matrix `src`, as float64 [rows, cols.size()].
std::vector<double> Gather(const float* src, int rows, int ld, const std::vector<int>& cols) {
  std::vector<double> out(static_cast<size_t>(rows) * cols.size());
  for (int r = 0; r < rows; ++r) {
    for (size_t c = 0; c < cols.size(); ++c) {
      out[r * cols.size() + c] = src[static_cast<size_t>(r) * ld + cols[c]];
    }
  }
  return out;
}

std::vector<int> AllColumns(int n) {
  std::vector<int> cols(n);
  for (int i = 0; i < n; ++i) cols[i] = i;
  return cols;
}

std::vector<float> ToFloat(const std::vector<double>& v) {
  return std::vector<float>(v.begin(), v.end());
}

// Singular values of the row-major [m, n] matrix (destroyed), descending.
absl::StatusOr<std::vector<double>> SingularValues(std::vector<double> a, int m, int n) {
  std::vector<double> s(std::min(m, n));
  // LAPACKE checks the leading dimensions even though no vectors are computed.
  const lapack_int info = LAPACKE_dgesdd(LAPACK_ROW_MAJOR, 'N', m, n, a.data(), n, s.data(),
                                         nullptr, m, nullptr, n);
  if (info != 0) return absl::InternalError(absl::StrCat("dgesdd failed, info=", info));
  return s;
}

// Gram matrix of the row-major [m, n] matrix on its smaller side: A·Aᵀ [m, m] when m ≤ n,
// else Aᵀ·A [n, n]. Upper triangle only (row-major), which is what dsyevd reads.
std::vector<double> Gram(const std::vector<double>& a, int m, int n) {
  const int k = std::min(m, n);
  std::vector<double> g(static_cast<size_t>(k) * k, 0.0);
  cblas_dsyrk(CblasRowMajor, CblasUpper, m <= n ? CblasNoTrans : CblasTrans, k, m <= n ? n : m,
              1.0, a.data(), n, 0.0, g.data(), k);
  return g;
}

// √ of the eigenvalues of the symmetric [k, k] `g` (upper triangle; destroyed), descending.
// Two-stage tridiagonalization: mostly BLAS-3, about 1.5× faster than dsyevd on 4096².
absl::StatusOr<std::vector<double>> GramSingularValues(std::vector<double> g, int k) {
  std::vector<double> w(k);
  const lapack_int info =
      LAPACKE_dsyevd_2stage(LAPACK_ROW_MAJOR, 'N', 'U', k, g.data(), k, w.data());
  if (info != 0) return absl::InternalError(absl::StrCat("dsyevd_2stage failed, info=", info));
  std::vector<double> s(k);
  for (int i = 0; i < k; ++i) s[i] = std::sqrt(std::max(w[k - 1 - i], 0.0));
  return s;
}

// True when the Gram route resolved σ_min: κ ≤ max_kappa (λ ratio ≥ 1/κ²).
bool GramResolves(const std::vector<double>& s, double max_kappa) {
  return !s.empty() && s.back() > 0.0 && s.front() <= max_kappa * s.back();
}

// Singular values of the row-major [m, n] `a`, by the Gram route when it resolves them
// (kGramMaxKappaValues), else dgesdd. `gram`, when given, is a precomputed Gram(a, m, n).
absl::StatusOr<std::vector<double>> SingularValuesAuto(std::vector<double> a, int m, int n,
                                                       SvdMethod method,
                                                       std::vector<double> gram = {}) {
  if (method == SvdMethod::kAuto) {
    if (gram.empty()) gram = Gram(a, m, n);
    absl::StatusOr<std::vector<double>> s = GramSingularValues(std::move(gram), std::min(m, n));
    if (!s.ok() || GramResolves(*s, kGramMaxKappaValues)) return s;
  }
  return SingularValues(std::move(a), m, n);
}

// Thin SVD of the row-major [d, n] `a` through the eigendecomposition of its smaller Gram
// matrix, into out->sigma/u/vt (sized by the caller). False when the eigensolver fails or
// σ_max/σ_min > kGramMaxKappaVectors: the small singular vectors would be inaccurate, and the
// caller falls back to dgesdd.
// `q` is Gram(a, d, n) (destroyed); out->sigma, u, vt sized by the caller.
bool GramSvd(const std::vector<double>& a, int d, int n, std::vector<double> q, JointSvd* out) {
  const int k = std::min(d, n);
  std::vector<double> w(k);  // q holds the eigenvectors on return, columns ascending
  if (LAPACKE_dsyevd(LAPACK_ROW_MAJOR, 'V', 'U', k, q.data(), k, w.data()) != 0) return false;
  for (int i = 0; i < k; ++i) out->sigma[i] = std::sqrt(std::max(w[k - 1 - i], 0.0));
  if (!GramResolves(out->sigma, kGramMaxKappaVectors)) return false;
  // Descending order: column i of the result is column k-1-i of q.
  std::vector<double> side(static_cast<size_t>(k) * k);  // [k, k], column i = vector i
  for (int r = 0; r < k; ++r) {
    for (int i = 0; i < k; ++i) side[static_cast<size_t>(r) * k + i] = q[static_cast<size_t>(r) * k + k - 1 - i];
  }
  if (d <= n) {
    // G = A·Aᵀ: the eigenvectors are U [d, k]; Vt = Σ⁻¹·Uᵀ·A [k, n].
    out->u = std::move(side);
    cblas_dgemm(CblasRowMajor, CblasTrans, CblasNoTrans, k, n, d, 1.0, out->u.data(), k,
                a.data(), n, 0.0, out->vt.data(), n);
    for (int l = 0; l < k; ++l) {
      cblas_dscal(n, 1.0 / out->sigma[l], out->vt.data() + static_cast<size_t>(l) * n, 1);
    }
  } else {
    // G = Aᵀ·A: the eigenvectors are V [n, k], so Vt = their transpose; U = A·V·Σ⁻¹ [d, k].
    for (int i = 0; i < k; ++i) {
      for (int c = 0; c < n; ++c) out->vt[static_cast<size_t>(i) * n + c] = side[static_cast<size_t>(c) * k + i];
    }
    cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, d, k, n, 1.0, a.data(), n,
                side.data(), k, 0.0, out->u.data(), k);
    for (int r = 0; r < d; ++r) {
      for (int l = 0; l < k; ++l) out->u[static_cast<size_t>(r) * k + l] /= out->sigma[l];
    }
  }
  return true;
}

double Kappa(const std::vector<double>& s) {
  if (s.empty() || s.back() <= 0.0) return std::numeric_limits<double>::infinity();
  return s.front() / s.back();
}

}  // namespace

absl::StatusOr<std::vector<float>> ComputeSlimMatrix(const KvProjection& w) {
  if (absl::Status s = ValidateKvProjection(w); !s.ok()) return s;
  const int d = w.d, e = w.e();
  if (e < d) {
    return absl::FailedPreconditionError(absl::StrCat(
        "slim needs rank(W_K) = d, but e = h_kv·d_h = ", e, " < d = ", d,
        ": V is not a function of K (GQA); use xcache or full"));
  }
  const std::vector<int> all = AllColumns(e);
  std::vector<double> a = Gather(w.w_k, d, e, all);
  if (e == d) {
    std::vector<double> b = Gather(w.w_v, d, e, all);
    const double anorm = LAPACKE_dlange(LAPACK_ROW_MAJOR, '1', d, d, a.data(), d);
    std::vector<lapack_int> ipiv(d);
    lapack_int info = LAPACKE_dgetrf(LAPACK_ROW_MAJOR, d, d, a.data(), d, ipiv.data());
    double rcond = 0.0;
    if (info == 0) info = LAPACKE_dgecon(LAPACK_ROW_MAJOR, '1', d, a.data(), d, anorm, &rcond);
    if (info != 0 || rcond <= d * kEps) {
      return absl::FailedPreconditionError(absl::StrCat(
          "slim: W_K is numerically singular (LU info=", info, ", rcond=", rcond, ")"));
    }
    info = LAPACKE_dgetrs(LAPACK_ROW_MAJOR, 'N', d, e, a.data(), d, ipiv.data(), b.data(), e);
    if (info != 0) return absl::InternalError(absl::StrCat("dgetrs failed, info=", info));
    return ToFloat(b);
  }
  // Wide: W_K·X = W_V is under-determined; dgels returns the minimum-norm X = W_K^+·W_V in the
  // first e rows of an [e, e] right-hand side whose first d rows hold W_V.
  std::vector<double> b(static_cast<size_t>(e) * e, 0.0);
  for (int r = 0; r < d; ++r) {
    for (int c = 0; c < e; ++c) b[static_cast<size_t>(r) * e + c] = w.w_v[static_cast<size_t>(r) * e + c];
  }
  const lapack_int info =
      LAPACKE_dgels(LAPACK_ROW_MAJOR, 'N', d, e, e, a.data(), e, b.data(), e);
  if (info > 0) {
    return absl::FailedPreconditionError(
        absl::StrCat("slim: W_K does not have full row rank (dgels info=", info, ")"));
  }
  if (info < 0) return absl::InternalError(absl::StrCat("dgels failed, info=", info));
  return ToFloat(b);
}

absl::StatusOr<JointSvd> ComputeJointSvd(const KvProjection& w, const std::vector<int>& k_cols,
                                         SvdMethod method) {
  if (absl::Status s = ValidateKvProjection(w); !s.ok()) return s;
  const int d = w.d, e = w.e();
  JointSvd out;
  out.d = d;
  out.k_cols = k_cols.empty() ? AllColumns(e) : k_cols;
  for (size_t i = 0; i < out.k_cols.size(); ++i) {
    if (out.k_cols[i] < 0 || out.k_cols[i] >= e || (i > 0 && out.k_cols[i] <= out.k_cols[i - 1])) {
      return absl::InvalidArgumentError("joint svd: k_cols must be ascending and in [0, e)");
    }
  }
  const int nk = static_cast<int>(out.k_cols.size());
  out.n = nk + e;
  const int n = out.n, k = std::min(d, n);
  std::vector<double> a(static_cast<size_t>(d) * n);
  for (int r = 0; r < d; ++r) {
    for (int c = 0; c < nk; ++c) a[static_cast<size_t>(r) * n + c] = w.w_k[static_cast<size_t>(r) * e + out.k_cols[c]];
    for (int c = 0; c < e; ++c) a[static_cast<size_t>(r) * n + nk + c] = w.w_v[static_cast<size_t>(r) * e + c];
  }
  out.sigma.resize(k);
  out.u.resize(static_cast<size_t>(d) * k);
  out.vt.resize(static_cast<size_t>(k) * n);
  if (method == SvdMethod::kAuto && GramSvd(a, d, n, Gram(a, d, n), &out)) return out;
  const lapack_int info = LAPACKE_dgesdd(LAPACK_ROW_MAJOR, 'S', d, n, a.data(), n,
                                         out.sigma.data(), out.u.data(), k, out.vt.data(), n);
  if (info != 0) return absl::InternalError(absl::StrCat("dgesdd failed, info=", info));
  return out;
}

absl::StatusOr<std::vector<float>> JointPinv(const JointSvd& svd) {
  const int d = svd.d, n = svd.n, k = static_cast<int>(svd.sigma.size());
  if (n < d) {
    return absl::FailedPreconditionError(absl::StrCat(
        "xcache recovery needs 2e ≥ d, but [W_K W_V] has ", n, " columns < d = ", d));
  }
  if (svd.sigma.back() <= d * kEps * svd.sigma.front()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "xcache recovery: [W_K W_V] is rank-deficient (sigma_min=", svd.sigma.back(),
        ", sigma_max=", svd.sigma.front(), ")"));
  }
  std::vector<double> scaled = svd.vt;  // row l scaled by 1/sigma_l
  for (int l = 0; l < k; ++l) {
    cblas_dscal(n, 1.0 / svd.sigma[l], scaled.data() + static_cast<size_t>(l) * n, 1);
  }
  std::vector<double> p(static_cast<size_t>(n) * d);
  cblas_dgemm(CblasRowMajor, CblasTrans, CblasTrans, n, d, k, 1.0, scaled.data(), n,
              svd.u.data(), k, 0.0, p.data(), d);
  return ToFloat(p);
}

absl::StatusOr<int> SelectRank(const std::vector<double>& sigma, const RankRule& r) {
  const bool by_rank = r.fixed_rank > 0, by_energy = r.energy != 0.0;
  if (by_rank == by_energy) {
    return absl::InvalidArgumentError("rank rule: set exactly one of fixed_rank, energy");
  }
  const int k = static_cast<int>(sigma.size());
  if (by_rank) return std::min(r.fixed_rank, k);
  if (!(r.energy > 0.0 && r.energy <= 1.0)) {
    return absl::InvalidArgumentError(absl::StrCat("rank rule: energy ", r.energy,
                                                   " outside (0, 1]"));
  }
  double total = 0.0;
  for (double s : sigma) total += s * s;
  double acc = 0.0;
  for (int i = 0; i < k; ++i) {
    acc += sigma[i] * sigma[i];
    if (acc >= r.energy * total * (1.0 - 4 * kEps)) return i + 1;
  }
  return k;
}

std::vector<float> JointBasis(const JointSvd& svd, int R) {
  std::vector<float> b(static_cast<size_t>(svd.n) * R);
  for (int i = 0; i < svd.n; ++i) {
    for (int r = 0; r < R; ++r) {
      b[static_cast<size_t>(i) * R + r] = static_cast<float>(svd.vt[static_cast<size_t>(r) * svd.n + i]);
    }
  }
  return b;
}

double TailNorm(const std::vector<double>& sigma, int R) {
  double acc = 0.0;
  for (size_t i = R; i < sigma.size(); ++i) acc += sigma[i] * sigma[i];
  return std::sqrt(acc);
}

double UnitRoundoff(DType t) {
  switch (t) {
    case DType::kF32: return 0x1p-24;
    case DType::kF16: return 0x1p-11;
    case DType::kBF16: return 0x1p-8;
  }
  return 1.0;
}

absl::StatusOr<Conditioning> AnalyzeConditioning(const KvProjection& w, SvdMethod method,
                                                 JointSvd* joint_svd) {
  if (joint_svd != nullptr) *joint_svd = JointSvd{};
  if (absl::Status s = ValidateKvProjection(w); !s.ok()) return s;
  const int d = w.d, e = w.e();
  const std::vector<int> all = AllColumns(e);
  std::vector<double> wk = Gather(w.w_k, d, e, all), wv = Gather(w.w_v, d, e, all);
  std::vector<double> joint(static_cast<size_t>(d) * 2 * e);
  for (int r = 0; r < d; ++r) {
    for (int col = 0; col < e; ++col) {
      joint[static_cast<size_t>(r) * 2 * e + col] = wk[static_cast<size_t>(r) * e + col];
      joint[static_cast<size_t>(r) * 2 * e + e + col] = wv[static_cast<size_t>(r) * e + col];
    }
  }
  // When d ≤ e all three Gram matrices are d×d and [W_K W_V]·[W_K W_V]ᵀ = G_K + G_V: one
  // dsyrk (the largest) saved.
  std::vector<double> gk, gv, gkv;
  if (method == SvdMethod::kAuto) {
    gk = Gram(wk, d, e);
    gv = Gram(wv, d, e);
    if (d <= e) {
      gkv = gk;
      for (size_t i = 0; i < gkv.size(); ++i) gkv[i] += gv[i];
    }
  }
  Conditioning c;
  absl::StatusOr<std::vector<double>> sk = SingularValuesAuto(std::move(wk), d, e, method, std::move(gk));
  if (!sk.ok()) return sk.status();
  absl::StatusOr<std::vector<double>> sv = SingularValuesAuto(std::move(wv), d, e, method, std::move(gv));
  if (!sv.ok()) return sv.status();
  if (joint_svd != nullptr && !gkv.empty()) {
    // One eigensolve with vectors of G_K + G_V: σ_KV and the joint SVD together.
    JointSvd& j = *joint_svd;
    j.d = d;
    j.n = 2 * e;
    j.k_cols = all;
    j.sigma.resize(d);
    j.u.resize(static_cast<size_t>(d) * d);
    j.vt.resize(static_cast<size_t>(d) * 2 * e);
    if (GramSvd(joint, d, 2 * e, gkv, &j)) {
      c.kappa_k = Kappa(*sk);
      c.kappa_v = Kappa(*sv);
      c.kappa_kv = Kappa(j.sigma);
      c.sigma_kv = j.sigma;
      return c;
    }
    j = JointSvd{};  // κ too large for the vectors: values below, SVD by the caller
  }
  absl::StatusOr<std::vector<double>> skv =
      SingularValuesAuto(std::move(joint), d, 2 * e, method, std::move(gkv));
  if (!skv.ok()) return skv.status();
  c.kappa_k = Kappa(*sk);
  c.kappa_v = Kappa(*sv);
  c.kappa_kv = Kappa(*skv);
  c.sigma_kv = std::move(*skv);
  return c;
}

double PredictedRelError(const Conditioning& c, const KvProjection& w, PredictedMode m, DType t) {
  const double inf = std::numeric_limits<double>::infinity();
  switch (m) {
    case PredictedMode::kSlim:
      return w.e() < w.d ? inf : c.kappa_k * UnitRoundoff(t);
    case PredictedMode::kXcacheGivenX:
      return 0.0;
    case PredictedMode::kXcacheFromKv:
      return 2 * w.e() < w.d ? inf : c.kappa_kv * UnitRoundoff(t);
  }
  return inf;
}

}  // namespace slimkv::kernels
