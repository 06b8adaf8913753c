#include "cache/model/sha256.h"

#include <openssl/evp.h>

#include <algorithm>

#include "absl/strings/escaping.h"

namespace slimkv::cache {

Sha256Hasher::Sha256Hasher() : ctx_(EVP_MD_CTX_new(), EVP_MD_CTX_free) { Start(); }

void Sha256Hasher::Start() {
  ok_ = ctx_ != nullptr && EVP_DigestInit_ex(ctx_.get(), EVP_sha256(), nullptr) == 1;
}

void Sha256Hasher::Update(const void* data, size_t n) {
  ok_ = ok_ && EVP_DigestUpdate(ctx_.get(), data, n) == 1;
}

bool Sha256Hasher::Finish(Digest* out) {
  unsigned int n = 0;
  const bool ok = ok_ && EVP_DigestFinal_ex(ctx_.get(), out->data(), &n) == 1 && n == out->size();
  Start();
  return ok;
}

Digest Sha256(std::initializer_list<std::span<const uint8_t>> parts) {
  Sha256Hasher sha;
  for (std::span<const uint8_t> p : parts) sha.Update(p);
  Digest out{};
  (void)sha.Finish(&out);  // as before: an OpenSSL failure here is not reported
  return out;
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
