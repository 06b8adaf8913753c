#include "daemon/put_assembler.h"

#include <algorithm>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "daemon/token_span.h"
#include "daemon/wire_enums.h"
#include "kernels/crc32c.h"
#include "kernels/dtype.h"

namespace slimkv::daemon {

namespace {

const char* RoleName(v1::TensorRole r) {
  switch (r) {
    case v1::TENSOR_ROLE_K: return "K";
    case v1::TENSOR_ROLE_V: return "V";
    case v1::TENSOR_ROLE_X: return "X";
    case v1::TENSOR_ROLE_LATENT: return "LATENT";
    default: return "?";
  }
}

std::string ShapeString(const google::protobuf::RepeatedField<int64_t>& shape) {
  std::string s = "[";
  for (int i = 0; i < shape.size(); ++i) absl::StrAppend(&s, i ? ", " : "", shape[i]);
  return s + "]";
}

}  // namespace

PutAssembler::PutAssembler(cache::KvCache* cache, std::string tenant, Metrics* metrics,
                           uint32_t verify_one_in)
    : cache_(cache),
      tenant_(std::move(tenant)),
      metrics_(metrics),
      verify_one_in_(verify_one_in == 0 ? 1 : verify_one_in) {}

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
  if (auto s = ChooseMode(header); !s.ok()) return s;
  have_header_ = true;
  return absl::OkStatus();
}

absl::Status PutAssembler::ChooseMode(const v1::PutHeader& header) {
  if (!v1::Mode_IsValid(header.mode())) {
    return absl::InvalidArgumentError(absl::StrCat("header.mode: ", header.mode(), " is not a mode"));
  }
  if (!v1::Quant_IsValid(header.quant())) {
    return absl::InvalidArgumentError(
        absl::StrCat("header.quant: ", header.quant(), " is not a quantizer"));
  }
  if (!v1::PageInput_IsValid(header.input())) {
    return absl::InvalidArgumentError(
        absl::StrCat("header.input: ", header.input(), " is not a page input"));
  }
  cache::PutRequestModes asked;
  if (header.mode() != v1::MODE_UNSPECIFIED) asked.mode = FromWire(header.mode());
  if (header.quant() != v1::QUANT_UNSPECIFIED) asked.quant = FromWire(header.quant());
  if (header.input() != v1::PAGE_INPUT_UNSPECIFIED) asked.input = FromWire(header.input());
  auto plan = cache::PutPlan::Choose(prefix_.model, cache_->Policy(tenant_), asked, verify_one_in_);
  if (!plan.ok()) {
    return absl::Status(plan.status().code(), absl::StrCat("header.", plan.status().message()));
  }
  plan_.emplace(*std::move(plan));
  return absl::OkStatus();
}

v1::TensorRole PutAssembler::RoleAt(uint32_t i) const {
  switch (plan_->input()) {
    case cache::PageInput::kKv: return i == 0 ? v1::TENSOR_ROLE_K : v1::TENSOR_ROLE_V;
    case cache::PageInput::kX: return v1::TENSOR_ROLE_X;
    case cache::PageInput::kLatent: return v1::TENSOR_ROLE_LATENT;
  }
  return v1::TENSOR_ROLE_UNSPECIFIED;
}

std::vector<int64_t> PutAssembler::ShapeOf(v1::TensorRole role) const {
  const cache::PageGeometry& g = prefix_.model->geometry;
  switch (role) {
    case v1::TENSOR_ROLE_K: return {g.page_tokens, g.num_kv_heads, g.k_head_dim};
    case v1::TENSOR_ROLE_V: return {g.page_tokens, g.num_kv_heads, g.v_head_dim};
    case v1::TENSOR_ROLE_X:
      return {g.page_tokens, plan_->codec().InputCols(cache::PageInput::kX, cache::Role::kK)};
    default:
      return {g.page_tokens, plan_->codec().InputCols(cache::PageInput::kLatent, cache::Role::kK)};
  }
}

uint64_t PutAssembler::TensorBytes(uint32_t index) const {
  uint64_t n = kernels::DTypeSize(dtype_);
  for (int64_t d : ShapeOf(RoleAt(index % RolesPerLayer()))) n *= static_cast<uint64_t>(d);
  return n;
}

