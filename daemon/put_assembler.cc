#include "daemon/put_assembler.h"

#include <cstring>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "daemon/token_span.h"
#include "kernels/crc32c.h"
#include "kernels/dtype.h"

namespace slimkv::daemon {

using cache::Role;

namespace {

const char* RoleName(Role r) { return r == Role::kK ? "K" : "V"; }

std::string ShapeString(const google::protobuf::RepeatedField<int64_t>& shape) {
  std::string s = "[";
  for (int i = 0; i < shape.size(); ++i) absl::StrAppend(&s, i ? ", " : "", shape[i]);
  return s + "]";
}

}  // namespace

PutAssembler::PutAssembler(cache::KvCache* cache, std::string tenant)
    : cache_(cache), tenant_(std::move(tenant)) {}

absl::Status PutAssembler::Add(const v1::PutRequest& request) {
  if (request.has_header()) {
    if (have_header_) return absl::InvalidArgumentError("header: only the first message may carry it");
    if (auto s = AddHeader(request.header()); !s.ok()) return s;
  } else if (!have_header_) {
    return absl::InvalidArgumentError("header: missing from the first message");
  }
  for (const v1::TensorChunk& chunk : request.chunks()) {
    if (auto s = AddChunk(chunk); !s.ok()) return s;
  }
  return absl::OkStatus();
}

absl::Status PutAssembler::AddHeader(const v1::PutHeader& header) {
  const auto& tokens = header.tokens();
  auto prefix = cache_->Resolve(tenant_, header.model_id(), TokenSpan(tokens));
  if (!prefix.ok()) {
    return absl::Status(prefix.status().code(), absl::StrCat("header.", prefix.status().message()));
  }
  const uint32_t page_tokens = prefix->model->geometry.page_tokens;
  if (tokens.size() % page_tokens != 0) {
    return absl::InvalidArgumentError(absl::StrCat("header.tokens: ", tokens.size(),
                                                   " tokens is not a multiple of page_tokens ",
                                                   page_tokens));
  }
  if (header.first_page() >= prefix->keys.size()) {
    return absl::InvalidArgumentError(absl::StrCat("header.first_page: ", header.first_page(),
                                                   " but tokens hold ", prefix->keys.size(),
                                                   " pages"));
  }
  prefix_ = *std::move(prefix);
  first_page_ = header.first_page();
  have_header_ = true;
  return absl::OkStatus();
}

absl::Status PutAssembler::AddChunk(const v1::TensorChunk& chunk) {
  const cache::PageGeometry& g = prefix_.model->geometry;
  if (chunk.page() != page_) {
    if (chunk.page() < first_page_ || chunk.page() >= prefix_.keys.size()) {
      return absl::InvalidArgumentError(absl::StrCat("chunks.page: ", chunk.page(),
                                                     " is outside the pages sent, [",
                                                     first_page_, ", ", prefix_.keys.size(), ")"));
    }
    const int64_t next = page_ < 0 ? first_page_ : page_ + 1;
    if (chunk.page() != next && building_ == nullptr) {
      return absl::InvalidArgumentError(absl::StrCat("chunks.page: ", chunk.page(),
                                                     " but page ", next,
                                                     " is next; every page is sent, in order"));
    }
    if (building_ != nullptr) {
      return absl::InvalidArgumentError(absl::StrCat("chunks.page: page ", page_,
                                                     " is incomplete (", Missing(),
                                                     ") when page ", chunk.page(), " starts"));
    }
    if (auto s = StartPage(chunk.page()); !s.ok()) return s;
  } else if (building_ == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat("chunks.page: page ", page_, " was already complete in this stream"));
  }

  if (chunk.layer() >= g.num_layers) {
    return absl::InvalidArgumentError(absl::StrCat("chunks.layer: ", chunk.layer(),
                                                   " but the model has ", g.num_layers,
                                                   " layers"));
  }
  if (chunk.role() != v1::TENSOR_ROLE_K && chunk.role() != v1::TENSOR_ROLE_V) {
    return absl::InvalidArgumentError(
        absl::StrCat("chunks.role: ", chunk.role(), " is not K or V"));
  }
  const Role role = chunk.role() == v1::TENSOR_ROLE_K ? Role::kK : Role::kV;
  const uint32_t index = cache::Page::TensorIndex(chunk.layer(), role);
  TensorState& t = tensors_[index];
  const std::string where = absl::StrCat(" (page ", page_, " layer ", chunk.layer(), " ",
                                         RoleName(role), ")");
  if (chunk.offset() == 0 && !t.started) {
    if (auto s = StartTensor(chunk, index, role); !s.ok()) return s;
  } else if (chunk.has_header()) {
    return absl::InvalidArgumentError(
        absl::StrCat("chunks.header: only the chunk at offset 0 carries it", where));
  }
  if (!t.started) {
    return absl::InvalidArgumentError(
        absl::StrCat("chunks.offset: ", chunk.offset(), " but the tensor has not started", where));
  }
  const uint64_t size = building_->TensorBytes(role);
  if (chunk.offset() != t.received) {
    return absl::InvalidArgumentError(absl::StrCat("chunks.offset: ", chunk.offset(),
                                                   ", expected ", t.received, where));
  }
  if (chunk.data().size() > size - t.received) {
    return absl::InvalidArgumentError(absl::StrCat("chunks.data: ", chunk.data().size(),
                                                   " bytes at offset ", chunk.offset(),
                                                   " overrun the tensor's ", size, " bytes",
                                                   where));
  }
  if (chunk.data().empty()) {
    return absl::InvalidArgumentError(absl::StrCat("chunks.data: empty", where));
  }
  uint8_t* dst = building_->payload.data() + building_->TensorOffset(chunk.layer(), role) +
                 t.received;
  std::memcpy(dst, chunk.data().data(), chunk.data().size());
  t.crc = kernels::Crc32c(t.crc, chunk.data().data(), chunk.data().size());
  t.received += chunk.data().size();
  if (t.received < size) return absl::OkStatus();

