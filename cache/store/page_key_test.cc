#include "cache/store/page_key.h"

#include <vector>

#include <gtest/gtest.h>

namespace slimkv::cache {
namespace {

Digest Fingerprint() {
  Digest fp;
  for (int i = 0; i < 32; ++i) fp[i] = static_cast<uint8_t>(i);
  return fp;
}

// The worked example of docs/page-keys.md, computed independently with Python's hashlib:
//   root = sha256(bytes(range(32)) + b"default")
//   k0 = sha256(root + struct.pack("<4I", 1, 2, 3, 4)); k1 = sha256(k0 + pack(5, 6, 7, 2**32-1))
TEST(PageKey, MatchesDocumentedExample) {
  const Digest root = RootKey(Fingerprint(), "default");
  EXPECT_EQ(ToHex(root), "d338ece4c47e0d8bd542ef141f3c6521eac9193dbea2e238535827952fd8fe37");
  const std::vector<uint32_t> tokens = {1, 2, 3, 4, 5, 6, 7, 0xffffffffu, 9, 9};
  const auto keys = ChainPageKeys(root, tokens, 4);
  ASSERT_EQ(keys.size(), 2u);  // the trailing partial page has no key
  EXPECT_EQ(ToHex(keys[0]), "48e61253b0397950e991ac28421ad5064319d0629e9593861d53dda62d9150a7");
  EXPECT_EQ(ToHex(keys[1]), "71eb58c67efb691f945b70cfa961e2189472870c149b1b0515fde98dcecec515");
}

TEST(PageKey, KeyNamesTheWholePrefix) {
  const Digest root = RootKey(Fingerprint(), "t");
  const auto a = ChainPageKeys(root, std::vector<uint32_t>{1, 2, 3, 4}, 2);
  const auto b = ChainPageKeys(root, std::vector<uint32_t>{9, 9, 3, 4}, 2);
  EXPECT_NE(a[1], b[1]);  // same second page, different first page
  const auto other_tenant = ChainPageKeys(RootKey(Fingerprint(), "u"),
                                          std::vector<uint32_t>{1, 2, 3, 4}, 2);
  EXPECT_NE(a[0], other_tenant[0]);
}

TEST(PageKey, HexRoundTripAndRejects) {
  const Digest d = RootKey(Fingerprint(), "x");
  Digest back;
  ASSERT_TRUE(FromHex(ToHex(d), &back));
  EXPECT_EQ(back, d);
  EXPECT_FALSE(FromHex("abc", &back));
  EXPECT_FALSE(FromHex(std::string(64, 'g'), &back));
}

}  // namespace
}  // namespace slimkv::cache
