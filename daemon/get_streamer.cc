#include "daemon/get_streamer.h"

#include "absl/strings/str_cat.h"
#include "daemon/token_span.h"
#include "kernels/crc32c.h"

namespace slimkv::daemon {

using cache::Role;

namespace {
// Upper bound on what one TensorChunk adds beside its data (page, layer, role, offset, header,
// tags and lengths), so a packed message stays within chunk_bytes + one chunk's framing.
constexpr uint64_t kChunkFramingBytes = 128;
}  // namespace

absl::StatusOr<std::unique_ptr<GetStreamer>> GetStreamer::Start(cache::KvCache* cache,
                                                                const std::string& tenant,
                                                                const v1::GetRequest& request,
                                                                uint32_t chunk_bytes) {
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
  std::unique_ptr<GetStreamer> s(new GetStreamer(cache));
  s->chunk_bytes_ = chunk_bytes;
  s->first_page_ = request.first_page();
  s->convert_ = request.dtype() != v1::DTYPE_UNSPECIFIED;
  s->out_dtype_ = static_cast<kernels::DType>(request.dtype());
  for (size_t i = request.first_page(); i < prefix->keys.size(); ++i) {
    cache::Tier tier;
    auto page = cache->Get(prefix->keys[i], &tier);  // announces the use; pinned only later
    if (page == nullptr) break;
    s->keys_.push_back(prefix->keys[i]);
    s->modes_.push_back(page->mode);
    s->tiers_.push_back(tier);
  }
  return s;
}

void GetStreamer::LoadTensor() {
  const cache::Page& page = *pinned_;
  const uint32_t layer = tensor_ / 2;
  const Role role = cache::Page::RoleOf(tensor_);
  const uint8_t* src = page.payload.data() + page.TensorOffset(layer, role);
  const uint64_t src_bytes = page.TensorBytes(role);
  if (!convert_ || out_dtype_ == page.dtype) {
    tensor_data_ = src;
    tensor_bytes_ = src_bytes;
    tensor_crc_ = page.tensor_crc32c[tensor_];
  } else {
    const uint64_t n = page.geometry.TensorElems(role);
    converted_.resize(n * kernels::DTypeSize(out_dtype_));
    kernels::ConvertDType(src, page.dtype, converted_.data(), out_dtype_, n);
    tensor_data_ = converted_.data();
    tensor_bytes_ = converted_.size();
    tensor_crc_ = kernels::Crc32c(0, tensor_data_, tensor_bytes_);
  }
  tensor_loaded_ = true;
}

bool GetStreamer::Next(v1::GetResponse* out) {
  out->Clear();
  if (!header_sent_) {
    header_sent_ = true;
    v1::GetResponseHeader* h = out->mutable_header();
    h->set_pages(pages());
    for (size_t i = 0; i < keys_.size(); ++i) {
      h->add_page_modes(static_cast<v1::Mode>(modes_[i]));
      h->add_page_tiers(static_cast<v1::Tier>(tiers_[i]));
    }
    return true;
  }
  uint64_t packed = 0, data_bytes = 0;
  while (page_ < keys_.size() && packed < chunk_bytes_) {
    if (pinned_ == nullptr) {
      cache::Tier tier;
      pinned_ = cache_->Get(keys_[page_], &tier);
      if (pinned_ == nullptr) {  // evicted or deleted since the header: end with a prefix
        keys_.resize(page_);
        break;
      }
    }
    const cache::Page& page = *pinned_;
    if (!tensor_loaded_) LoadTensor();
    const uint64_t n = std::min<uint64_t>(chunk_bytes_ - packed, tensor_bytes_ - offset_);
    v1::TensorChunk* c = out->add_chunks();
    c->set_page(first_page_ + static_cast<uint32_t>(page_));
    c->set_layer(tensor_ / 2);
    const Role role = cache::Page::RoleOf(tensor_);
    c->set_role(role == Role::kV ? v1::TENSOR_ROLE_V : v1::TENSOR_ROLE_K);
    if (offset_ == 0) {
      v1::TensorHeader* h = c->mutable_header();
      h->set_dtype(static_cast<v1::DType>(convert_ ? out_dtype_ : page.dtype));
      h->add_shape(page.geometry.page_tokens);
      h->add_shape(page.geometry.num_kv_heads);
      h->add_shape(page.geometry.HeadDim(role));
      h->set_crc32c(tensor_crc_);
    }
    c->set_offset(offset_);
    c->set_data(tensor_data_ + offset_, n);
    offset_ += n;
    data_bytes += n;
    packed += n + kChunkFramingBytes;
    if (offset_ == tensor_bytes_) {
      offset_ = 0;
      tensor_loaded_ = false;
      if (++tensor_ == page.tensor_crc32c.size()) {
        tensor_ = 0;
        ++page_;
        pinned_.reset();
      }
    }
  }
  bytes_sent_ += data_bytes;
  return packed > 0;
}

}  // namespace slimkv::daemon
