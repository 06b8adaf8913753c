#include "daemon/factors_handler.h"

#include <algorithm>
#include <cmath>
#include <string>

#include "absl/strings/str_cat.h"
#include "daemon/unary_call.h"
#include "daemon/wire_enums.h"
#include "kernels/crc32c.h"
#include "kernels/dtype.h"
#include "kernels/rope.h"

namespace slimkv::daemon {
namespace {

struct Factor {
  std::string name;
  const float* data;
  std::vector<int64_t> shape;
};

// Appends one factor's chunks, converted to `dtype`, to `out`.
void AppendFactor(const Factor& f, kernels::DType dtype, uint32_t chunk_bytes,
                  std::vector<v1::GetLayerFactorsResponse>* out, uint64_t* packed) {
  int64_t n = 1;
  for (int64_t s : f.shape) n *= s;
  std::string bytes(static_cast<size_t>(n) * kernels::DTypeSize(dtype), '\0');
  kernels::ConvertDType(f.data, kernels::DType::kF32, bytes.data(), dtype, static_cast<size_t>(n));
  for (uint64_t off = 0; off < bytes.size() || off == 0;) {
    if (*packed >= chunk_bytes || out->empty()) {
      out->emplace_back();
      *packed = 0;
    }
    const uint64_t take = std::min<uint64_t>(chunk_bytes - *packed, bytes.size() - off);
    v1::FactorChunk* c = out->back().add_chunks();
    if (off == 0) {
      c->set_name(f.name);
      v1::TensorHeader* h = c->mutable_header();
      h->set_dtype(ToWire(dtype));
      for (int64_t s : f.shape) h->add_shape(s);
      h->set_crc32c(kernels::Crc32c(0, bytes.data(), bytes.size()));
      h->set_bytes(bytes.size());
    }
    c->set_offset(off);
    c->set_data(bytes.data() + off, take);
    off += take;
    *packed += take;
    if (bytes.empty()) break;
  }
}

void SetRope(const kernels::RopeTable* rope, v1::LayerFactorsInfo* info) {
  if (rope == nullptr) return;
  const kernels::RopeParams& p = rope->params();
  v1::RopeInfo* r = info->mutable_rope();
  for (double f : kernels::RopeInvFreq(p)) r->add_inv_freq(f);
  r->set_rotary_dim(p.rotary_dim);
  r->set_interleaved(p.pairing == kernels::RopePairing::kInterleaved);
  r->set_attention_factor(p.attention_factor_in_cos_sin ? kernels::RopeAttentionFactor(p) : 1.0);
  r->set_fp32_angles(p.fp32_angles);
}

}  // namespace

absl::StatusOr<std::vector<v1::GetLayerFactorsResponse>> BuildLayerFactors(
    cache::KvCache& cache, const v1::GetLayerFactorsRequest& request, uint32_t chunk_bytes) {
  absl::StatusOr<std::shared_ptr<const cache::RegisteredModel>> found =
      cache.FindModel(request.model_id());
  if (!found.ok()) return found.status();
  const std::shared_ptr<const cache::RegisteredModel>& model = *found;
  const v1::Mode mode = request.mode();
  if (mode != v1::MODE_SLIM && mode != v1::MODE_XCACHE && mode != v1::MODE_LATENT) {
    return absl::InvalidArgumentError("mode: want MODE_SLIM, MODE_XCACHE or MODE_LATENT");
  }
  const v1::DType dt = request.dtype() == v1::DTYPE_UNSPECIFIED ? v1::DTYPE_FP32 : request.dtype();
  if (!v1::DType_IsValid(dt)) return absl::InvalidArgumentError("dtype: unknown");
  const kernels::DType dtype = FromWire(dt);
  const uint32_t layers = model->geometry.num_layers;
  if (request.layer() >= layers) {
    return absl::InvalidArgumentError(
        absl::StrCat("layer: ", request.layer(), " >= num_layers ", layers));
  }
  std::string detail;
  if (model->factors(&detail) != cache::FactorsState::kReady) {
    return absl::FailedPreconditionError(absl::StrCat(
        "model_id: the model's factors are not ready (", detail.empty() ? "pending" : detail,
        "); register with weights and wait for FACTORS_READY"));
  }
  const std::shared_ptr<const cache::ModelCodec> codec = model->codec();
  const uint32_t l = request.layer();
  v1::LayerFactorsInfo info;
  info.set_layer(l);
  info.set_mode(mode);
  std::vector<Factor> factors;
  if (codec->is_mla()) {
    if (mode != v1::MODE_LATENT) {
      return absl::FailedPreconditionError("mode: an MLA model's pages are stored latent or full");
    }
    const kernels::LatentLayout& lat = codec->latent(l);
    info.set_d_c(lat.d_c);
    info.set_rope_dim(lat.rope_dim);
    info.set_shared_rope(lat.shared_rope);
    if (lat.rope_cols != nullptr) {
      info.mutable_rope_cols()->Add(lat.rope_cols, lat.rope_cols + lat.heads * lat.rope_dim);
    }
    factors.push_back({"w_uk", lat.w_uk, {lat.d_c, int64_t{lat.heads} * lat.d_nope()}});
    factors.push_back({"w_uv", lat.w_uv, {lat.d_c, int64_t{lat.heads} * lat.v_head_dim}});
  } else {
    const kernels::CodecMode op = mode == v1::MODE_SLIM     ? kernels::CodecMode::kSlim
                                  : mode == v1::MODE_XCACHE ? kernels::CodecMode::kXcacheGivenX
                                                            : kernels::CodecMode::kProjected;
    absl::StatusOr<kernels::KvCodecLayer> kv = codec->kv(l, op);
    if (!kv.ok()) return kv.status();
    const kernels::KvProjection& p = kv->proj;
    const int64_t e = p.e(), d = p.d;
    SetRope(kv->rope, &info);
    if (mode == v1::MODE_SLIM) {
      factors.push_back({"w_kv", kv->w_kv, {e, e}});
    } else if (mode == v1::MODE_XCACHE) {
      factors.push_back({"w_k", p.w_k, {d, e}});
      factors.push_back({"w_v", p.w_v, {d, e}});
    } else {
      info.set_rank(kv->rank);
      info.mutable_kept_k_cols()->Add(kv->kept_k_cols, kv->kept_k_cols + kv->n_kept);
      factors.push_back({"basis", kv->basis, {kv->n_proj(), kv->rank}});
    }
    if (p.b_k != nullptr) factors.push_back({"b_k", p.b_k, {e}});
    if (p.b_v != nullptr) factors.push_back({"b_v", p.b_v, {e}});
  }
  std::vector<v1::GetLayerFactorsResponse> out(1);
  for (const Factor& f : factors) {
    if (f.data == nullptr) {
      return absl::InternalError(absl::StrCat("layer ", l, ": factor ", f.name, " is missing"));
    }
    info.add_names(f.name);
  }
  *out[0].mutable_info() = std::move(info);
  uint64_t packed = 0;
  for (const Factor& f : factors) AppendFactor(f, dtype, std::max<uint32_t>(chunk_bytes, 1), &out, &packed);
  return out;
}

namespace {

class FactorsReactor final : public grpc::ServerWriteReactor<v1::GetLayerFactorsResponse> {
 public:
  FactorsReactor(grpc::CallbackServerContext* ctx, const Authenticator& auth, Metrics* metrics,
                 cache::KvCache& cache, const v1::GetLayerFactorsRequest& request,
                 uint32_t chunk_bytes)
      : timer_(metrics, "GetLayerFactors") {
    absl::StatusOr<std::string> tenant = auth.Authenticate(ctx->client_metadata());
    if (!tenant.ok()) {
      Finish(timer_.Done(tenant.status()));
      return;
    }
    timer_.set_tenant(*tenant);
    absl::StatusOr<std::vector<v1::GetLayerFactorsResponse>> msgs =
        BuildLayerFactors(cache, request, chunk_bytes);
    if (!msgs.ok()) {
      Finish(timer_.Done(msgs.status()));
      return;
    }
    msgs_ = *std::move(msgs);
    Next();
  }

  void OnWriteDone(bool ok) override {
    if (!ok) {
      Finish(timer_.Done(absl::CancelledError("the client went away")));
      return;
    }
    Next();
  }
  void OnDone() override { delete this; }

 private:
  void Next() {
    if (next_ == msgs_.size()) {
      Finish(timer_.Done(absl::OkStatus()));
      return;
    }
    StartWrite(&msgs_[next_++]);
  }

  RpcTimer timer_;
  std::vector<v1::GetLayerFactorsResponse> msgs_;
  size_t next_ = 0;
};

}  // namespace

grpc::ServerWriteReactor<v1::GetLayerFactorsResponse>* StartLayerFactorsStream(
    grpc::CallbackServerContext* ctx, const Authenticator& auth, Metrics* metrics,
    cache::KvCache& cache, const v1::GetLayerFactorsRequest& request, uint32_t chunk_bytes) {
  return new FactorsReactor(ctx, auth, metrics, cache, request, chunk_bytes);
}

}  // namespace slimkv::daemon
