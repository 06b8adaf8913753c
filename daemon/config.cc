#include "daemon/config.h"

#include <algorithm>
#include <fstream>
#include <sstream>

#include <google/protobuf/io/tokenizer.h>
#include <google/protobuf/text_format.h>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "daemon/tls.h"

namespace slimkv::daemon {

namespace {

class CollectErrors : public google::protobuf::io::ErrorCollector {
 public:
  void AddError(int line, int column, const std::string& message) override {
    if (first_.empty()) first_ = absl::StrCat("line ", line + 1, " column ", column + 1, ": ", message);
  }
  const std::string& first() const { return first_; }

 private:
  std::string first_;
};

bool IsLowerHex(absl::string_view s) {
  return std::all_of(s.begin(), s.end(), [](char c) {
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
  });
}

bool IsIdentifier(absl::string_view s) {
  return !s.empty() && s.size() <= 64 && std::all_of(s.begin(), s.end(), [](char c) {
    return absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '.' || c == '-';
  });
}

}  // namespace

absl::Status FinalizePolicy(const std::string& field, v1::TenantPolicy* p) {
  if (p->mode() == v1::MODE_UNSPECIFIED) p->set_mode(v1::MODE_FULL);
  if (p->quant() == v1::QUANT_UNSPECIFIED) p->set_quant(v1::QUANT_NONE);
  if (p->error_tolerance() == 0) p->set_error_tolerance(0.01);
  if (!v1::Mode_IsValid(p->mode())) {
    return absl::InvalidArgumentError(absl::StrCat(field, ".mode: ", p->mode(), " is not a mode"));
  }
  if (!v1::Quant_IsValid(p->quant())) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, ".quant: ", p->quant(), " is not a quantizer"));
  }
  if (!(p->error_tolerance() > 0 && p->error_tolerance() <= 1)) {
    return absl::InvalidArgumentError(absl::StrCat(field, ".error_tolerance: ",
                                                   p->error_tolerance(), " is not in (0, 1]"));
  }
  return absl::OkStatus();
}

namespace {

absl::Status ValidateTenants(v1::DaemonConfig& config) {
  absl::flat_hash_set<std::string> ids, hashes;
  for (int i = 0; i < config.tenants_size(); ++i) {
    v1::TenantConfig& t = *config.mutable_tenants(i);
    const std::string field = absl::StrCat("tenants[", i, "]");
    if (absl::Status s = FinalizePolicy(field + ".policy", t.mutable_policy()); !s.ok()) return s;
    if (t.over_quota() == v1::TenantConfig::OVER_QUOTA_UNSPECIFIED) {
      t.set_over_quota(v1::TenantConfig::OVER_QUOTA_EVICT_OWN);
    }
    if (!IsIdentifier(t.id())) {
      return absl::InvalidArgumentError(absl::StrCat(
          field, ".id: '", t.id(), "' is not 1-64 characters of [A-Za-z0-9_.-]"));
    }
    if (t.id() == "unauthenticated") {
      return absl::InvalidArgumentError(absl::StrCat(
          field, ".id: 'unauthenticated' is reserved (it labels calls that failed to authenticate)"));
    }
    if (!ids.insert(t.id()).second) {
      return absl::InvalidArgumentError(absl::StrCat(field, ".id: '", t.id(), "' repeats"));
    }
    if (t.token_sha256().size() != 64 || !IsLowerHex(t.token_sha256())) {
      return absl::InvalidArgumentError(
          absl::StrCat(field, ".token_sha256: expected 64 lower-case hex digits"));
    }
    if (!hashes.insert(t.token_sha256()).second) {
      return absl::InvalidArgumentError(
          absl::StrCat(field, ".token_sha256: another tenant has the same token"));
    }
    if (!t.share_group().empty() && !IsIdentifier(t.share_group())) {
      return absl::InvalidArgumentError(absl::StrCat(
          field, ".share_group: '", t.share_group(), "' is not 1-64 characters of [A-Za-z0-9_.-]"));
    }
  }
  if (!config.admin_token_sha256().empty()) {
    if (config.admin_token_sha256().size() != 64 || !IsLowerHex(config.admin_token_sha256())) {
      return absl::InvalidArgumentError(
          "admin_token_sha256: expected 64 lower-case hex digits");
    }
    if (hashes.contains(config.admin_token_sha256())) {
      return absl::InvalidArgumentError(
          "admin_token_sha256: a tenant has the same token; the admin token must be its own");
    }
  }
  return absl::OkStatus();
}

}  // namespace

