// CRC32C (Castagnoli polynomial 0x1EDC6F41, reflected), the checksum of page tensors on the wire
// and of page records on disk.
//
// Debian 12 ships no C++ CRC32C library (absl/crc arrived in Abseil 20230125; RocksDB keeps its
// own internal), so this is the one hand-written primitive: the SSE4.2 crc32 instruction where
// the CPU has it, a byte table otherwise. Tested against RFC 3720 vectors and RocksDB's
// implementation.
//
// Thread-safety: stateless; safe to call concurrently.
#pragma once

#include <cstddef>
#include <cstdint>

namespace slimkv::kernels {

// Returns the CRC32C of data[0, n) continuing from `crc` (the value returned for the bytes
// before; 0 to start). Crc32c(Crc32c(0, a), b) == Crc32c(0, a ‖ b).
uint32_t Crc32c(uint32_t crc, const void* data, size_t n);

}  // namespace slimkv::kernels