  if (t.crc != t.expected_crc) {
    return absl::DataLossError(absl::StrFormat(
        "chunks.header.crc32c: 0x%08x but the data has 0x%08x%s", t.expected_crc, t.crc, where));
  }
  building_->tensor_crc32c[index] = t.crc;
  if (++tensors_done_ == tensors_.size()) return CompletePage();
  return absl::OkStatus();
}

absl::Status PutAssembler::StartPage(uint32_t page) {
  page_ = page;
  tensors_.assign(2 * prefix_.model->geometry.num_layers, TensorState{});
  tensors_done_ = 0;
  building_ = std::make_shared<cache::Page>();
  building_->key = prefix_.keys[page];
  building_->tenant = tenant_;
  building_->model = prefix_.model->fingerprint;
  building_->mode = cache::Mode::kFull;
  building_->geometry = prefix_.model->geometry;
  building_->tensor_crc32c.assign(tensors_.size(), 0);
  return absl::OkStatus();
}

absl::Status PutAssembler::StartTensor(const v1::TensorChunk& chunk, uint32_t index, Role role) {
  const std::string where = absl::StrCat(" (page ", page_, " layer ", chunk.layer(), " ",
                                         RoleName(role), ")");
  if (!chunk.has_header()) {
    return absl::InvalidArgumentError(
        absl::StrCat("chunks.header: missing on the tensor's first chunk", where));
  }
  const v1::TensorHeader& h = chunk.header();
  if (!kernels::IsValidDType(h.dtype())) {
    return absl::InvalidArgumentError(absl::StrCat("chunks.header.dtype: ", h.dtype(),
                                                   " is not fp32, fp16 or bf16", where));
  }
  const auto dtype = static_cast<kernels::DType>(h.dtype());
  const bool first_tensor_of_page = tensors_done_ == 0 && building_->payload.empty();
  if (!first_tensor_of_page && dtype != building_->dtype) {
    return absl::InvalidArgumentError(absl::StrCat(
        "chunks.header.dtype: ", kernels::DTypeName(dtype), " but the page's other tensors are ",
        kernels::DTypeName(building_->dtype), where));
  }
  const cache::PageGeometry& g = prefix_.model->geometry;
  const int64_t want[3] = {g.page_tokens, g.num_kv_heads,
                           g.HeadDim(role)};
  const auto& shape = h.shape();
  if (shape.size() != 3 || shape[0] != want[0] || shape[1] != want[1] || shape[2] != want[2]) {
    return absl::InvalidArgumentError(absl::StrCat("chunks.header.shape: ", ShapeString(shape),
                                                   ", expected [", want[0], ", ", want[1], ", ",
                                                   want[2], "]", where));
  }
  if (first_tensor_of_page) {
    const uint64_t payload = g.PageElems() * kernels::DTypeSize(dtype);
    auto reservation = cache_->ReserveInflight(tenant_, payload + cache::kPageOverheadBytes);
    if (!reservation.ok()) {
      return absl::Status(reservation.status().code(),
                          absl::StrCat(reservation.status().message(), where));
    }
    reservation_.emplace(*std::move(reservation));
    building_->dtype = dtype;
    building_->payload.resize(payload);
  }
  TensorState& t = tensors_[index];
  t.started = true;
  t.expected_crc = h.crc32c();
  return absl::OkStatus();
}

absl::Status PutAssembler::CompletePage() {
  const uint64_t bytes = building_->StoredBytes();
  auto result = cache_->Insert(std::move(building_));
  building_.reset();
  reservation_.reset();
  if (!result.ok()) return result.status();
  if (*result == cache::PageStore::InsertResult::kInserted) {
    response_.set_pages_stored(response_.pages_stored() + 1);
    response_.set_stored_bytes(response_.stored_bytes() + bytes);
  } else {
    response_.set_pages_present(response_.pages_present() + 1);
  }
  return absl::OkStatus();
}

std::string PutAssembler::Missing() const {
  for (size_t i = 0; i < tensors_.size(); ++i) {
    const TensorState& t = tensors_[i];
    const Role role = cache::Page::RoleOf(static_cast<uint32_t>(i));
    if (!t.started || t.received < building_->TensorBytes(role)) {
      return absl::StrCat("layer ", i / 2, " ", RoleName(role), " has ", t.received, " of ",
                          building_->TensorBytes(role), " bytes");
    }
  }
  return "nothing missing";
}

absl::Status PutAssembler::Finish() {
  if (!have_header_) return absl::InvalidArgumentError("header: the stream carried no message");
  if (building_ != nullptr) {
    return absl::InvalidArgumentError(absl::StrCat("chunks: the stream ended with page ", page_,
                                                   " incomplete (", Missing(), ")"));
  }
  const int64_t last = static_cast<int64_t>(prefix_.keys.size()) - 1;
  if (page_ < last) {
    return absl::InvalidArgumentError(absl::StrCat(
        "chunks: the stream ended ",
        page_ < 0 ? std::string("before any page") : absl::StrCat("after page ", page_),
        " but header.tokens announce pages up to ", last));
  }
  return absl::OkStatus();
}

}  // namespace slimkv::daemon
