#include "clients/cpp/token_list.h"

#include <fstream>
#include <sstream>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace slimkv::client {

absl::StatusOr<std::vector<uint32_t>> ParseTokenList(absl::string_view spec) {
  std::string text(spec);
  if (absl::ConsumePrefix(&spec, "range:")) {
    std::vector<absl::string_view> parts = absl::StrSplit(spec, ':');
    uint32_t start = 0, count = 0;
    if (parts.size() != 2 || !absl::SimpleAtoi(parts[0], &start) ||
        !absl::SimpleAtoi(parts[1], &count)) {
      return absl::InvalidArgumentError(absl::StrCat("tokens: bad range '", text, "'"));
    }
    std::vector<uint32_t> out(count);
    for (uint32_t i = 0; i < count; ++i) out[i] = start + i;
    return out;
  }
  if (absl::ConsumePrefix(&spec, "@")) {
    std::ifstream in{std::string(spec)};
    if (!in) return absl::NotFoundError(absl::StrCat("tokens: cannot read ", spec));
    std::stringstream s;
    s << in.rdbuf();
    text = s.str();
  }
  std::vector<uint32_t> out;
  for (absl::string_view t : absl::StrSplit(text, absl::ByAnyChar(", \t\n"), absl::SkipEmpty())) {
    uint32_t v;
    if (!absl::SimpleAtoi(t, &v)) {
      return absl::InvalidArgumentError(absl::StrCat("tokens: '", t, "' is not a token id"));
    }
    out.push_back(v);
  }
  return out;
}

}  // namespace slimkv::client
