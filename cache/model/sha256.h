// SHA-256, the project's one wrapper of OpenSSL's digest (page keys, registration and model
// fingerprints), and the hex form of a digest (model ids, factor-file names).
//
// Thread-safety: Sha256() is stateless; a Sha256Hasher needs external synchronization.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <span>
#include <string>

#include "absl/strings/string_view.h"

struct evp_md_ctx_st;  // OpenSSL's EVP_MD_CTX

namespace slimkv::cache {

using Digest = std::array<uint8_t, 32>;

// SHA-256 of the concatenation of `parts`.
Digest Sha256(std::initializer_list<std::span<const uint8_t>> parts);

std::string ToHex(const Digest& d);
// Parses 64 lower-case hex digits (as ToHex writes them); false on anything else.
bool FromHex(absl::string_view hex, Digest* out);

// An incremental SHA-256 whose OpenSSL context is reused across digests (a key chain hashes once
// per page; allocating a context each time would cost more than hashing a 16-token page).
class Sha256Hasher {
 public:
  Sha256Hasher();
  void Update(const void* data, size_t n);
  void Update(std::span<const uint8_t> bytes) { Update(bytes.data(), bytes.size()); }
  // Writes the digest of everything updated since the last Finish and starts the next one.
  // False if OpenSSL failed at any step of this digest (`out` is then unspecified).
  [[nodiscard]] bool Finish(Digest* out);

 private:
  void Start();

  std::unique_ptr<evp_md_ctx_st, void (*)(evp_md_ctx_st*)> ctx_;
  bool ok_ = false;
};

}  // namespace slimkv::cache