v1::DaemonConfig DefaultConfig() {
  v1::DaemonConfig c;
  c.set_listen("127.0.0.1:50551");
  c.set_metrics_listen("127.0.0.1:9551");
  c.set_data_dir("./slimkv-data");
  c.set_host_budget_bytes(4ull << 30);
  c.set_max_message_bytes(4u << 20);
  c.set_get_chunk_bytes(1u << 20);
  c.set_max_page_bytes(1ull << 30);
  c.set_explain_evicted_keys(65536);
  c.set_max_models(64);
  c.set_max_put_inflight_bytes(2ull << 30);
  c.mutable_tls();  // present and empty: plaintext, loopback only
  c.mutable_default_policy()->set_mode(v1::MODE_FULL);
  c.mutable_default_policy()->set_quant(v1::QUANT_NONE);
  c.mutable_default_policy()->set_error_tolerance(0.01);
  c.set_verify_one_in(16);
  c.set_latent_energy(0.9999);
  c.mutable_disk()->set_budget_bytes(16ull << 30);
  c.mutable_disk()->set_demotion_queue_bytes(256ull << 20);
  c.set_gpu_budget_bytes(4ull << 30);
  return c;
}

absl::StatusOr<v1::DaemonConfig> Finalize(v1::DaemonConfig config) {
  const v1::DaemonConfig d = DefaultConfig();
  if (config.listen().empty()) config.set_listen(d.listen());
  if (config.metrics_listen().empty()) config.set_metrics_listen(d.metrics_listen());
  if (config.data_dir().empty()) config.set_data_dir(d.data_dir());
  if (config.host_budget_bytes() == 0) config.set_host_budget_bytes(d.host_budget_bytes());
  if (config.max_message_bytes() == 0) config.set_max_message_bytes(d.max_message_bytes());
  if (config.get_chunk_bytes() == 0) config.set_get_chunk_bytes(d.get_chunk_bytes());
  if (config.max_page_bytes() == 0) {
    config.set_max_page_bytes(std::min(d.max_page_bytes(), config.host_budget_bytes()));
  }
  if (config.max_models() == 0) config.set_max_models(d.max_models());
  if (config.max_put_inflight_bytes() == 0) {
    config.set_max_put_inflight_bytes(d.max_put_inflight_bytes());
  }
  if (!config.has_explain_evicted_keys()) config.set_explain_evicted_keys(d.explain_evicted_keys());
  if (!config.has_gpu_budget_bytes()) config.set_gpu_budget_bytes(d.gpu_budget_bytes());
  config.mutable_tls();
  v1::DiskConfig& disk = *config.mutable_disk();
  if (disk.budget_bytes() == 0) disk.set_budget_bytes(d.disk().budget_bytes());
  if (disk.demotion_queue_bytes() == 0) {
    disk.set_demotion_queue_bytes(d.disk().demotion_queue_bytes());
  }
  if (config.verify_one_in() == 0) config.set_verify_one_in(d.verify_one_in());
  if (config.latent_energy() == 0) config.set_latent_energy(d.latent_energy());
  if (!(config.latent_energy() > 0 && config.latent_energy() <= 1)) {
    return absl::InvalidArgumentError(
        absl::StrCat("latent_energy: ", config.latent_energy(), " is not in (0, 1]"));
  }
  if (absl::Status s = FinalizePolicy("default_policy", config.mutable_default_policy());
      !s.ok()) {
    return s;
  }

  if (config.max_message_bytes() < (64u << 10)) {
    return absl::InvalidArgumentError(absl::StrCat("max_message_bytes: ",
                                                   config.max_message_bytes(),
                                                   " is below the minimum of 65536"));
  }
  if (config.max_message_bytes() > uint32_t{INT32_MAX}) {
    return absl::InvalidArgumentError(absl::StrCat("max_message_bytes: ",
                                                   config.max_message_bytes(),
                                                   " is above gRPC's limit of 2147483647"));
  }
  // A Get message packs chunks up to get_chunk_bytes of data plus framing (GetStreamer), and
  // may overshoot by one chunk's framing: leave a generous margin.
  if (uint64_t{config.get_chunk_bytes()} + 64 * 1024 > config.max_message_bytes()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "get_chunk_bytes: ", config.get_chunk_bytes(), " leaves under 64 KiB for framing within ",
        "max_message_bytes ", config.max_message_bytes()));
  }
  if (config.max_put_inflight_bytes() < config.max_page_bytes()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "max_put_inflight_bytes: ", config.max_put_inflight_bytes(), " is below max_page_bytes ",
        config.max_page_bytes(), "; the largest page could never be received"));
  }
  if (auto s = ValidateTenants(config); !s.ok()) return s;
  if (auto s = ValidateTls(config); !s.ok()) return s;
  return config;
}

absl::StatusOr<v1::DaemonConfig> LoadConfigFile(absl::string_view path) {
  std::ifstream in{std::string(path)};
  if (!in) return absl::NotFoundError(absl::StrCat("config: cannot read ", path));
  std::stringstream text;
  text << in.rdbuf();
  v1::DaemonConfig config;
  google::protobuf::TextFormat::Parser parser;
  CollectErrors errors;
  parser.RecordErrorsTo(&errors);
  if (!parser.ParseFromString(text.str(), &config)) {
    return absl::InvalidArgumentError(absl::StrCat("config ", path, ": ", errors.first()));
  }
  auto done = Finalize(std::move(config));
  if (!done.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("config ", path, ": ", done.status().message()));
  }
  return done;
}

}  // namespace slimkv::daemon
