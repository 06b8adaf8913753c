// Redis Cluster key-to-slot mapping: slot = CRC16-XMODEM(key) mod 16384, where only the part
// between the first '{' and the next '}' is hashed when that part is non-empty (a "hash tag").
// This is the Redis Cluster specification's algorithm (cluster-spec, "Keys distribution model"),
// so a key lands on the slot `CLUSTER KEYSLOT` reports. Pure functions: thread-safe.
#pragma once

#include <cstdint>

#include "absl/strings/string_view.h"

namespace slimkv::remote::internal {

inline constexpr int kClusterSlots = 16384;

// CRC16, polynomial 0x1021, initial value 0, no reflection (XMODEM); CRC16("123456789") = 0x31C3.
uint16_t Crc16Xmodem(absl::string_view bytes);

// The hash slot (0..16383) that owns `key`, hash tags honoured.
int KeySlot(absl::string_view key);

}  // namespace slimkv::remote::internal
