// Validation and CPU dispatch of the quantizers.
#include "kernels/quant.h"

#include <cstdint>

#include "kernels/quant_internal.h"

namespace slimkv::kernels {

const char* QuantParamsError(const QuantParams& p, uint64_t rows, uint64_t cols) {
  if (p.kind != QuantKind::kFp8E4M3 && p.kind != QuantKind::kInt8 && p.kind != QuantKind::kInt4) {
    return "quant.kind: not fp8, int8 or int4";
  }
  if (p.axis != QuantAxis::kPerToken && p.axis != QuantAxis::kPerChannel) {
    return "quant.axis: not per-token or per-channel";
  }
  if (p.axis == QuantAxis::kPerChannel && p.kind != QuantKind::kInt4) {
    return "quant.axis: per-channel groups exist for int4 only";
  }
  if (p.keep_cols > cols) return "quant.keep_cols: more than cols";
  // Keeps every byte count and element index far from 64-bit overflow.
  constexpr uint64_t kMaxElements = uint64_t{1} << 40;
  if (cols > kMaxElements || rows > kMaxElements / (cols ? cols : 1)) {
    return "quant: rows × cols exceeds 2^40 elements";
  }
  return nullptr;
}

void QuantEncode(const QuantParams& p, const void* src, DType src_type, uint64_t rows,
                 uint64_t cols, uint8_t* dst) {
  if (quant_internal::Avx2Supported()) {
    quant_internal::QuantEncodeAvx2(p, src, src_type, rows, cols, dst);
  } else {
    QuantEncodeRef(p, src, src_type, rows, cols, dst);
  }
}

void QuantDecode(const QuantParams& p, const uint8_t* src, uint64_t rows, uint64_t cols,
                 void* dst, DType dst_type) {
  if (quant_internal::Avx2Supported()) {
    quant_internal::QuantDecodeAvx2(p, src, rows, cols, dst, dst_type);
  } else {
    QuantDecodeRef(p, src, rows, cols, dst, dst_type);
  }
}

const char* QuantCpuPath() { return quant_internal::Avx2Supported() ? "avx2" : "reference"; }

}  // namespace slimkv::kernels
