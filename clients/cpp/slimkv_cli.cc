// slimkv: the command-line client, for debugging a running slimkvd.
//
//   slimkv [--target HOST:PORT] register MODEL_DIR
//   slimkv lookup  MODEL_DIR TOKENS
//   slimkv put     MODEL_DIR TOKENS FILE      (FILE: raw engine-layout pages, --dtype)
//   slimkv get     MODEL_DIR TOKENS [--out FILE]
//   slimkv delete  MODEL_DIR TOKENS
//   slimkv explain MODEL_DIR|MODEL_ID TOKENS
//   slimkv stats
//   slimkv admin list                          (--token_file: the admin token)
//   slimkv admin set TENANT [--mode M] [--quant Q] [--tolerance X] [--host_quota B]
//                           [--disk_quota B] [--over_quota reject|evict_own]
//   slimkv admin reset TENANT                  (back to the config's policy and quotas)
//   slimkv plan    MODEL_DIR [--json] ...       (local, no daemon: clients/cpp/plan_command.h)
//
// Every daemon command takes --tls_ca (and --tls_cert/--tls_key for mutual TLS) to connect to
// a daemon serving TLS.
// MODEL_DIR is a model directory as the daemon's host sees it (registration is idempotent).
// TOKENS: "1,2,3", "range:START:COUNT" or "@FILE".
#include <fstream>
#include <iostream>
#include <iterator>
#include <optional>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "clients/cpp/slimkv_client.h"
#ifdef SLIMKV_HAVE_BLAS
#include "clients/cpp/plan_command.h"
#endif
#include "clients/cpp/token_list.h"

ABSL_FLAG(std::string, target, "127.0.0.1:50551", "slimkvd gRPC address");
ABSL_FLAG(std::string, token_file, "",
          "File holding the tenant's bearer token (a daemon without tenants needs none)");
ABSL_FLAG(bool, tls, false,
          "Connect over TLS (implied by any --tls_* flag); without --tls_ca the daemon's "
          "certificate must be signed by one of gRPC's default roots");
ABSL_FLAG(std::string, tls_ca, "", "PEM file of the CAs that sign slimkvd's certificate");
ABSL_FLAG(std::string, tls_cert, "",
          "PEM file of this client's certificate chain, for a daemon requiring mutual TLS "
          "(with --tls_key)");
ABSL_FLAG(std::string, tls_key, "", "PEM file of --tls_cert's private key");
ABSL_FLAG(std::string, tls_server_name, "",
          "Name slimkvd's certificate must carry; default: the host part of --target");
ABSL_FLAG(uint32_t, page_tokens, 0, "Tokens per page at registration; 0: the daemon's default");
ABSL_FLAG(uint32_t, first_page, 0, "First page to put, get or delete");
ABSL_FLAG(std::string, dtype, "", "fp32, fp16 or bf16: put's input type, get's output type");
ABSL_FLAG(std::string, out, "", "get: write the pages' raw bytes to this file");
ABSL_FLAG(std::string, mode, "", "admin set: full, slim, xcache or latent");
ABSL_FLAG(std::string, quant, "", "admin set: none, fp8, int8 or int4");
ABSL_FLAG(double, tolerance, 0, "admin set: error tolerance in (0, 1]; 0 keeps it");
ABSL_FLAG(std::optional<uint64_t>, host_quota, std::nullopt,
          "admin set: host-tier quota in bytes (0: none)");
ABSL_FLAG(std::optional<uint64_t>, disk_quota, std::nullopt,
          "admin set: disk-tier quota in bytes (0: none)");
ABSL_FLAG(std::string, over_quota, "", "admin set: reject or evict_own");

