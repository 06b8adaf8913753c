#include "kernels/rope_retention.h"

#include <algorithm>
#include <cmath>
#include <numeric>

namespace slimkv::kernels {
namespace {

// Dims of pair j inside a head.
std::pair<int, int> Pair(const RopeParams& p, int j) {
  return p.pairing == RopePairing::kHalfSplit ? std::pair{j, j + p.rotary_dim / 2}
                                              : std::pair{2 * j, 2 * j + 1};
}

// mean over tokens and `group` consecutive heads starting at head0 of each pair's norm.
std::vector<double> MeanPairNorms(const RopeParams& p, int heads, int head0, int group,
                                  int64_t tokens, const float* x) {
  const int half = p.rotary_dim / 2;
  std::vector<double> acc(half, 0.0);
  for (int64_t t = 0; t < tokens; ++t) {
    for (int g = 0; g < group; ++g) {
      const float* head = x + (t * heads + head0 + g) * p.head_dim;
      for (int j = 0; j < half; ++j) {
        const auto [a, b] = Pair(p, j);
        acc[j] += std::hypot(static_cast<double>(head[a]), static_cast<double>(head[b]));
      }
    }
  }
  for (double& v : acc) v /= static_cast<double>(std::max<int64_t>(tokens * group, 1));
  return acc;
}

}  // namespace

std::vector<double> RopePairScores(const RopeParams& p, int h_kv, int64_t tokens, const float* k,
                                   const float* q, int h_q) {
  const int half = p.rotary_dim / 2;
  std::vector<double> scores(static_cast<size_t>(h_kv) * half);
  for (int h = 0; h < h_kv; ++h) {
    const std::vector<double> kn = MeanPairNorms(p, h_kv, h, 1, tokens, k);
    std::vector<double> qn(half, 1.0);
    if (q != nullptr) {
      const int group = h_q / h_kv;
      qn = MeanPairNorms(p, h_q, h * group, group, tokens, q);
    }
    for (int j = 0; j < half; ++j) scores[h * half + j] = kn[j] * qn[j];
  }
  return scores;
}

std::vector<int> SelectRopeColumns(const RopeParams& p, int h_kv,
                                   const std::vector<double>& scores, int pairs_per_head) {
  const int half = p.rotary_dim / 2;
  std::vector<int> cols;
  for (int h = 0; h < h_kv; ++h) {
    std::vector<int> order(half);
    std::iota(order.begin(), order.end(), 0);
    const double* s = &scores[static_cast<size_t>(h) * half];
    // Ties go to the lower pair (higher frequency) so the choice is deterministic.
    std::stable_sort(order.begin(), order.end(), [s](int a, int b) { return s[a] > s[b]; });
    for (int i = 0; i < pairs_per_head; ++i) {
      const auto [a, b] = Pair(p, order[i]);
      cols.push_back(h * p.head_dim + a);
      cols.push_back(h * p.head_dim + b);
    }
  }
  std::sort(cols.begin(), cols.end());
  return cols;
}

std::vector<int> ComplementColumns(const std::vector<int>& cols, int n) {
  std::vector<int> out;
  size_t next = 0;
  for (int c = 0; c < n; ++c) {
    if (next < cols.size() && cols[next] == c) {
      ++next;
    } else {
      out.push_back(c);
    }
  }
  return out;
}

}  // namespace slimkv::kernels
