// Token lists on the command line: "1,2,3", "range:START:COUNT", or "@FILE" (whitespace- or
// comma-separated ids).
//
// Thread-safety: stateless.
#pragma once

#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace slimkv::client {

[[nodiscard]] absl::StatusOr<std::vector<uint32_t>> ParseTokenList(absl::string_view spec);

}  // namespace slimkv::client