namespace slimkv::client {
namespace {

int Fail(const absl::Status& s) {
  std::cerr << "slimkv: " << s << "\n";
  return 1;
}

absl::StatusOr<std::optional<kernels::DType>> DTypeFlag() {
  const std::string d = absl::GetFlag(FLAGS_dtype);
  if (d.empty()) return std::nullopt;
  if (d == "fp32") return kernels::DType::kF32;
  if (d == "fp16") return kernels::DType::kF16;
  if (d == "bf16") return kernels::DType::kBF16;
  return absl::InvalidArgumentError("--dtype: expected fp32, fp16 or bf16");
}

// TLS from the --tls* flags; nullopt when none is given (plaintext).
absl::StatusOr<std::optional<TlsOptions>> TlsFlags() {
  const std::string ca = absl::GetFlag(FLAGS_tls_ca), cert = absl::GetFlag(FLAGS_tls_cert),
                    key = absl::GetFlag(FLAGS_tls_key),
                    server_name = absl::GetFlag(FLAGS_tls_server_name);
  if (!absl::GetFlag(FLAGS_tls) && ca.empty() && cert.empty() && key.empty() &&
      server_name.empty()) {
    return std::nullopt;
  }
  auto tls = ReadTlsFiles(ca, cert, key);
  if (!tls.ok()) return tls.status();
  tls->server_name = server_name;
  return *std::move(tls);
}

// `NAME` of enum value PREFIX_NAME, case-insensitive, via the generated parser.
template <typename E, typename Parse>
absl::StatusOr<E> EnumFlag(const char* flag, const std::string& prefix, const std::string& value,
                           Parse parse) {
  E e{};
  if (!parse(prefix + absl::AsciiStrToUpper(value), &e)) {
    return absl::InvalidArgumentError(absl::StrCat("--", flag, ": unknown value '", value, "'"));
  }
  return e;
}

// SetTenantRequest from the admin-set flags, on top of the tenant's current settings.
absl::StatusOr<v1::SetTenantRequest> AdminSetRequest(const std::string& tenant,
                                                     const v1::TenantInfo& current) {
  v1::SetTenantRequest r;
  r.set_tenant(tenant);
  v1::TenantPolicy policy = current.policy();
  bool policy_set = false;
  if (const std::string m = absl::GetFlag(FLAGS_mode); !m.empty()) {
    auto mode = EnumFlag<v1::Mode>("mode", "MODE_", m, v1::Mode_Parse);
    if (!mode.ok()) return mode.status();
    policy.set_mode(*mode);
    policy_set = true;
  }
  if (const std::string q = absl::GetFlag(FLAGS_quant); !q.empty()) {
    auto quant = EnumFlag<v1::Quant>("quant", "QUANT_", q, v1::Quant_Parse);
    if (!quant.ok()) return quant.status();
    policy.set_quant(*quant);
    policy_set = true;
  }
  if (const double t = absl::GetFlag(FLAGS_tolerance); t != 0) {
    policy.set_error_tolerance(t);
    policy_set = true;
  }
  if (policy_set) *r.mutable_policy() = policy;
  v1::TenantQuotas quotas = current.quotas();
  bool quotas_set = false;
  if (auto b = absl::GetFlag(FLAGS_host_quota)) {
    quotas.set_host_quota_bytes(*b);
    quotas_set = true;
  }
  if (auto b = absl::GetFlag(FLAGS_disk_quota)) {
    quotas.set_disk_quota_bytes(*b);
    quotas_set = true;
  }
  if (const std::string o = absl::GetFlag(FLAGS_over_quota); !o.empty()) {
    auto over = EnumFlag<v1::TenantConfig::OverQuota>("over_quota", "OVER_QUOTA_", o,
                                                      v1::TenantConfig::OverQuota_Parse);
    if (!over.ok()) return over.status();
    quotas.set_over_quota(*over);
    quotas_set = true;
  }
  if (quotas_set) *r.mutable_quotas() = quotas;
  if (!policy_set && !quotas_set) {
    return absl::InvalidArgumentError(
        "admin set: nothing to change (--mode, --quant, --tolerance, --host_quota, --disk_quota, "
        "--over_quota)");
  }
  return r;
}

int RunAdmin(Client& client, const std::vector<char*>& args) {
  const std::string sub = args.size() > 2 ? args[2] : "";
  auto tenants = client.ListTenants();
  if (!tenants.ok()) return Fail(tenants.status());
  if (sub == "list") {
    std::cout << tenants->DebugString();
    return 0;
  }
  if ((sub != "set" && sub != "reset") || args.size() < 4) {
    return Fail(absl::InvalidArgumentError("admin: expected 'list', 'set TENANT' or 'reset TENANT'"));
  }
  const std::string tenant = args[3];
  v1::TenantInfo current;
  for (const auto& t : tenants->tenants()) {
    if (t.tenant() == tenant) current = t;
  }
  absl::StatusOr<v1::SetTenantRequest> request = v1::SetTenantRequest();
  if (sub == "set") {
    request = AdminSetRequest(tenant, current);
  } else {
    request->set_tenant(tenant);
    request->set_reset(true);
  }
  if (!request.ok()) return Fail(request.status());
  auto r = client.SetTenant(*request);
  if (!r.ok()) return Fail(r.status());
  std::cout << r->current().DebugString();
  return 0;
}

int Run(const std::vector<char*>& args) {
  if (args.size() < 2) {
    std::cerr << absl::ProgramUsageMessage() << "\n";
    return 2;
  }
  const std::string cmd = args[1];
  ClientOptions options;
  if (const std::string path = absl::GetFlag(FLAGS_token_file); !path.empty()) {
    std::ifstream in(path);
    if (!(in >> options.token)) return Fail(absl::NotFoundError("--token_file: cannot read " + path));
  }
  auto tls = TlsFlags();
  if (!tls.ok()) return Fail(tls.status());
  options.tls = *std::move(tls);
  auto client = Client::Connect(absl::GetFlag(FLAGS_target), options);
  if (cmd == "admin") return RunAdmin(*client, args);
  if (cmd == "stats") {
    auto s = client->Stats();
    if (!s.ok()) return Fail(s.status());
    std::cout << s->DebugString();
    return 0;
  }
  if (args.size() < 3) return Fail(absl::InvalidArgumentError(cmd + ": MODEL_DIR missing"));
  const std::string model_arg = args[2];
  absl::StatusOr<std::vector<uint32_t>> tokens = std::vector<uint32_t>{};
  if (cmd != "register") {
    if (args.size() < 4) return Fail(absl::InvalidArgumentError(cmd + ": TOKENS missing"));
    tokens = ParseTokenList(args[3]);
    if (!tokens.ok()) return Fail(tokens.status());
  }
  if (cmd == "explain" && model_arg.size() == 64 && model_arg.find('/') == std::string::npos) {
    auto e = client->Explain(model_arg, *tokens);
    if (!e.ok()) return Fail(e.status());
    std::cout << e->DebugString();
    return 0;
  }
  auto model = client->RegisterModelDir(model_arg, absl::GetFlag(FLAGS_page_tokens));
  if (!model.ok()) return Fail(model.status());
  const uint32_t first_page = absl::GetFlag(FLAGS_first_page);

  if (cmd == "register") {
    absl::PrintF("model_id %s\npage_tokens %u\nlayers %u kv_heads %u k_head_dim %u v_head_dim %u\n",
                 model->model_id, model->page_tokens, model->num_layers, model->num_kv_heads,
                 model->k_head_dim, model->v_head_dim);
  } else if (cmd == "lookup") {
    auto r = client->Lookup(*model, *tokens);
    if (!r.ok()) return Fail(r.status());
    absl::PrintF("hit_tokens %u of %u\n", r->hit_tokens(), tokens->size());
  } else if (cmd == "explain") {
    auto e = client->Explain(model->model_id, *tokens);
    if (!e.ok()) return Fail(e.status());
    std::cout << e->DebugString();
  } else if (cmd == "delete") {
    auto n = client->Delete(*model, *tokens, first_page);
    if (!n.ok()) return Fail(n.status());
    absl::PrintF("deleted %u pages\n", *n);
  } else if (cmd == "put") {
    if (args.size() < 5) return Fail(absl::InvalidArgumentError("put: FILE missing"));
    auto dtype = DTypeFlag();
    if (!dtype.ok()) return Fail(dtype.status());
    std::ifstream in(args[4], std::ios::binary);
    const std::vector<uint8_t> raw{std::istreambuf_iterator<char>(in), {}};
    const kernels::DType t = dtype->value_or(kernels::DType::kBF16);
    const uint64_t page_bytes = model->PageElems() * kernels::DTypeSize(t);
    const uint64_t pages = tokens->size() / model->page_tokens - first_page;
    if (raw.size() != pages * page_bytes) {
      return Fail(absl::InvalidArgumentError(absl::StrFormat(
          "put: %s has %u bytes; %u pages of %u bytes (%s) expected", args[4], raw.size(), pages,
          page_bytes, kernels::DTypeName(t))));
    }
    std::vector<PageData> data(pages);
    for (uint64_t p = 0; p < pages; ++p) {
      data[p].dtype = t;
      data[p].bytes.assign(raw.begin() + p * page_bytes, raw.begin() + (p + 1) * page_bytes);
    }
    auto r = client->Put(*model, *tokens, first_page, data);
    if (!r.ok()) return Fail(r.status());
    absl::PrintF("stored %u pages (%u bytes), %u already present\n", r->pages_stored(),
                 r->stored_bytes(), r->pages_present());
  } else if (cmd == "get") {
    auto dtype = DTypeFlag();
    if (!dtype.ok()) return Fail(dtype.status());
    auto pages = client->Get(*model, *tokens, first_page, *dtype);
    if (!pages.ok()) return Fail(pages.status());
    std::ofstream out;
    if (!absl::GetFlag(FLAGS_out).empty()) out.open(absl::GetFlag(FLAGS_out), std::ios::binary);
    uint64_t bytes = 0;
    for (const PageData& p : *pages) {
      bytes += p.bytes.size();
      if (out.is_open()) out.write(reinterpret_cast<const char*>(p.bytes.data()), p.bytes.size());
    }
    absl::PrintF("got %u pages, %u bytes, verified\n", pages->size(), bytes);
  } else {
    return Fail(absl::InvalidArgumentError("unknown command " + cmd));
  }
  return 0;
}

}  // namespace
}  // namespace slimkv::client