uint64_t PutAssembler::TensorOffset(uint32_t index) const {
  const uint32_t layer = index / RolesPerLayer();
  const uint64_t layer_bytes = cache::LayerInputBytes(plan_->codec(), plan_->input(), dtype_,
                                                      prefix_.model->geometry.page_tokens);
  return layer * layer_bytes + (index % RolesPerLayer() == 1 ? TensorBytes(index - 1) : 0);
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
    if (chunk.page() != next && !receiving_) {
      return absl::InvalidArgumentError(absl::StrCat("chunks.page: ", chunk.page(),
                                                     " but page ", next,
                                                     " is next; every page is sent, in order"));
    }
    if (receiving_) {
      return absl::InvalidArgumentError(absl::StrCat("chunks.page: page ", page_,
                                                     " is incomplete (", Missing(),
                                                     ") when page ", chunk.page(), " starts"));
    }
    if (auto s = StartPage(chunk.page()); !s.ok()) return s;
  } else if (!receiving_) {
    return absl::InvalidArgumentError(
        absl::StrCat("chunks.page: page ", page_, " was already complete in this stream"));
  }

  if (chunk.layer() >= g.num_layers) {
    return absl::InvalidArgumentError(absl::StrCat("chunks.layer: ", chunk.layer(),
                                                   " but the model has ", g.num_layers,
                                                   " layers"));
  }
  uint32_t slot = RolesPerLayer();
  for (uint32_t i = 0; i < RolesPerLayer(); ++i) {
    if (chunk.role() == RoleAt(i)) slot = i;
  }
  if (slot == RolesPerLayer()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "chunks.role: ", chunk.role(), " is not ",
        plan_->input() == cache::PageInput::kKv ? "K or V" : RoleName(RoleAt(0)),
        ", the tensors of header.input"));
  }
  const uint32_t index = chunk.layer() * RolesPerLayer() + slot;
  TensorState& t = tensors_[index];
  const std::string where = absl::StrCat(" (page ", page_, " layer ", chunk.layer(), " ",
                                         RoleName(chunk.role()), ")");
  if (chunk.offset() == 0 && !t.started) {
    if (auto s = StartTensor(chunk, index); !s.ok()) return s;
  } else if (chunk.has_header()) {
    return absl::InvalidArgumentError(
        absl::StrCat("chunks.header: only the chunk at offset 0 carries it", where));
  }
  if (!t.started) {
    return absl::InvalidArgumentError(
        absl::StrCat("chunks.offset: ", chunk.offset(), " but the tensor has not started", where));
  }
  const uint64_t size = TensorBytes(index);
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
  uint8_t* dst = input_bytes_.data() + TensorOffset(index) + t.received;
  std::memcpy(dst, chunk.data().data(), chunk.data().size());
  t.crc = kernels::Crc32c(t.crc, chunk.data().data(), chunk.data().size());
  t.received += chunk.data().size();
  if (t.received < size) return absl::OkStatus();

  if (t.crc != t.expected_crc) {
    return absl::DataLossError(absl::StrFormat(
        "chunks.header.crc32c: 0x%08x but the data has 0x%08x%s", t.expected_crc, t.crc, where));
  }
  if (++tensors_done_ == tensors_.size()) return CompletePage();
  return absl::OkStatus();
}

absl::Status PutAssembler::StartPage(uint32_t page) {
  page_ = page;
  tensors_.assign(RolesPerLayer() * prefix_.model->geometry.num_layers, TensorState{});
  tensors_done_ = 0;
  receiving_ = true;
  input_bytes_.clear();
  return absl::OkStatus();
}

