#include "cache/store/page_key.h"

#include <bit>

namespace slimkv::cache {

static_assert(std::endian::native == std::endian::little,
              "token ids are hashed as their in-memory little-endian bytes");

Digest RootKey(const Digest& model_fingerprint, absl::string_view tenant) {
  return Sha256({model_fingerprint,
                 {reinterpret_cast<const uint8_t*>(tenant.data()), tenant.size()}});
}

std::vector<PageKey> ChainPageKeys(const Digest& root, std::span<const uint32_t> tokens,
                                   uint32_t page_tokens) {
  const size_t pages = tokens.size() / page_tokens;
  std::vector<PageKey> keys;
  keys.reserve(pages);
  Sha256Hasher sha;
  Digest prev = root;
  for (size_t i = 0; i < pages; ++i) {
    const auto* page = reinterpret_cast<const uint8_t*>(tokens.data() + i * page_tokens);
    sha.Update(prev);
    sha.Update(page, page_tokens * sizeof(uint32_t));
    (void)sha.Finish(&prev);
    keys.push_back(prev);
  }
  return keys;
}

}  // namespace slimkv::cache
