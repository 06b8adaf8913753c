// PutPlan: how the pages of one Put stream are stored. It chooses the mode and quantizer from
// the request, the tenant's policy and the state of the model's derived matrices, holds the
// codec that encodes the pages, and samples which pages are verified. The daemon parses the
// wire; the policy lives here.
//
// The choice (docs/codecs.md "Fallback"):
//   - a mode or quantizer left unspecified comes from the tenant's policy;
//   - while the derived matrices are pending or failed, only full from K and V can be stored:
//     another input is UNAVAILABLE, and any other mode or quantizer is stored in full,
//     unquantized, for the reason "factors_pending" or "factors_failed";
//   - a mode the model cannot take is FAILED_PRECONDITION when the request named it, else (the
//     policy's mode) it is stored in full for the reason "not_applicable".
// Verification: one page in `verify_one_in` (by key), and the first page put for each model.
//
// Thread-safety: immutable after Choose; Encode may be called concurrently.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "cache/store/kv_cache.h"
#include "cache/codec/page_codec.h"

namespace slimkv::cache {

// What a Put asks for; nullopt: the tenant's policy.
struct PutRequestModes {
  std::optional<Mode> mode;
  std::optional<Quant> quant;
  PageInput input = PageInput::kKv;
};

class PutPlan {
 public:
  // Chooses how the pages of `model` are stored. Error messages name the request field
  // ("mode: ...", "input: ..."): UNAVAILABLE when `request.input` is not K and V while the
  // derived matrices are not ready; FAILED_PRECONDITION when the model cannot take the named
  // mode (or cannot take even full from this input). `verify_one_in` 0 counts as 1.
  [[nodiscard]] static absl::StatusOr<PutPlan> Choose(std::shared_ptr<const RegisteredModel> model,
                                                      const TenantPolicy& policy,
                                                      const PutRequestModes& request,
                                                      uint32_t verify_one_in);

  const ModelCodec& codec() const { return *codec_; }
  PageInput input() const { return encode_.input; }
  // The mode asked for (request or policy): what pages record and metrics are labelled with.
  Mode requested_mode() const { return requested_mode_; }
  // Why every layer is stored in full without trying the requested mode; empty when none.
  absl::string_view forced_full_reason() const { return forced_full_reason_; }

  // Encodes one page (cache/codec/page_codec.h EncodePage) with verification when sampled, and
  // records the requested mode in page->mode. `input` holds num_layers × LayerInputBytes in
  // page->dtype; page->key, tenant, model, dtype and geometry are set by the caller.
  [[nodiscard]] absl::StatusOr<std::vector<LayerOutcome>> Encode(const uint8_t* input,
                                                                 uint32_t page_index,
                                                                 Page* page) const;

 private:
  PutPlan() = default;

  std::shared_ptr<const RegisteredModel> model_;
  std::shared_ptr<const ModelCodec> codec_hold_;
  const ModelCodec* codec_ = nullptr;
  EncodeOptions encode_;
  Mode requested_mode_ = Mode::kFull;
  std::string forced_full_reason_;
  uint32_t verify_one_in_ = 1;
};

}  // namespace slimkv::cache
