// Page keys: the daemon-computed chain of SHA-256 digests that names every cached page.
//
//   root    = SHA-256(model_fingerprint[32] ‖ tenant namespace bytes)
//   key[0]  = SHA-256(root   ‖ tokens of page 0 as uint32 little-endian)
//   key[i]  = SHA-256(key[i-1] ‖ tokens of page i as uint32 little-endian)
//
// so a page's key names the whole prefix up to and including it, and two engines agree on keys
// by construction. docs/page-keys.md gives the rule byte by byte with a worked example.
//
// Thread-safety: stateless functions.
#pragma once

#include <array>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "cache/model/sha256.h"

namespace slimkv::cache {

using PageKey = Digest;

Digest RootKey(const Digest& model_fingerprint, absl::string_view tenant);

// Keys of the whole pages of `tokens` (tokens.size() / page_tokens of them; a trailing partial
// page has none). REQUIRES: page_tokens > 0.
std::vector<PageKey> ChainPageKeys(const Digest& root, std::span<const uint32_t> tokens,
                                   uint32_t page_tokens);

struct DigestHash {
  size_t operator()(const Digest& d) const {
    size_t h;
    static_assert(sizeof(h) <= sizeof(Digest));
    __builtin_memcpy(&h, d.data(), sizeof(h));  // the digest is already uniformly distributed
    return h;
  }
};

}  // namespace slimkv::cache
