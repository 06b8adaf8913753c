// Turns the tensors an engine sends for one page into the page's stored layers, and a stored
// layer back into the engine layout: the per-page side of the modes (SPEC §2), on top of the
// per-layer codecs of kernels/codecs.h and the quantizers of kernels/quant.h.
//
// Encode chooses, per layer, what is actually stored (docs/codecs.md "Fallback"):
//   1. the requested mode, unless the layer cannot take it (LayerSupports) or its predicted
//      error for the page's dtype exceeds the tolerance — then full;
//   2. with `verify`, or whenever the representation is lossy (projected latent, any
//      quantizer), the stored layer is decoded again and compared with what the engine sent
//      (relative Frobenius error, the larger of K's and V's); over the tolerance, the layer is
//      stored in full, unquantized, instead.
// So a layer never holds a representation whose measured error exceeded the tolerance, and a
// verified page is exact to the tolerance in every layer.
//
// Positions: token t of page p sits at position p·page_tokens + t of its prefix (prefix
// caching: the page is the same tokens at the same place), so RoPE needs no extra input.
//
// Thread-safety: stateless functions.
#pragma once

#include <cstdint>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "cache/model/model_codec.h"
#include "cache/store/page.h"
#include "kernels/dtype.h"
#include "kernels/quant_format.h"

namespace slimkv::cache {

// One stored tensor of a layer: `cols` values per token. Quantized per channel when `k_like`
// and int4 (KIVI's keys), else per token; fp8 keeps the last `keep_bf16_fp8` channels in bf16
// (FlashMLA's k_rope).
struct StoredPart {
  int64_t cols = 0;
  bool k_like = false;
  int64_t keep_bf16_fp8 = 0;
};

// The quantizer format of a part. REQUIRES q != Quant::kNone.
kernels::QuantParams QuantParamsFor(const StoredPart& p, Quant q);
// Bytes `tokens` rows of the part take: unquantized in `store` dtype, or quantized, scales
// included (kernels/quant_format.h).
uint64_t StoredPartBytes(const StoredPart& p, Quant q, kernels::DType store, uint64_t tokens);

// The parts layer `l` stores in mode `m`, in payload order.
std::vector<StoredPart> StoredParts(const ModelCodec& codec, uint32_t l, Mode m);

struct EncodeOptions {
  Mode mode = Mode::kFull;
  Quant quant = Quant::kNone;
  PageInput input = PageInput::kKv;
  double tolerance = 1e-2;
  bool verify = false;  // decode and measure every layer, lossless modes included
};

// Why a layer is stored in full although another mode was asked for.
enum class FallbackReason : uint8_t { kNone, kNotApplicable, kPredictedError, kMeasuredError };
const char* FallbackReasonName(FallbackReason r);

struct LayerOutcome {
  Mode stored = Mode::kFull;
  FallbackReason fallback = FallbackReason::kNone;
  // Relative error of the representation tried (the requested one when it fell back on a
  // measurement); negative when the layer was not measured.
  double measured_error = -1;
  Mode measured_mode = Mode::kFull;
  Quant measured_quant = Quant::kNone;
};

// Bytes per layer of a page's input: the input tensors of one layer, back to back.
uint64_t LayerInputBytes(const ModelCodec& codec, PageInput input, kernels::DType dtype,
                         uint32_t page_tokens);

// Encodes a page. `input` holds num_layers × LayerInputBytes in page->dtype; page->key,
// tenant, model, dtype and geometry are set by the caller; this fills mode, quant, layers and
// payload. `page_index` is the page's index in its prefix (for positions).
// REQUIRES codec.Supports(options.mode, options.input).ok().
// Returns one outcome per layer; INTERNAL if a codec fails on shapes it should accept.
[[nodiscard]] absl::StatusOr<std::vector<LayerOutcome>> EncodePage(const ModelCodec& codec,
                                                                   const EncodeOptions& options,
                                                                   const uint8_t* input,
                                                                   uint32_t page_index,
                                                                   Page* page);

// The stored values of layer `l` of `page`, checked and unquantized: `values` views the page's
// payload (in page.dtype) when the layer is unquantized, else the float32 dequantization held
// in `owned`. Shape [page_tokens, Σ StoredParts(codec, l, mode).cols].
// DATA_LOSS when the layer's bytes fail their CRC32C; FAILED_PRECONDITION when the layer is
// stored in a mode that needs matrices this codec lacks.
// REQUIRES: `page` outlives the result; moving the result keeps `values` valid.
struct StoredLayerValues {
  Mode mode = Mode::kFull;
  kernels::ConstTensor values;
  std::vector<float> owned;
};
[[nodiscard]] absl::StatusOr<StoredLayerValues> ReadStoredLayer(const ModelCodec& codec,
                                                                const Page& page, uint32_t l);

// Reconstructs layer `l` of `page` into K [T, h_kv, d_k] and V [T, h_kv, d_v] of dtype `out`.
// DATA_LOSS when the layer's bytes fail their CRC32C; FAILED_PRECONDITION when the layer needs
// matrices this codec lacks (a page stored before the model's weights were known).
[[nodiscard]] absl::Status DecodeLayer(const ModelCodec& codec, const Page& page, uint32_t l,
                                       uint32_t page_index, kernels::DType out, void* k, void* v);

}  // namespace slimkv::cache
