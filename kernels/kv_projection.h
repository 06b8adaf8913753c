// The K/V projection of one attention layer as the codecs see it: a plain view of weights the
// caller owns (the cache layer maps its model config and tensors onto it).
//
// Thread-safety: immutable view; the pointed-to weights must outlive every use and must not
// change while in use.
#pragma once

#include <cstdint>

#include "absl/status/status.h"

namespace slimkv::kernels {

// K_raw = x·W_K + b_K, V = x·W_V + b_V (row vectors, SPEC §2).
struct KvProjection {
  int d = 0;     // hidden size
  int h_kv = 0;  // KV heads
  int d_h = 0;   // head dim
  const float* w_k = nullptr;  // [d, e] row-major, e = h_kv·d_h (HF k_proj.weight transposed)
  const float* w_v = nullptr;  // [d, e] row-major
  const float* b_k = nullptr;  // [e], or null for no bias
  const float* b_v = nullptr;  // [e], or null for no bias

  int e() const { return h_kv * d_h; }
};

// OK, or INVALID_ARGUMENT naming the missing weight or non-positive size.
[[nodiscard]] absl::Status ValidateKvProjection(const KvProjection& w);
// The sizes only: for the codec ops that never read W_K, W_V (which may then be null).
[[nodiscard]] absl::Status ValidateKvGeometry(const KvProjection& w);

}  // namespace slimkv::kernels
