#include "daemon/get_streamer.h"

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "cache/codec/decode_dispatch.h"
#include "cache/codec/page_codec.h"
#include "daemon/log.h"
#include "daemon/token_span.h"
#include "daemon/wire_enums.h"
#include "kernels/crc32c.h"

namespace slimkv::daemon {

namespace {
// Upper bound on what one TensorChunk adds beside its data (page, layer, role, offset, header,
// tags and lengths), so a packed message stays within chunk_bytes + one chunk's framing.
constexpr uint64_t kChunkFramingBytes = 128;
}  // namespace

absl::StatusOr<std::unique_ptr<GetStreamer>> GetStreamer::Start(cache::KvCache* cache,
                                                                const std::string& tenant,
                                                                const v1::GetRequest& request,
                                                                uint32_t chunk_bytes,
                                                                Metrics* metrics,
                                                                cache::GpuTier* gpu) {
  if (request.dtype() != v1::DTYPE_UNSPECIFIED && !kernels::IsValidDType(request.dtype())) {
    return absl::InvalidArgumentError(
        absl::StrCat("dtype: ", request.dtype(), " is not fp32, fp16 or bf16"));
  }
  if (request.raw() && request.dtype() != v1::DTYPE_UNSPECIFIED) {
    return absl::InvalidArgumentError(
        "dtype: raw returns each page in its stored dtype; leave dtype unspecified");
  }
  const auto& tokens = request.tokens();
  auto prefix = cache->Resolve(tenant, request.model_id(), TokenSpan(tokens));
  if (!prefix.ok()) return prefix.status();
  if (request.first_page() >= prefix->keys.size()) {
    return absl::InvalidArgumentError(absl::StrCat("first_page: ", request.first_page(),
                                                   " but tokens hold ", prefix->keys.size(),
                                                   " whole pages"));
  }
  std::unique_ptr<GetStreamer> s(new GetStreamer(cache, tenant, metrics, gpu));
  s->model_ = prefix->model;
  s->chunk_bytes_ = chunk_bytes;
  s->first_page_ = request.first_page();
  s->raw_ = request.raw();
  s->convert_ = request.dtype() != v1::DTYPE_UNSPECIFIED;
  s->out_dtype_ = FromWire(request.dtype());
  for (size_t i = request.first_page(); i < prefix->keys.size(); ++i) {
    cache::Tier tier;
    auto page = cache->Get(prefix->keys[i], &tier);  // announces the use; pinned only later
    if (page == nullptr) break;
    s->keys_.push_back(prefix->keys[i]);
    v1::GetResponseHeader& h = s->header_;
    h.add_page_modes(ToWire(page->mode));
    h.add_page_quants(ToWire(page->quant));
    h.add_page_tiers(ToWire(tier));
    for (const cache::StoredLayer& l : page->layers) {
      h.add_layer_modes(ToWire(l.mode));
      h.add_layer_quants(ToWire(l.quant));
    }
  }
  s->header_.set_pages(s->pages());
  return s;
}

bool GetStreamer::LoadTensor() {
  const cache::Page& page = *pinned_;
  const uint32_t layer = tensor_ / TensorsPerLayer();
  const uint32_t page_index = first_page_ + static_cast<uint32_t>(page_);
  std::shared_ptr<const cache::ModelCodec> hold;
  const cache::ModelCodec& codec = model_->best_codec(&hold);
  const uint32_t tokens = page.geometry.page_tokens;
  if (raw_) {
    const cache::StoredLayer& l = page.layers[layer];
    tensor_data_ = page.payload.data() + page.LayerOffset(layer);
    tensor_bytes_ = l.bytes;
    tensor_crc_ = l.crc32c;
    int64_t cols = 0;
    for (const cache::StoredPart& p : cache::StoredParts(codec, layer, l.mode)) cols += p.cols;
    tensor_shape_ = {tokens, cols};
  } else {
    const kernels::DType out = convert_ ? out_dtype_ : page.dtype;
    const uint64_t k_bytes = page.geometry.TensorElems(cache::Role::kK) * kernels::DTypeSize(out);
    const uint64_t v_bytes = page.geometry.TensorElems(cache::Role::kV) * kernels::DTypeSize(out);
    const bool is_v = tensor_ % 2 == 1;
    if (!is_v) {
      layer_.resize(k_bytes + v_bytes);
      const absl::Time start = absl::Now();
      cache::DecodeWhere where;
      status_ = cache::DecodeLayerDispatched(codec, pinned_, layer, page_index, out,
                                             layer_.data(), layer_.data() + k_bytes, gpu_, &where);
      if (!status_.ok()) return false;
      if (where.fallback == cache::GpuFallback::kError) {
        LogWarningOncePerMinute(
            "gpu decode", absl::StrCat("GPU reconstruction failed and ran on the CPU (further "
                                       "failures this minute are only counted): ",
                                       where.gpu_error.ToString()));
      }
      if (metrics_ != nullptr) {
        metrics_->RecordReconstruction(tenant_, page.layers[layer].mode, where,
                                       absl::ToDoubleSeconds(absl::Now() - start));
      }
    }
    tensor_data_ = layer_.data() + (is_v ? k_bytes : 0);
    tensor_bytes_ = is_v ? v_bytes : k_bytes;
    tensor_crc_ = kernels::Crc32c(0, tensor_data_, tensor_bytes_);
    tensor_shape_ = {tokens, page.geometry.num_kv_heads,
                     page.geometry.HeadDim(is_v ? cache::Role::kV : cache::Role::kK)};
  }
  tensor_loaded_ = true;
  return true;
}

bool GetStreamer::Next(v1::GetResponse* out) {
  out->Clear();
  if (!header_sent_) {
    header_sent_ = true;
    *out->mutable_header() = header_;
    return true;
  }
  uint64_t packed = 0, data_bytes = 0;
  while (page_ < keys_.size() && packed < chunk_bytes_) {
    if (pinned_ == nullptr) {
      pinned_ = cache_->Get(keys_[page_], &pinned_tier_);
      if (pinned_ == nullptr) {  // evicted or deleted since the header: end with a prefix
        keys_.resize(page_);
        break;
      }
    }
    const cache::Page& page = *pinned_;
    if (!tensor_loaded_ && !LoadTensor()) {
      keys_.resize(page_);  // end here, with status_; this page is not sent whole
      return false;
    }
    const uint64_t n = std::min<uint64_t>(chunk_bytes_ - packed, tensor_bytes_ - offset_);
    v1::TensorChunk* c = out->add_chunks();
    c->set_page(first_page_ + static_cast<uint32_t>(page_));
    const uint32_t layer = tensor_ / TensorsPerLayer();
    c->set_layer(layer);
    c->set_role(raw_ ? v1::TENSOR_ROLE_STORED
                     : (tensor_ % 2 ? v1::TENSOR_ROLE_V : v1::TENSOR_ROLE_K));
    if (offset_ == 0) {
      v1::TensorHeader* h = c->mutable_header();
      h->set_dtype(ToWire(convert_ ? out_dtype_ : page.dtype));
      for (int64_t d : tensor_shape_) h->add_shape(d);
      h->set_crc32c(tensor_crc_);
      if (raw_) {
        h->set_mode(ToWire(page.layers[layer].mode));
        h->set_quant(ToWire(page.layers[layer].quant));
        h->set_bytes(tensor_bytes_);
      }
    }
    c->set_offset(offset_);
    c->set_data(tensor_data_ + offset_, n);
    offset_ += n;
    data_bytes += n;
    packed += n + kChunkFramingBytes;
    if (offset_ == tensor_bytes_) {
      offset_ = 0;
      tensor_loaded_ = false;
      if (++tensor_ == TensorsPerLayer() * page.geometry.num_layers) {
        tensor_ = 0;
        ++page_;
        if (metrics_ != nullptr) metrics_->RecordServedPage(tenant_, pinned_tier_, page);
        pinned_.reset();
      }
    }
  }
  bytes_sent_ += data_bytes;
  return packed > 0;
}

}  // namespace slimkv::daemon
