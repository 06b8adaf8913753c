// SlimKV C++ client: a blocking wrapper over slimkv.v1.Cache for engines, the CLI and tests.
//
// Pages travel in the engine layout: for each layer, K [page_tokens, h_kv, d_k] then
// V [page_tokens, h_kv, d_v], row-major, one dtype per page. A Put may instead carry x
// [page_tokens, hidden_size] or (MLA) the latent row [page_tokens, latent_dim] per layer
// (PutOptions::input). A raw Get returns each layer's stored bytes, one after the other. The
// client splits pages into checksummed tensor chunks on Put and reassembles and verifies them on
// Get.
//
// Thread-safety: internally synchronized; one Client may serve many threads (gRPC channels
// multiplex calls).
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "kernels/dtype.h"
#include "slimkv/v1/admin.grpc.pb.h"
#include "slimkv/v1/cache.grpc.pb.h"

namespace slimkv::client {

// What the client needs to know about a registered model; from RegisterModel.
struct ModelHandle {
  std::string model_id;
  uint32_t page_tokens = 0;
  uint32_t num_layers = 0;
  uint32_t num_kv_heads = 0;
  uint32_t num_q_heads = 0;
  uint32_t k_head_dim = 0;
  uint32_t v_head_dim = 0;
  uint32_t hidden_size = 0;
  uint32_t latent_dim = 0;  // MLA only
  double softmax_scale = 0;  // Attend's logit scale (and softcap, 0 for none)
  double softcap = 0;
  v1::RegisterModelResponse::Factors factors = v1::RegisterModelResponse::FACTORS_UNSPECIFIED;

  static ModelHandle FromResponse(const v1::RegisterModelResponse& r);
  // Elements of one tensor of a page (K, V, X or LATENT).
  uint64_t TensorElems(v1::TensorRole role) const;
  // The shape of one tensor of a page.
  std::vector<int64_t> TensorShape(v1::TensorRole role) const;
  // Elements of a page in the engine layout (K and V).
  uint64_t PageElems() const;
  // Byte offset of (layer, role) in a page of `dtype` sent as `input`.
  uint64_t TensorOffset(uint32_t layer, v1::TensorRole role, kernels::DType dtype,
                        v1::PageInput input = v1::PAGE_INPUT_KV) const;
  // The tensors each layer carries for `input`, in order, and a page's elements.
  static std::vector<v1::TensorRole> InputRoles(v1::PageInput input);
  uint64_t InputPageElems(v1::PageInput input) const;
};

// How Put asks the daemon to store pages; UNSPECIFIED takes the tenant's policy.
struct PutOptions {
  v1::Mode mode = v1::MODE_UNSPECIFIED;
  v1::Quant quant = v1::QUANT_UNSPECIFIED;
  v1::PageInput input = v1::PAGE_INPUT_KV;
};

// One page in the engine layout.
struct PageData {
  kernels::DType dtype = kernels::DType::kF32;
  // Put: InputPageElems(input) × DTypeSize(dtype). Get: PageElems() × DTypeSize(dtype), or
  // with raw the stored layers one after the other (layer_bytes each).
  std::vector<uint8_t> bytes;
  v1::Mode mode = v1::MODE_FULL;
  v1::Quant quant = v1::QUANT_NONE;
  v1::Tier tier = v1::TIER_UNSPECIFIED;
  std::vector<v1::Mode> layer_modes;    // Get: the mode each layer is stored in
  std::vector<v1::Quant> layer_quants;  // raw Get
  std::vector<uint64_t> layer_bytes;    // raw Get
};

// One sequence of an Attend call: its tokens so far and the decode step's queries
// [num_q_heads, k_head_dim] (post-RoPE), sent in the call's q dtype.
struct AttendQuery {
  std::span<const uint32_t> tokens;
  std::span<const float> q;
};

// Attention over the stored pages of one sequence (proto AttendResult).
struct AttendOutput {
  uint64_t covered_tokens = 0;  // whole stored pages from the first; the engine does the rest
  std::vector<float> o;         // [num_q_heads, v_head_dim]
  std::vector<float> lse;       // [num_q_heads], natural log; −inf when nothing was covered
};

// TLS towards the daemon, through gRPC's SslCredentials. PEM contents rather than paths, so an
// engine may take them from a secret store; ReadTlsFiles loads them from files.
struct TlsOptions {
  // CA certificates trusted to sign the daemon's certificate; empty: gRPC's default roots.
  std::string root_certs_pem;
  // The client's certificate chain and its private key, for a daemon that requires mutual TLS
  // (tls.client_ca_file); both empty: no client certificate.
  std::string cert_chain_pem;
  std::string private_key_pem;
  // The name the daemon's certificate must carry; empty: the host part of the target.
  std::string server_name;
};

// Reads the PEM files of a TlsOptions. ca_file empty: gRPC's default roots; cert_file and
// key_file: both or neither. NOT_FOUND names the file that cannot be read; INVALID_ARGUMENT
// when only one of cert_file and key_file is given.
[[nodiscard]] absl::StatusOr<TlsOptions> ReadTlsFiles(const std::string& ca_file,
                                                      const std::string& cert_file,
                                                      const std::string& key_file);

struct ClientOptions {
  // Payload bytes per Put message; below the server's max_message_bytes.
  uint32_t chunk_bytes = 1u << 20;
  // Largest message accepted from the server.
  int max_receive_message_bytes = 4 << 20;
  // Per-call deadline in seconds; 0 for none.
  double deadline_seconds = 60;
  // The tenant's bearer token, sent as `authorization: Bearer <token>`; empty sends none (a
  // daemon without tenants accepts that).
  std::string token;
  // TLS; nullopt: plaintext (a daemon serving TLS refuses the connection: UNAVAILABLE).
  std::optional<TlsOptions> tls;
};

class Client {
 public:
  // Connects to `target` (host:port), over TLS when options.tls is set, else plaintext. The
  // connection is made lazily: a refused handshake shows as UNAVAILABLE on the first call.
  static std::unique_ptr<Client> Connect(const std::string& target, ClientOptions options = {});

