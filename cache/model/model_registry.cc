#include "cache/model/model_registry.h"

#include <filesystem>
#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "cache/model/attention_weights.h"

namespace slimkv::cache {

namespace fs = std::filesystem;

std::shared_ptr<const ModelCodec> RegisteredModel::codec() const {
  std::lock_guard<std::mutex> lock(mu_);
  return codec_;
}

FactorsState RegisteredModel::factors(std::string* detail) const {
  std::lock_guard<std::mutex> lock(mu_);
  if (detail != nullptr) *detail = detail_;
  return state_;
}

const ModelCodec& RegisteredModel::best_codec(std::shared_ptr<const ModelCodec>* hold) const {
  *hold = codec();
  return *hold != nullptr ? **hold : *full_codec;
}

ModelRegistry::ModelRegistry(uint64_t max_page_bytes, uint32_t max_models,
                             std::string factor_dir, CodecOptions codec_options)
    : max_page_bytes_(max_page_bytes),
      max_models_(max_models),
      factor_store_(factor_dir.empty() ? std::nullopt
                                       : std::optional<FactorStore>(std::move(factor_dir))),
      codec_options_(codec_options) {}

ModelRegistry::~ModelRegistry() {
  stop_ = true;
  {
    std::lock_guard<std::mutex> lock(mu_);
    work_cv_.notify_all();
  }
  if (builder_.joinable()) builder_.join();
}

void ModelRegistry::WaitForCodecs() {
  std::unique_lock<std::mutex> lock(mu_);
  idle_cv_.wait(lock, [&] { return to_build_.empty() && !building_; });
}

void ModelRegistry::BuildCodecs() {
  std::unique_lock<std::mutex> lock(mu_);
  while (true) {
    work_cv_.wait(lock, [&] { return stop_ || !to_build_.empty(); });
    if (stop_) break;
    std::shared_ptr<RegisteredModel> m = std::move(to_build_.front());
    to_build_.pop_front();
    building_ = true;
    lock.unlock();
    absl::StatusOr<std::unique_ptr<const ModelCodec>> codec =
        ModelCodec::Build(m->config, m->weights, m->weights_fingerprint,
                          factor_store_ ? &*factor_store_ : nullptr, codec_options_, &stop_);
    {
      std::lock_guard<std::mutex> model_lock(m->mu_);
      if (codec.ok()) {
        m->codec_ = *std::move(codec);
        m->state_ = FactorsState::kReady;
      } else {
        m->state_ = FactorsState::kFailed;
        m->detail_ = std::string(codec.status().message());
      }
    }
    lock.lock();
    building_ = false;
    idle_cv_.notify_all();
  }
  building_ = false;
  idle_cv_.notify_all();
}

absl::StatusOr<Registration> ModelRegistry::RegisterDir(absl::string_view dir,
                                                        uint32_t page_tokens) {
  if (!fs::path(std::string(dir)).is_absolute()) {
    return absl::InvalidArgumentError("model_dir: must be an absolute path");
  }
  const fs::path config_path = fs::path(std::string(dir)) / "config.json";
  std::ifstream in(config_path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("model_dir: cannot read ", config_path.string()));
  std::stringstream text;
  text << in.rdbuf();
  auto config = ParseModelConfig(text.str());
  if (!config.ok()) return config.status();

  std::unique_ptr<SafetensorsDir> weights;
  if (auto opened = SafetensorsDir::Open(std::string(dir)); opened.ok()) {
    weights = *std::move(opened);
  } else if (!absl::IsNotFound(opened.status())) {
    return opened.status();
  }
  return Add(*std::move(config), std::move(weights), page_tokens);
}

absl::StatusOr<Registration> ModelRegistry::RegisterConfig(absl::string_view config_json,
                                                           uint32_t page_tokens) {
  auto config = ParseModelConfig(config_json);
  if (!config.ok()) return config.status();
  return Add(*std::move(config), nullptr, page_tokens);
}

absl::StatusOr<Registration> ModelRegistry::Add(ModelConfig config,
                                                std::unique_ptr<SafetensorsDir> weights,
                                                uint32_t page_tokens) {
  if (page_tokens == 0 || page_tokens > 4096 || (page_tokens & (page_tokens - 1)) != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("page_tokens: ", page_tokens, " is not a power of two in [1, 4096]"));
  }
  auto model = std::make_shared<RegisteredModel>();
  model->geometry = PageGeometry{.page_tokens = page_tokens,
                                 .num_layers = config.num_layers,
                                 .num_kv_heads = config.num_kv_heads,
                                 .k_head_dim = config.k_head_dim,
                                 .v_head_dim = config.v_head_dim};
  const uint64_t fp32_bytes = model->geometry.PageElems() * 4;
  if (fp32_bytes > max_page_bytes_) {
    return absl::InvalidArgumentError(absl::StrCat(
        "page_tokens: a page of ", page_tokens, " tokens takes ", fp32_bytes,
        " bytes at fp32, over the daemon's max_page_bytes of ", max_page_bytes_));
  }
  auto model_fp = ModelFingerprint(config, weights.get());
  if (!model_fp.ok()) return model_fp.status();
  const uint32_t pt = page_tokens;  // little-endian on every supported host (page_key.cc)
  model->fingerprint =
      Sha256({*model_fp, {reinterpret_cast<const uint8_t*>(&pt), sizeof(pt)}});
  model->weights_fingerprint = *model_fp;
  model->model_id = ToHex(model->fingerprint);
  model->full_codec = ModelCodec::WithoutWeights(config);
  model->config = std::move(config);
  model->weights = std::move(weights);
  model->state_ = model->weights ? FactorsState::kPending : FactorsState::kNoWeights;

  std::lock_guard<std::mutex> lock(mu_);
  if (models_.size() >= max_models_ && !models_.contains(model->model_id)) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "model: ", models_.size(), " models are registered, the daemon's max_models"));
  }
  auto [it, inserted] = models_.try_emplace(model->model_id, model);
  if (inserted && model->weights) {
    to_build_.push_back(model);
    if (!builder_.joinable()) builder_ = std::thread([this] { BuildCodecs(); });
    work_cv_.notify_one();
  }
  return Registration{.model = it->second, .already_registered = !inserted};
}

std::shared_ptr<const RegisteredModel> ModelRegistry::Find(absl::string_view model_id) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = models_.find(model_id);
  return it == models_.end() ? nullptr : it->second;
}

size_t ModelRegistry::size() const {
  std::lock_guard<std::mutex> lock(mu_);
  return models_.size();
}

}  // namespace slimkv::cache
