#include "cache/codec/page_codec.h"

#include <cmath>
#include <cstring>
#include <numeric>
#include <optional>

#include "absl/strings/str_cat.h"
#include "kernels/codecs.h"
#include "kernels/crc32c.h"
#include "kernels/quant.h"

namespace slimkv::cache {
namespace {

using kernels::CodecMode;
using kernels::ConstTensor;
using kernels::DType;
using kernels::MutableTensor;

std::vector<int32_t> Positions(uint32_t page_index, uint32_t tokens) {
  std::vector<int32_t> p(tokens);
  std::iota(p.begin(), p.end(), static_cast<int32_t>(uint64_t{page_index} * tokens));
  return p;
}

uint64_t PartsCols(const std::vector<StoredPart>& parts) {
  uint64_t n = 0;
  for (const StoredPart& p : parts) n += p.cols;
  return n;
}

bool IsLossy(const ModelCodec& codec, Mode m, Quant q) {
  return q != Quant::kNone || (m == Mode::kLatent && !codec.is_mla());
}

// ‖a − b‖_F / ‖b‖_F in float64 (0 when both are 0).
double RelError(const float* a, const float* b, uint64_t n) {
  double diff = 0, ref = 0;
  for (uint64_t i = 0; i < n; ++i) {
    const double d = double{a[i]} - double{b[i]};
    diff += d * d;
    ref += double{b[i]} * b[i];
  }
  if (ref == 0) return diff == 0 ? 0 : INFINITY;
  return std::sqrt(diff / ref);
}

// The engine's K and V of one layer in float32, whatever the input: converted from K,V, or
// computed from x or the latent the way the engine computes them.
struct EngineKv {
  std::vector<float> k, v;
};

absl::Status Internal(const absl::Status& s, uint32_t l) {
  return absl::InternalError(absl::StrCat("layer ", l, ": ", s.message()));
}

// Runs `op` on layer `l`'s codec view for `m` (which makes the matrix `m` reads resident).
template <class Op>
absl::Status WithView(const ModelCodec& codec, uint32_t l, CodecMode m, Op op) {
  absl::StatusOr<kernels::KvCodecLayer> view = codec.kv(l, m);
  return view.ok() ? op(*view) : view.status();
}

absl::StatusOr<EngineKv> EngineKvOf(const ModelCodec& codec, uint32_t l, PageInput input,
                                    const uint8_t* in, DType dtype, uint32_t tokens,
                                    const int32_t* positions) {
  EngineKv kv;
  const uint64_t nk = codec.InputCols(PageInput::kKv, Role::kK) * tokens;
  const uint64_t nv = codec.InputCols(PageInput::kKv, Role::kV) * tokens;
  kv.k.resize(nk);
  kv.v.resize(nv);
  absl::Status s;
  switch (input) {
    case PageInput::kKv:
      kernels::ConvertDType(in, dtype, kv.k.data(), DType::kF32, nk);
      kernels::ConvertDType(in + nk * kernels::DTypeSize(dtype), dtype, kv.v.data(), DType::kF32,
                            nv);
      break;
    case PageInput::kX:
      s = WithView(codec, l, CodecMode::kXcacheGivenX, [&](const kernels::KvCodecLayer& view) {
        return kernels::DecodeXcache(view, tokens, positions, {in, dtype},
                                     {kv.k.data(), DType::kF32}, {kv.v.data(), DType::kF32});
      });
      break;
    case PageInput::kLatent:
      s = kernels::DecodeLatentNative(codec.latent(l), tokens, {in, dtype},
                                      {kv.k.data(), DType::kF32}, {kv.v.data(), DType::kF32});
      break;
  }
  if (!s.ok()) return Internal(s, l);
  return kv;
}

// Writes layer `l` in mode `m` as `stored` (float32 or the page dtype) from the input or the
// engine K,V. The input form is used directly where the mode stores it as sent.
absl::Status EncodeMode(const ModelCodec& codec, uint32_t l, Mode m, PageInput input,
                        const uint8_t* in, DType dtype, const EngineKv* kv, uint32_t tokens,
                        const int32_t* positions, MutableTensor stored) {
  const ConstTensor k{kv ? kv->k.data() : nullptr, DType::kF32};
  const ConstTensor v{kv ? kv->v.data() : nullptr, DType::kF32};
  absl::Status s;
  switch (m) {
    case Mode::kFull: {
      const uint64_t nk = codec.InputCols(PageInput::kKv, Role::kK) * tokens;
      const uint64_t nv = codec.InputCols(PageInput::kKv, Role::kV) * tokens;
      auto* out = static_cast<uint8_t*>(stored.data);
      if (input == PageInput::kKv) {  // K then V, as sent
        kernels::ConvertDType(in, dtype, out, stored.dtype, nk + nv);
        return absl::OkStatus();
      }
      kernels::ConvertDType(kv->k.data(), DType::kF32, out, stored.dtype, nk);
      kernels::ConvertDType(kv->v.data(), DType::kF32, out + nk * kernels::DTypeSize(stored.dtype),
                            stored.dtype, nv);
      return absl::OkStatus();
    }
    case Mode::kSlim:
      s = WithView(codec, l, CodecMode::kSlim, [&](const kernels::KvCodecLayer& view) {
        return kernels::EncodeSlim(view, tokens, positions, k, stored);
      });
      break;
    case Mode::kXcache:
      if (input == PageInput::kX) {
        s = WithView(codec, l, CodecMode::kXcacheGivenX, [&](const kernels::KvCodecLayer& view) {
          return kernels::EncodeXcacheFromX(view, tokens, {in, dtype}, stored);
        });
      } else {
        s = WithView(codec, l, CodecMode::kXcacheFromKv, [&](const kernels::KvCodecLayer& view) {
          return kernels::EncodeXcacheFromKv(view, tokens, positions, k, v, stored);
        });
      }
      break;
    case Mode::kLatent:
      if (codec.is_mla()) {
        s = kernels::EncodeLatentNative(codec.latent(l), tokens, {in, dtype}, stored);
      } else {
        s = WithView(codec, l, CodecMode::kProjected, [&](const kernels::KvCodecLayer& view) {
          return kernels::EncodeProjected(view, tokens, positions, k, v, stored);
        });
      }
      break;
  }
  return s.ok() ? s : Internal(s, l);
}

// Decodes a layer's stored values (float32 or the page dtype) into K, V of `out`.
absl::Status DecodeMode(const ModelCodec& codec, uint32_t l, Mode m, ConstTensor stored,
                        uint32_t tokens, const int32_t* positions, MutableTensor k,
                        MutableTensor v) {
  absl::Status s;
  switch (m) {
    case Mode::kFull: {
      const uint64_t nk = codec.InputCols(PageInput::kKv, Role::kK) * tokens;
      const uint64_t nv = codec.InputCols(PageInput::kKv, Role::kV) * tokens;
      const auto* in = static_cast<const uint8_t*>(stored.data);
      kernels::ConvertDType(in, stored.dtype, k.data, k.dtype, nk);
      kernels::ConvertDType(in + nk * kernels::DTypeSize(stored.dtype), stored.dtype, v.data,
                            v.dtype, nv);
      return absl::OkStatus();
    }
    case Mode::kSlim:
      s = WithView(codec, l, CodecMode::kSlim, [&](const kernels::KvCodecLayer& view) {
        return kernels::DecodeSlim(view, tokens, positions, stored, k, v);
      });
      break;
    case Mode::kXcache:
      s = WithView(codec, l, CodecMode::kXcacheGivenX, [&](const kernels::KvCodecLayer& view) {
        return kernels::DecodeXcache(view, tokens, positions, stored, k, v);
      });
      break;
    case Mode::kLatent:
      if (codec.is_mla()) {
        s = kernels::DecodeLatentNative(codec.latent(l), tokens, stored, k, v);
      } else {
        s = WithView(codec, l, CodecMode::kProjected, [&](const kernels::KvCodecLayer& view) {
          return kernels::DecodeProjected(view, tokens, positions, stored, k, v);
        });
      }
      break;
  }
  return s.ok() ? s : Internal(s, l);
}

// Quantizes the float32 parts in `values` (each [tokens, cols], one after the other).
std::vector<uint8_t> Quantize(const std::vector<StoredPart>& parts, Quant q, const float* values,
                              uint32_t tokens) {
  uint64_t bytes = 0;
  for (const StoredPart& p : parts) bytes += StoredPartBytes(p, q, DType::kF32, tokens);
  std::vector<uint8_t> out(bytes);
  uint8_t* dst = out.data();
  for (const StoredPart& p : parts) {
    const kernels::QuantParams qp = QuantParamsFor(p, q);
    kernels::QuantEncode(qp, values, DType::kF32, tokens, p.cols, dst);
    dst += kernels::QuantBytes(qp, tokens, p.cols);
    values += uint64_t{tokens} * p.cols;
  }
  return out;
}

std::vector<float> Dequantize(const std::vector<StoredPart>& parts, Quant q, const uint8_t* src,
                              uint32_t tokens) {
  std::vector<float> out(PartsCols(parts) * tokens);
  float* dst = out.data();
  for (const StoredPart& p : parts) {
    const kernels::QuantParams qp = QuantParamsFor(p, q);
    kernels::QuantDecode(qp, src, tokens, p.cols, dst, DType::kF32);
    src += kernels::QuantBytes(qp, tokens, p.cols);
    dst += uint64_t{tokens} * p.cols;
  }
  return out;
}

// One layer encoded in (m, q): its bytes, and how to read them back.
struct EncodedLayer {
  Mode mode = Mode::kFull;
  Quant quant = Quant::kNone;
  std::vector<uint8_t> bytes;
};

absl::StatusOr<EncodedLayer> EncodeAs(const ModelCodec& codec, uint32_t l, Mode m, Quant q,
                                      PageInput input, const uint8_t* in, DType dtype,
                                      const EngineKv* kv, uint32_t tokens,
                                      const int32_t* positions) {
  EncodedLayer out{m, q, {}};
  const std::vector<StoredPart> parts = StoredParts(codec, l, m);
  const uint64_t n = PartsCols(parts) * tokens;
  if (q == Quant::kNone) {
    out.bytes.resize(n * kernels::DTypeSize(dtype));
    if (absl::Status s = EncodeMode(codec, l, m, input, in, dtype, kv, tokens, positions,
                                    {out.bytes.data(), dtype});
        !s.ok()) {
      return s;
    }
    return out;
  }
  std::vector<float> values(n);
  if (absl::Status s = EncodeMode(codec, l, m, input, in, dtype, kv, tokens, positions,
                                  {values.data(), DType::kF32});
      !s.ok()) {
    return s;
  }
  out.bytes = Quantize(parts, q, values.data(), tokens);
  return out;
}

absl::Status DecodeBytes(const ModelCodec& codec, uint32_t l, Mode m, Quant q,
                         const uint8_t* bytes, DType dtype, uint32_t tokens,
                         const int32_t* positions, MutableTensor k, MutableTensor v) {
  if (q == Quant::kNone) {
    return DecodeMode(codec, l, m, {bytes, dtype}, tokens, positions, k, v);
  }
  const std::vector<float> values = Dequantize(StoredParts(codec, l, m), q, bytes, tokens);
  return DecodeMode(codec, l, m, {values.data(), DType::kF32}, tokens, positions, k, v);
}

}  // namespace

kernels::QuantParams QuantParamsFor(const StoredPart& p, Quant q) {
  using kernels::QuantAxis;
  using kernels::QuantKind;
  switch (q) {
    case Quant::kFp8:
      return {QuantKind::kFp8E4M3, QuantAxis::kPerToken, static_cast<uint32_t>(p.keep_bf16_fp8)};
    case Quant::kInt8:
      return {QuantKind::kInt8, QuantAxis::kPerToken, 0};
    default:
      return {QuantKind::kInt4, p.k_like ? QuantAxis::kPerChannel : QuantAxis::kPerToken, 0};
  }
}

uint64_t StoredPartBytes(const StoredPart& p, Quant q, DType store, uint64_t tokens) {
  const uint64_t cols = static_cast<uint64_t>(p.cols);
  if (q == Quant::kNone) return tokens * cols * kernels::DTypeSize(store);
  return kernels::QuantBytes(QuantParamsFor(p, q), tokens, cols);
}

std::vector<StoredPart> StoredParts(const ModelCodec& codec, uint32_t l, Mode m) {
  const ModelConfig& c = codec.config();
  switch (m) {
    case Mode::kFull:
      return {{codec.InputCols(PageInput::kKv, Role::kK), true, 0},
              {codec.InputCols(PageInput::kKv, Role::kV), false, 0}};
    case Mode::kSlim:
      return {{codec.StoredCols(l, m), true, 0}};
    case Mode::kXcache:
      return {{codec.StoredCols(l, m), false, 0}};
    case Mode::kLatent: {
      const bool deepseek = codec.is_mla() && c.mla->layout == LatentLayout::kDeepSeek;
      return {{codec.StoredCols(l, m), false, deepseek ? int64_t{c.mla->qk_rope_head_dim} : 0}};
    }
  }
  return {};
}

const char* FallbackReasonName(FallbackReason r) {
  switch (r) {
    case FallbackReason::kNone: return "none";
    case FallbackReason::kNotApplicable: return "not_applicable";
    case FallbackReason::kPredictedError: return "predicted_error";
    case FallbackReason::kMeasuredError: return "measured_error";
  }
  return "invalid";
}

uint64_t LayerInputBytes(const ModelCodec& codec, PageInput input, DType dtype,
                         uint32_t page_tokens) {
  const uint64_t cols = input == PageInput::kKv ? codec.InputCols(input, Role::kK) +
                                                      codec.InputCols(input, Role::kV)
                                                : codec.InputCols(input, Role::kK);
  return cols * page_tokens * kernels::DTypeSize(dtype);
}

absl::StatusOr<std::vector<LayerOutcome>> EncodePage(const ModelCodec& codec,
                                                     const EncodeOptions& o,
                                                     const uint8_t* input, uint32_t page_index,
                                                     Page* page) {
  const uint32_t tokens = page->geometry.page_tokens;
  const DType dtype = page->dtype;
  const std::vector<int32_t> positions = Positions(page_index, tokens);
  const uint64_t in_bytes = LayerInputBytes(codec, o.input, dtype, tokens);
  page->mode = o.mode;
  page->quant = o.quant;
  page->layers.clear();
  page->payload.clear();
  std::vector<LayerOutcome> outcomes(page->geometry.num_layers);

  for (uint32_t l = 0; l < page->geometry.num_layers; ++l) {
    const uint8_t* in = input + l * in_bytes;
    LayerOutcome& out = outcomes[l];
    Mode m = o.mode;
    Quant q = o.quant;
    if (!codec.LayerSupports(l, m, o.input).ok()) {
      m = Mode::kFull;
      out.fallback = FallbackReason::kNotApplicable;
    } else if (!IsLossy(codec, m, Quant::kNone) &&
               !(codec.PredictedError(l, m, o.input, dtype) <= o.tolerance)) {
      m = Mode::kFull;
      out.fallback = FallbackReason::kPredictedError;
    }
    // Stored as sent: the input form itself, exactly (no engine K,V needed or compared).
    const bool as_sent = q == Quant::kNone && ((m == Mode::kXcache && o.input == PageInput::kX) ||
                                               (m == Mode::kLatent && codec.is_mla()) ||
                                               (m == Mode::kFull && o.input == PageInput::kKv));
    const bool measure = !as_sent && (o.verify || IsLossy(codec, m, q));
    const bool encode_needs_kv = (m == Mode::kFull && o.input != PageInput::kKv) ||
                                 m == Mode::kSlim ||
                                 (m == Mode::kXcache && o.input == PageInput::kKv) ||
                                 (m == Mode::kLatent && !codec.is_mla());
    std::optional<EngineKv> kv;
    if (encode_needs_kv || measure) {
      absl::StatusOr<EngineKv> got =
          EngineKvOf(codec, l, o.input, in, dtype, tokens, positions.data());
      if (!got.ok()) return got.status();
      kv = *std::move(got);
    }
    const EngineKv* kvp = kv ? &*kv : nullptr;
    absl::StatusOr<EncodedLayer> enc =
        EncodeAs(codec, l, m, q, o.input, in, dtype, kvp, tokens, positions.data());
    if (!enc.ok()) return enc.status();

    if (measure) {
      std::vector<float> k(kvp->k.size()), v(kvp->v.size());
      if (absl::Status s = DecodeBytes(codec, l, m, q, enc->bytes.data(), dtype, tokens,
                                       positions.data(), {k.data(), DType::kF32},
                                       {v.data(), DType::kF32});
          !s.ok()) {
        return s;
      }
      out.measured_error = std::max(RelError(k.data(), kvp->k.data(), k.size()),
                                    RelError(v.data(), kvp->v.data(), v.size()));
      out.measured_mode = m;
      out.measured_quant = q;
      if (!(out.measured_error <= o.tolerance)) {
        out.fallback = FallbackReason::kMeasuredError;
        enc = EncodeAs(codec, l, Mode::kFull, Quant::kNone, o.input, in, dtype, kvp, tokens,
                       positions.data());
        if (!enc.ok()) return enc.status();
      }
    }
    out.stored = enc->mode;
    page->layers.push_back(StoredLayer{
        .mode = enc->mode,
        .quant = enc->quant,
        .bytes = enc->bytes.size(),
        .crc32c = kernels::Crc32c(0, enc->bytes.data(), enc->bytes.size())});
    page->payload.insert(page->payload.end(), enc->bytes.begin(), enc->bytes.end());
  }
  return outcomes;
}

absl::StatusOr<StoredLayerValues> ReadStoredLayer(const ModelCodec& codec, const Page& page,
                                                  uint32_t l) {
  const StoredLayer& layer = page.layers[l];
  const uint8_t* bytes = page.payload.data() + page.LayerOffset(l);
  if (kernels::Crc32c(0, bytes, layer.bytes) != layer.crc32c) {
    return absl::DataLossError(absl::StrCat("page layer ", l, ": stored bytes fail their CRC32C"));
  }
  if (layer.mode != Mode::kFull && !codec.has_weights()) {
    return absl::FailedPreconditionError(
        absl::StrCat("layer ", l, " is stored in ", ModeName(layer.mode),
                     "; the model's derived matrices are not ready"));
  }
  StoredLayerValues out;
  out.mode = layer.mode;
  if (layer.quant == Quant::kNone) {
    out.values = {bytes, page.dtype};
  } else {
    out.owned = Dequantize(StoredParts(codec, l, layer.mode), layer.quant, bytes,
                           page.geometry.page_tokens);
    out.values = {out.owned.data(), DType::kF32};
  }
  return out;
}

absl::Status DecodeLayer(const ModelCodec& codec, const Page& page, uint32_t l,
                         uint32_t page_index, DType out, void* k, void* v) {
  absl::StatusOr<StoredLayerValues> stored = ReadStoredLayer(codec, page, l);
  if (!stored.ok()) return stored.status();
  const uint32_t tokens = page.geometry.page_tokens;
  const std::vector<int32_t> positions = Positions(page_index, tokens);
  return DecodeMode(codec, l, stored->mode, stored->values, tokens, positions.data(), {k, out},
                    {v, out});
}

}  // namespace slimkv::cache
