#include "cache/codec/put_plan.h"

#include <utility>

#include "absl/strings/str_cat.h"

namespace slimkv::cache {

absl::StatusOr<PutPlan> PutPlan::Choose(std::shared_ptr<const RegisteredModel> model,
                                        const TenantPolicy& policy,
                                        const PutRequestModes& request, uint32_t verify_one_in) {
  PutPlan plan;
  plan.requested_mode_ = request.mode.value_or(policy.mode);
  const Quant quant = request.quant.value_or(policy.quant);
  const PageInput input = request.input;
  plan.codec_ = &model->best_codec(&plan.codec_hold_);
  Mode mode = plan.requested_mode_;
  const FactorsState factors = model->factors();
  if (factors == FactorsState::kPending || factors == FactorsState::kFailed) {
    // Without the derived matrices only full from K and V can be stored.
    if (input != PageInput::kKv) {
      return absl::UnavailableError(absl::StrCat(
          "input: the model's derived matrices are ",
          factors == FactorsState::kPending
              ? "still being computed (retry; RegisterModel says when they are ready)"
              : "unavailable (RegisterModel says why)",
          "; only K and V can be stored now"));
    }
    if (mode != Mode::kFull || quant != Quant::kNone) {
      plan.forced_full_reason_ =
          factors == FactorsState::kPending ? "factors_pending" : "factors_failed";
    }
    mode = Mode::kFull;
  } else if (absl::Status fits = plan.codec_->Supports(mode, input); !fits.ok()) {
    if (request.mode.has_value() || !plan.codec_->Supports(Mode::kFull, input).ok()) {
      return absl::FailedPreconditionError(absl::StrCat("mode: ", fits.message()));
    }
    plan.forced_full_reason_ = "not_applicable";
    mode = Mode::kFull;
  }
  plan.encode_.mode = mode;
  plan.encode_.quant = plan.forced_full_reason_.empty() ? quant : Quant::kNone;
  plan.encode_.input = input;
  plan.encode_.tolerance = policy.tolerance;
  plan.verify_one_in_ = verify_one_in == 0 ? 1 : verify_one_in;
  plan.model_ = std::move(model);
  return plan;
}

absl::StatusOr<std::vector<LayerOutcome>> PutPlan::Encode(const uint8_t* input,
                                                          uint32_t page_index, Page* page) const {
  EncodeOptions options = encode_;
  options.verify = page->key[0] % verify_one_in_ == 0 || !model_->first_page_put.exchange(true);
  auto outcomes = EncodePage(*codec_, options, input, page_index, page);
  if (outcomes.ok()) page->mode = requested_mode_;
  return outcomes;
}

}  // namespace slimkv::cache
