// Matrices derived once per layer from its K/V projection, computed in float64 with
// LAPACK/OpenBLAS and handed out in float32 for the codecs: W_KV (slim), pinv([W_K W_V])
// (xcache recovery), the joint SVD basis B_R (projected latent), and condition numbers with
// the error they predict per dtype.
//
// Thread-safety: stateless functions; results are plain values. OpenBLAS may use its own
// threads inside a call.
#pragma once

#include <vector>

#include "absl/status/statusor.h"
#include "kernels/dtype.h"
#include "kernels/kv_projection.h"

namespace slimkv::kernels {

// W_KV [e, e] row-major with W_K·W_KV = W_V, so V − b_V = (K_raw − b_K)·W_KV.
// e == d: LU solve (dgesv); e > d: minimum-norm solution W_K^+·W_V (dgels, W_K has a right
// inverse). FAILED_PRECONDITION when e < d (W_K has rank ≤ e < d: V is not a function of K)
// or when W_K is numerically singular; INVALID_ARGUMENT for a bad projection.
[[nodiscard]] absl::StatusOr<std::vector<float>> ComputeSlimMatrix(const KvProjection& w);

// Thin SVD of the d×n matrix A = [W_K[:, k_cols] W_V] = U·diag(sigma)·Vt, float64.
// k = min(d, n) singular values, descending.
//
// How it is computed (docs/codecs.md, "Derived matrices"): by default from the eigen-
// decomposition of the k×k Gram matrix (A·Aᵀ when d ≤ n, else Aᵀ·A; dsyrk + dsyevd), the
// other side's vectors as Aᵀ·U·Σ⁻¹ (or A·V·Σ⁻¹). That is 5–10× faster than dgesdd on a
// 4096×8192 layer but squares the conditioning: a vector of σ_i carries an error of about
// ε·(σ_max/σ_i)². So when σ_max/σ_min > kGramMaxKappaVectors the SVD is recomputed with dgesdd.
struct JointSvd {
  int d = 0;
  int n = 0;                  // columns of A: |k_cols| + e
  std::vector<int> k_cols;    // which K columns entered A, ascending
  std::vector<double> sigma;  // [k]
  std::vector<double> u;      // [d, k] row-major
  std::vector<double> vt;     // [k, n] row-major
};

// Above these condition numbers the Gram route no longer resolves the small singular values
// (relative error ≈ c·ε·κ², c a modest multiple of the size) and dgesdd is used instead.
inline constexpr double kGramMaxKappaValues = 1e6;   // κ error ≲ 1e-4·c below it
inline constexpr double kGramMaxKappaVectors = 1e5;  // vector/pinv error ≲ 1e-6·c below it

enum class SvdMethod {
  kAuto,   // Gram eigendecomposition; dgesdd when too ill-conditioned for it (see above)
  kExact,  // always dgesdd (divide and conquer), backward stable; the slow reference
};

// k_cols: columns of W_K to include; empty means all e (the plain joint SVD of [W_K W_V]).
// INVALID_ARGUMENT for a bad projection or column index; INTERNAL if LAPACK fails to converge.
[[nodiscard]] absl::StatusOr<JointSvd> ComputeJointSvd(const KvProjection& w,
                                                       const std::vector<int>& k_cols = {},
                                                       SvdMethod method = SvdMethod::kAuto);

// pinv(A) [n, d] row-major = V·diag(1/sigma)·U^T, so that x = [K_raw − b_K, V − b_V]·pinv.
// FAILED_PRECONDITION when n < d or sigma_min ≤ d·eps·sigma_max (x not recoverable).
[[nodiscard]] absl::StatusOr<std::vector<float>> JointPinv(const JointSvd& svd);

// How many basis vectors to keep. Exactly one of the two is set.
struct RankRule {
  int fixed_rank = 0;     // > 0: this many (clamped to the number of singular values)
  double energy = 0.0;    // in (0, 1]: smallest R with Σ_{i<R} σ_i² ≥ energy·Σ σ_i²
};
// INVALID_ARGUMENT when neither or both are set or energy is outside (0, 1].
[[nodiscard]] absl::StatusOr<int> SelectRank(const std::vector<double>& sigma, const RankRule& r);

// B_R = V[:, :R], [n, R] row-major. REQUIRES: 0 < R ≤ sigma.size().
std::vector<float> JointBasis(const JointSvd& svd, int R);

// √(Σ_{i≥R} σ_i²): ‖A − A·B_R·B_Rᵀ‖_F by Eckart–Young.
double TailNorm(const std::vector<double>& sigma, int R);

// Largest relative rounding error of one value stored in `t`: 2^-24, 2^-11, 2^-8.
double UnitRoundoff(DType t);

// 2-norm condition numbers σ_max/σ_min over the min(rows, cols) singular values;
// +infinity when σ_min is 0.
struct Conditioning {
  double kappa_k = 0;   // W_K [d, e]
  double kappa_v = 0;   // W_V [d, e]
  double kappa_kv = 0;  // [W_K W_V] [d, 2e]
  // Singular values of [W_K W_V], descending (min(d, 2e) of them): enough to choose a
  // projected rank by energy (SelectRank) and bound its error (TailNorm) without the vectors.
  std::vector<double> sigma_kv;
};
// Singular values come from the eigenvalues of each matrix's Gram matrix on its smaller side
// (dsyrk + two-stage dsyevd, values only); a matrix whose Gram κ exceeds kGramMaxKappaValues is
// recomputed with dgesdd, so every κ is accurate to about 1e-4 relative or better. Whatever
// the method, κ ≥ 1e6 is reported as such: the decision κ·u > tolerance never flips.
// With SvdMethod::kExact every matrix goes through dgesdd (values only).
// INVALID_ARGUMENT for a bad projection; INTERNAL if LAPACK fails.
//
// `joint` (may be null): when d ≤ e the joint Gram matrix is G_K + G_V, and its
// eigendecomposition with vectors gives σ([W_K W_V]) and the joint SVD at once; with a non-null
// `joint` and kAuto, that one eigensolve replaces the values-only one here and the Gram matrix
// and eigensolve ComputeJointSvd would repeat, and *joint receives the SVD (what
// ComputeJointSvd(w) returns). *joint is left empty (sigma empty) when the Gram route cannot
// give the vectors (κ > kGramMaxKappaVectors, d > e, kExact): compute it separately then.
[[nodiscard]] absl::StatusOr<Conditioning> AnalyzeConditioning(
    const KvProjection& w, SvdMethod method = SvdMethod::kAuto, JointSvd* joint = nullptr);

// Predicted relative Frobenius error of a mode when the engine's tensors and the stored
// representation are in dtype t (first-order perturbation model, docs/codecs.md):
//   slim:            κ(W_K)·u  on V (K is stored as sent); +inf when e < d
//   xcache, given x: 0         (x is stored as sent; decode rounds like the engine does)
//   xcache, from KV: κ([W_K W_V])·u on K and V; +inf when 2e < d
enum class PredictedMode { kSlim, kXcacheGivenX, kXcacheFromKv };
double PredictedRelError(const Conditioning& c, const KvProjection& w, PredictedMode m, DType t);

}  // namespace slimkv::kernels
