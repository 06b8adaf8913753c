// The RocksDB options DiskTier opens its database with, for the tier and for benchmarks that
// compare it with RocksDB used directly.
//
// Thread-safety: stateless functions.
#pragma once

#include <rocksdb/options.h>

#include "cache/store/disk_tier.h"

namespace slimkv::cache::internal {

rocksdb::Options DiskTierDbOptions(const DiskTierOptions& options);
rocksdb::WriteOptions DiskTierWriteOptions(const DiskTierOptions& options);

}  // namespace slimkv::cache::internal