  [[nodiscard]] absl::StatusOr<ModelHandle> RegisterModelDir(const std::string& dir,
                                                             uint32_t page_tokens = 0);
  [[nodiscard]] absl::StatusOr<ModelHandle> RegisterModelConfig(const std::string& config_json,
                                                                uint32_t page_tokens = 0);
  [[nodiscard]] absl::StatusOr<v1::LookupResponse> Lookup(const ModelHandle& model,
                                                          std::span<const uint32_t> tokens);
  // Puts pages [first_page, first_page + pages.size()) of `tokens`.
  // REQUIRES: first_page + pages.size() == tokens.size() / page_tokens (the server checks).
  [[nodiscard]] absl::StatusOr<v1::PutResponse> Put(const ModelHandle& model,
                                                    std::span<const uint32_t> tokens,
                                                    uint32_t first_page,
                                                    std::span<const PageData> pages,
                                                    const PutOptions& options = {});
  // Gets the stored pages from first_page on, each verified against its tensors' CRC32C.
  // dtype: the element type wanted; nullopt returns each page as stored.
  [[nodiscard]] absl::StatusOr<std::vector<PageData>> Get(
      const ModelHandle& model, std::span<const uint32_t> tokens, uint32_t first_page = 0,
      std::optional<kernels::DType> dtype = std::nullopt, bool raw = false);
  [[nodiscard]] absl::StatusOr<uint32_t> Delete(const ModelHandle& model,
                                                std::span<const uint32_t> tokens,
                                                uint32_t first_page = 0);
  [[nodiscard]] absl::StatusOr<v1::ExplainResponse> Explain(const std::string& model_id,
                                                            std::span<const uint32_t> tokens);
  [[nodiscard]] absl::StatusOr<v1::StatsResponse> Stats();
  // Decode attention of `layer` over each sequence's stored pages (docs/attention.md); the
  // queries travel as q_dtype (fp32, fp16 or bf16). One output per sequence, in order; merge
  // it with attention over the tokens it did not cover (kernels::MergeAttention's formula).
  // INVALID_ARGUMENT from the client when a q does not hold num_q_heads × k_head_dim values,
  // or when the daemon's answer has the wrong shape (UNKNOWN); else the daemon's status.
  [[nodiscard]] absl::StatusOr<std::vector<AttendOutput>> Attend(
      const ModelHandle& model, uint32_t layer, std::span<const AttendQuery> sequences,
      kernels::DType q_dtype = kernels::DType::kF32);

  // The Admin service (ClientOptions::token must be the admin token): every tenant's policy,
  // quotas and figures; change a tenant's (proto/slimkv/v1/admin.proto).
  [[nodiscard]] absl::StatusOr<v1::ListTenantsResponse> ListTenants();
  [[nodiscard]] absl::StatusOr<v1::SetTenantResponse> SetTenant(
      const v1::SetTenantRequest& request);

  // The generated stub, for callers that need the raw API (tests of malformed streams).
  v1::Cache::Stub* stub() { return stub_.get(); }
  // A context with the configured deadline.
  std::unique_ptr<grpc::ClientContext> NewContext() const;

 private:
  Client(const std::shared_ptr<grpc::Channel>& channel, ClientOptions options);
  [[nodiscard]] absl::StatusOr<ModelHandle> Register(const v1::RegisterModelRequest& request);

  const std::unique_ptr<v1::Cache::Stub> stub_;
  const std::unique_ptr<v1::Admin::Stub> admin_;
  const ClientOptions options_;
};

// The one conversion from grpc::Status to absl::Status on the client side.
absl::Status FromGrpcStatus(const grpc::Status& s);

}  // namespace slimkv::client
