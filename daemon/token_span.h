// A request's repeated token ids as the span the cache takes, without a copy.
#pragma once

#include <cstdint>
#include <span>

#include <google/protobuf/repeated_field.h>

namespace slimkv::daemon {

inline std::span<const uint32_t> TokenSpan(const google::protobuf::RepeatedField<uint32_t>& t) {
  return {t.data(), static_cast<size_t>(t.size())};
}

}  // namespace slimkv::daemon
