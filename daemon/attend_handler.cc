#include "daemon/attend_handler.h"

#include <cmath>
#include <memory>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "cache/codec/page_attention.h"
#include "daemon/log.h"
#include "daemon/token_span.h"
#include "daemon/wire_enums.h"
#include "kernels/dtype.h"

namespace slimkv::daemon {
namespace {

// A sequence once validated: its page keys and its queries in float32.
struct Sequence {
  cache::ResolvedPrefix prefix;
  std::vector<float> q;
};

// A sequence's tokens error: the same status, its message naming sequences[i].
absl::Status InSequence(int i, const absl::Status& s) {
  if (!absl::IsInvalidArgument(s) || !absl::StartsWith(s.message(), "tokens")) return s;
  return absl::InvalidArgumentError(absl::StrCat("sequences[", i, "].", s.message()));
}

}  // namespace

absl::Status HandleAttend(cache::KvCache* cache, cache::GpuTier* gpu, const std::string& tenant,
                          const v1::AttendRequest& request, v1::AttendResponse* response,
                          Metrics* metrics) {
  const int n = request.sequences_size();
  if (n == 0 || n > kMaxAttendSequences) {
    return absl::InvalidArgumentError(absl::StrCat("sequences: ", n, " given; send 1 to ",
                                                   kMaxAttendSequences));
  }
  if (!kernels::IsValidDType(request.q_dtype())) {
    return absl::InvalidArgumentError(
        absl::StrCat("q_dtype: ", request.q_dtype(), " is not FP32, FP16 or BF16"));
  }
  const auto q_dtype = FromWire(request.q_dtype());
  std::vector<Sequence> seqs(n);
  for (int i = 0; i < n; ++i) {
    const v1::AttendSequence& in = request.sequences(i);
    absl::StatusOr<cache::ResolvedPrefix> prefix =
        cache->Resolve(tenant, request.model_id(), TokenSpan(in.tokens()));
    if (!prefix.ok()) return InSequence(i, prefix.status());
    seqs[i].prefix = *std::move(prefix);
    const cache::ModelConfig& c = seqs[i].prefix.model->config;
    if (i == 0 && request.layer() >= c.num_layers) {
      return absl::InvalidArgumentError(absl::StrCat("layer: ", request.layer(),
                                                     " but the model has ", c.num_layers,
                                                     " layers"));
    }
    const uint64_t elems = uint64_t{c.num_q_heads} * c.k_head_dim;
    const uint64_t want = elems * kernels::DTypeSize(q_dtype);
    if (in.q().size() != want) {
      return absl::InvalidArgumentError(absl::StrCat(
          "sequences[", i, "].q: ", in.q().size(), " bytes; want num_q_heads*head_dim = ",
          c.num_q_heads, "*", c.k_head_dim, " values of ", kernels::DTypeName(q_dtype), " (",
          want, " bytes)"));
    }
    seqs[i].q.resize(elems);
    kernels::ConvertDType(in.q().data(), q_dtype, seqs[i].q.data(), kernels::DType::kF32, elems);
    for (uint64_t j = 0; j < elems; ++j) {
      if (!std::isfinite(seqs[i].q[j])) {
        return absl::InvalidArgumentError(
            absl::StrCat("sequences[", i, "].q: element ", j, " is not finite"));
      }
    }
  }

  const cache::RegisteredModel& model = *seqs[0].prefix.model;
  const cache::ModelConfig& c = model.config;
  std::shared_ptr<const cache::ModelCodec> hold;
  const cache::ModelCodec& codec = model.best_codec(&hold);
  const size_t no = size_t{c.num_q_heads} * c.v_head_dim;
  cache::AttendCalls calls;
  v1::AttendResponse out;
  for (Sequence& seq : seqs) {
    std::vector<std::shared_ptr<const cache::Page>> pages;
    for (const cache::PageKey& key : seq.prefix.keys) {
      cache::Tier tier;
      std::shared_ptr<const cache::Page> page = cache->Get(key, &tier);
      if (page == nullptr) break;  // covered: the leading stored pages only
      pages.push_back(std::move(page));
    }
    const uint64_t covered = uint64_t{pages.size()} * model.geometry.page_tokens;
    if (c.sliding_window != 0 && covered >= c.sliding_window) {
      return absl::FailedPreconditionError(absl::StrCat(
          "the model uses sliding-window attention (window ", c.sliding_window,
          ") and a sequence covers ", covered, " cached tokens; Attend computes full attention"));
    }
    v1::AttendResult* r = out.add_results();
    r->set_covered_tokens(covered);
    r->mutable_o()->Resize(static_cast<int>(no), 0.0f);
    r->mutable_lse()->Resize(static_cast<int>(c.num_q_heads), 0.0f);
    if (absl::Status s = cache::AttendLayer(codec, pages, request.layer(), seq.q.data(),
                                            {r->mutable_o()->mutable_data(),
                                             r->mutable_lse()->mutable_data()},
                                            &calls, gpu);
        !s.ok()) {
      return s;
    }
  }
  if (metrics != nullptr) metrics->RecordAttendCalls(calls);
  for (const cache::AttendRun& run : calls.runs) {
    if (run.fallback != cache::GpuFallback::kError) continue;
    LogWarningOncePerMinute("gpu attend", absl::StrCat("GPU attention failed and ran on the CPU (",
                                                       "further failures this minute are only "
                                                       "counted): ", run.gpu_error.ToString()));
    break;
  }
  *response = std::move(out);
  return absl::OkStatus();
}

}  // namespace slimkv::daemon
