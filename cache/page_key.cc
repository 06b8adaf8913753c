#include "cache/page_key.h"

#include <openssl/evp.h>

#include <bit>
#include <memory>

#include "absl/strings/escaping.h"

namespace slimkv::cache {

static_assert(std::endian::native == std::endian::little,
              "token ids are hashed as their in-memory little-endian bytes");

namespace {

// One OpenSSL digest context, reused across digests: a key chain hashes once per page, and
// allocating a context each time would cost more than hashing a 16-token page.
class Sha256Context {
 public:
  Sha256Context() : ctx_(EVP_MD_CTX_new(), EVP_MD_CTX_free) {}
  Digest Of(std::initializer_list<std::span<const uint8_t>> parts) {
    EVP_DigestInit_ex(ctx_.get(), EVP_sha256(), nullptr);
    for (auto p : parts) EVP_DigestUpdate(ctx_.get(), p.data(), p.size());
    Digest out;
    unsigned int n = 0;
    EVP_DigestFinal_ex(ctx_.get(), out.data(), &n);
    return out;
  }

 private:
  std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> ctx_;
};

}  // namespace

Digest Sha256(std::initializer_list<std::span<const uint8_t>> parts) {
  return Sha256Context().Of(parts);
}

Digest RootKey(const Digest& model_fingerprint, absl::string_view tenant) {
  return Sha256({model_fingerprint,
                 {reinterpret_cast<const uint8_t*>(tenant.data()), tenant.size()}});
}

std::vector<PageKey> ChainPageKeys(const Digest& root, std::span<const uint32_t> tokens,
                                   uint32_t page_tokens) {
  const size_t pages = tokens.size() / page_tokens;
  std::vector<PageKey> keys;
  keys.reserve(pages);
  Sha256Context sha;
  Digest prev = root;
  for (size_t i = 0; i < pages; ++i) {
    const auto* page = reinterpret_cast<const uint8_t*>(tokens.data() + i * page_tokens);
    prev = sha.Of({prev, {page, page_tokens * sizeof(uint32_t)}});
    keys.push_back(prev);
  }
  return keys;
}

std::string ToHex(const Digest& d) {
  return absl::BytesToHexString(
      absl::string_view(reinterpret_cast<const char*>(d.data()), d.size()));
}

bool FromHex(absl::string_view hex, Digest* out) {
  if (hex.size() != 64) return false;
  for (char c : hex) {  // lower case only: ids are compared as strings
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  }
  const std::string bytes = absl::HexStringToBytes(hex);
  std::copy(bytes.begin(), bytes.end(), out->begin());
  return true;
}

}  // namespace slimkv::cache
