#include "kernels/crc32c.h"

#include <cstring>
#include <string>
#include <vector>

#include <gtest/gtest.h>

namespace slimkv::kernels {
namespace {

// Test vectors from RFC 3720 (iSCSI), appendix B.4.
TEST(Crc32c, Rfc3720Vectors) {
  std::vector<uint8_t> zeros(32, 0x00), ones(32, 0xff), inc(32), dec(32);
  for (int i = 0; i < 32; ++i) inc[i] = static_cast<uint8_t>(i), dec[i] = static_cast<uint8_t>(31 - i);
  EXPECT_EQ(Crc32c(0, zeros.data(), 32), 0x8a9136aau);
  EXPECT_EQ(Crc32c(0, ones.data(), 32), 0x62a8ab43u);
  EXPECT_EQ(Crc32c(0, inc.data(), 32), 0x46dd794eu);
  EXPECT_EQ(Crc32c(0, dec.data(), 32), 0x113fdb5cu);
  const std::string check = "123456789";
  EXPECT_EQ(Crc32c(0, check.data(), check.size()), 0xe3069283u);
}

TEST(Crc32c, ExtendEqualsWhole) {
  std::string s(1000, '\0');
  for (size_t i = 0; i < s.size(); ++i) s[i] = static_cast<char>(i * 7 + 3);
  const uint32_t whole = Crc32c(0, s.data(), s.size());
  for (size_t cut : {0, 1, 7, 8, 9, 500, 999, 1000}) {
    EXPECT_EQ(Crc32c(Crc32c(0, s.data(), cut), s.data() + cut, s.size() - cut), whole) << cut;
  }
}

}  // namespace
}  // namespace slimkv::kernels
