// Scalar reference of the KV codecs: the specification and the test oracle. Per-token loops,
// float64 accumulation, no BLAS; outputs rounded once to their dtype. Same contracts, shapes
// and error codes as the fast path in codecs.h.
//
// Thread-safety: stateless; concurrent calls on disjoint outputs are safe.
#pragma once

#include <cstdint>

#include "absl/status/status.h"
#include "kernels/codec_layer.h"

namespace slimkv::kernels {

[[nodiscard]] absl::Status EncodeFullRef(const KvProjection& p, int64_t tokens, ConstTensor k,
                                         ConstTensor v, MutableTensor stored);
[[nodiscard]] absl::Status DecodeFullRef(const KvProjection& p, int64_t tokens,
                                         ConstTensor stored, MutableTensor k, MutableTensor v);
[[nodiscard]] absl::Status EncodeSlimRef(const KvCodecLayer& l, int64_t tokens,
                                         const int32_t* positions, ConstTensor k,
                                         MutableTensor stored);
[[nodiscard]] absl::Status DecodeSlimRef(const KvCodecLayer& l, int64_t tokens,
                                         const int32_t* positions, ConstTensor stored,
                                         MutableTensor k, MutableTensor v);
[[nodiscard]] absl::Status EncodeXcacheFromXRef(const KvCodecLayer& l, int64_t tokens,
                                                ConstTensor x, MutableTensor stored);
[[nodiscard]] absl::Status EncodeXcacheFromKvRef(const KvCodecLayer& l, int64_t tokens,
                                                 const int32_t* positions, ConstTensor k,
                                                 ConstTensor v, MutableTensor stored);
[[nodiscard]] absl::Status DecodeXcacheRef(const KvCodecLayer& l, int64_t tokens,
                                           const int32_t* positions, ConstTensor stored,
                                           MutableTensor k, MutableTensor v);
[[nodiscard]] absl::Status EncodeProjectedRef(const KvCodecLayer& l, int64_t tokens,
                                              const int32_t* positions, ConstTensor k,
                                              ConstTensor v, MutableTensor stored);
[[nodiscard]] absl::Status DecodeProjectedRef(const KvCodecLayer& l, int64_t tokens,
                                              const int32_t* positions, ConstTensor stored,
                                              MutableTensor k, MutableTensor v);
[[nodiscard]] absl::Status EncodeLatentNativeRef(const LatentLayout& l, int64_t tokens,
                                                 ConstTensor latent, MutableTensor stored);
[[nodiscard]] absl::Status DecodeLatentNativeRef(const LatentLayout& l, int64_t tokens,
                                                 ConstTensor stored, MutableTensor k,
                                                 MutableTensor v);

}  // namespace slimkv::kernels