int main(int argc, char** argv) {
#ifdef SLIMKV_HAVE_BLAS
  // `plan` runs locally and parses its own options.
  if (argc >= 2 && std::string(argv[1]) == "plan") {
    return slimkv::client::RunPlan(std::vector<std::string>(argv + 2, argv + argc));
  }
#endif
  absl::SetProgramUsageMessage(
      "slimkv [--target HOST:PORT] [--token_file FILE] [--tls_ca CA.pem [--tls_cert CERT.pem\n"
      "       --tls_key KEY.pem] [--tls_server_name NAME]]\n"
      "       register|lookup|put|get|delete|explain|stats|admin ...\n"
      "  register MODEL_DIR | lookup MODEL_DIR TOKENS | put MODEL_DIR TOKENS FILE |\n"
      "  get MODEL_DIR TOKENS [--out FILE] | delete MODEL_DIR TOKENS |\n"
      "  explain MODEL_DIR|MODEL_ID TOKENS | stats |\n"
      "  admin list | admin set TENANT [--mode M] [--quant Q] [--tolerance X] [--host_quota B]\n"
      "  [--disk_quota B] [--over_quota reject|evict_own] | admin reset TENANT\n"
      "slimkv plan MODEL_DIR [--json] [--tolerance X] [--rank R | --energy F]   (local)\n"
      "TOKENS: 1,2,3 | range:START:COUNT | @FILE");
  return slimkv::client::Run(absl::ParseCommandLine(argc, argv));
}