absl::Status PutAssembler::StartTensor(const v1::TensorChunk& chunk, uint32_t index) {
  const std::string where = absl::StrCat(" (page ", page_, " layer ", chunk.layer(), " ",
                                         RoleName(chunk.role()), ")");
  if (!chunk.has_header()) {
    return absl::InvalidArgumentError(
        absl::StrCat("chunks.header: missing on the tensor's first chunk", where));
  }
  const v1::TensorHeader& h = chunk.header();
  if (!kernels::IsValidDType(h.dtype())) {
    return absl::InvalidArgumentError(absl::StrCat("chunks.header.dtype: ", h.dtype(),
                                                   " is not fp32, fp16 or bf16", where));
  }
  const auto dtype = FromWire(h.dtype());
  const bool first_tensor_of_page = input_bytes_.empty();
  if (!first_tensor_of_page && dtype != dtype_) {
    return absl::InvalidArgumentError(absl::StrCat(
        "chunks.header.dtype: ", kernels::DTypeName(dtype), " but the page's other tensors are ",
        kernels::DTypeName(dtype_), where));
  }
  const std::vector<int64_t> want = ShapeOf(chunk.role());
  const auto& shape = h.shape();
  if (!std::equal(shape.begin(), shape.end(), want.begin(), want.end())) {
    std::string w = "[";
    for (size_t i = 0; i < want.size(); ++i) absl::StrAppend(&w, i ? ", " : "", want[i]);
    return absl::InvalidArgumentError(absl::StrCat("chunks.header.shape: ", ShapeString(shape),
                                                   ", expected ", w, "]", where));
  }
  if (first_tensor_of_page) {
    const uint64_t payload =
        prefix_.model->geometry.num_layers *
        cache::LayerInputBytes(plan_->codec(), plan_->input(), dtype,
                               prefix_.model->geometry.page_tokens);
    auto reservation = cache_->ReserveInflight(tenant_, payload + cache::kPageOverheadBytes);
    if (!reservation.ok()) {
      return absl::Status(reservation.status().code(),
                          absl::StrCat(reservation.status().message(), where));
    }
    reservation_.emplace(*std::move(reservation));
    dtype_ = dtype;
    input_bytes_.resize(payload);
  }
  TensorState& t = tensors_[index];
  t.started = true;
  t.expected_crc = h.crc32c();
  return absl::OkStatus();
}

absl::Status PutAssembler::CompletePage() {
  receiving_ = false;
  auto page = std::make_shared<cache::Page>();
  page->key = prefix_.keys[page_];
  page->tenant = tenant_;
  page->model = prefix_.model->fingerprint;
  page->dtype = dtype_;
  page->geometry = prefix_.model->geometry;
  auto outcomes = plan_->Encode(input_bytes_.data(), static_cast<uint32_t>(page_), page.get());
  input_bytes_.clear();
  input_bytes_.shrink_to_fit();
  if (!outcomes.ok()) {
    reservation_.reset();
    return outcomes.status();
  }
  bool measured = false;
  for (const cache::LayerOutcome& o : *outcomes) {
    if (o.fallback != cache::FallbackReason::kNone) {
      response_.set_layers_fallen_back(response_.layers_fallen_back() + 1);
    }
    if (o.measured_error >= 0) {
      measured = true;
      if (o.fallback == cache::FallbackReason::kNone) {
        response_.set_max_measured_error(std::max(response_.max_measured_error(), o.measured_error));
      }
    }
    if (metrics_ != nullptr) metrics_->RecordLayer(tenant_, plan_->requested_mode(), o);
  }
  if (!plan_->forced_full_reason().empty()) {
    response_.set_layers_fallen_back(response_.layers_fallen_back() + outcomes->size());
    if (metrics_ != nullptr) {
      metrics_->RecordFallbacks(tenant_, plan_->requested_mode(), plan_->forced_full_reason(),
                                outcomes->size());
    }
  }
  if (measured) response_.set_pages_measured(response_.pages_measured() + 1);
  const uint64_t bytes = page->StoredBytes();
  auto result = cache_->Insert(std::move(page));
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
  for (uint32_t i = 0; i < tensors_.size(); ++i) {
    const TensorState& t = tensors_[i];
    if (!t.started || t.received < TensorBytes(i)) {
      return absl::StrCat("layer ", i / RolesPerLayer(), " ",
                          RoleName(RoleAt(i % RolesPerLayer())), " has ", t.received,
                          t.started ? absl::StrCat(" of ", TensorBytes(i)) : std::string(),
                          " bytes");
    }
  }
  return "nothing missing";
}

absl::Status PutAssembler::Finish() {
  if (!have_header_) return absl::InvalidArgumentError("header: the stream carried no message");
  if (receiving_) {
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
