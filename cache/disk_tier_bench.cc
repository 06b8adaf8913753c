// disk_tier_bench: DiskTier against RocksDB used directly, in the same run.
//
// For each page size and sync setting, writes the same pages through DiskTier::Insert and as
// raw RocksDB Puts of the very records DiskTier stores (same options: internal/disk_tier_rocksdb.h),
// then reads them back through DiskTier::Get and raw Gets; throughput counts record bytes, so the
// ratio is the tier's overhead (encode + CRC + index on insert; CRC + decode on get). Each side
// runs `rounds` times, alternating, each on a fresh database; the best round counts (the machine
// is shared). Reads make as many passes as reach about 1 GiB. Then the
// index rebuild of a 100k-record database of small pages.
//
// Usage: disk_tier_bench [--dir=DIR] [--mib=N] [--rounds=N] [--rebuild_records=N]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include <rocksdb/db.h>

#include "absl/strings/strip.h"
#include "absl/strings/numbers.h"
#include "cache/disk_record.h"
#include "cache/disk_tier.h"
#include "cache/internal/disk_tier_rocksdb.h"
#include "kernels/crc32c.h"

namespace slimkv::cache {
namespace {

using Clock = std::chrono::steady_clock;

double Seconds(const std::function<void()>& f) {
  const auto start = Clock::now();
  f();
  return std::chrono::duration<double>(Clock::now() - start).count();
}

void Check(bool ok, const char* what) {
  if (!ok) {
    std::fprintf(stderr, "disk_tier_bench: %s failed\n", what);
    std::exit(1);
  }
}

// `count` pages of `payload_bytes` each (f16, 16 tokens, 8 KV heads, head dim 128 — Llama-like
// layers — with as many layers as the size calls for), random bytes, distinct keys.
std::vector<Page> MakePages(uint32_t count, uint64_t payload_bytes) {
  PageGeometry g{.page_tokens = 16, .num_layers = 1, .num_kv_heads = 8, .k_head_dim = 128,
                 .v_head_dim = 128};
  const uint64_t layer_bytes = g.LayerElems() * 2;
  if (payload_bytes < layer_bytes) {  // small pages: shrink the head dim instead
    g.k_head_dim = g.v_head_dim = static_cast<uint32_t>(payload_bytes / (16 * 8 * 2 * 2));
  } else {
    g.num_layers = static_cast<uint32_t>(payload_bytes / layer_bytes);
  }
  std::mt19937_64 rng(42);
  std::vector<Page> pages(count);
  for (uint32_t i = 0; i < count; ++i) {
    Page& p = pages[i];
    p.key = Sha256({{reinterpret_cast<const uint8_t*>(&i), sizeof(i)}});
    p.tenant = "bench";
    p.dtype = kernels::DType::kF16;
    p.geometry = g;
    p.payload.resize(p.LogicalBytes());
    for (size_t j = 0; j + 8 <= p.payload.size(); j += 8) {
      const uint64_t v = rng();
      std::memcpy(p.payload.data() + j, &v, 8);
    }
    SetFullLayers(&p);
  }
  return pages;
}

rocksdb::Slice K(const PageKey& k) { return {reinterpret_cast<const char*>(k.data()), k.size()}; }

// Reads repeat until about 1 GiB has been read, so that a timed phase outlasts scheduling noise.
int GetPasses(uint64_t bytes) { return static_cast<int>(std::max<uint64_t>(1, (1ull << 30) / bytes)); }

// The two per-byte costs a tier Get adds to a raw Get, for reading the ratio.
void Primitives() {
  std::vector<uint8_t> a(64 << 20, 1), b(a.size());
  uint32_t crc = 0;
  const double crc_s = Seconds([&] {
    for (int i = 0; i < 8; ++i) crc = kernels::Crc32c(crc, a.data(), a.size());
  });
  const double copy_s = Seconds([&] {
    for (int i = 0; i < 8; ++i) std::memcpy(b.data(), a.data(), a.size()), a[i] = b[i + 1];
  });
  std::printf("CRC32C %.2f GB/s, memcpy %.2f GB/s (64 MiB buffers; crc %08x)\n\n",
              8 * a.size() / 1e9 / crc_s, 8 * a.size() / 1e9 / copy_s, crc);
}

struct Rates {
  double put_gbps = 0, get_gbps = 0;
};

Rates RunRaw(const std::string& dir, const DiskTierOptions& o, const std::vector<Page>& pages,
             const std::vector<std::string>& records) {
  std::filesystem::remove_all(dir);
  rocksdb::DB* raw = nullptr;
  Check(rocksdb::DB::Open(internal::DiskTierDbOptions(o), dir, &raw).ok(), "raw open");
  std::unique_ptr<rocksdb::DB> db(raw);
  const rocksdb::WriteOptions wo = internal::DiskTierWriteOptions(o);
  uint64_t bytes = 0;
  for (const auto& r : records) bytes += r.size();
  Rates rates;
  rates.put_gbps = bytes / 1e9 / Seconds([&] {
    for (size_t i = 0; i < pages.size(); ++i) {
      Check(db->Put(wo, K(pages[i].key), records[i]).ok(), "raw put");
    }
  });
  std::string value;
  const int passes = GetPasses(bytes);
  rates.get_gbps = passes * bytes / 1e9 / Seconds([&] {
    for (int i = 0; i < passes; ++i) {
      for (const Page& p : pages) Check(db->Get({}, K(p.key), &value).ok(), "raw get");
    }
  });
  return rates;
}

Rates RunTier(const std::string& dir, DiskTierOptions o, const std::vector<Page>& pages,
              uint64_t record_bytes) {
  std::filesystem::remove_all(dir);
  o.path = dir;
  auto tier = DiskTier::Open(o);
  Check(tier.ok(), "tier open");
  Rates rates;
  rates.put_gbps = record_bytes / 1e9 / Seconds([&] {
    for (const Page& p : pages) Check((*tier)->Insert(p).ok(), "tier insert");
  });
  const int passes = GetPasses(record_bytes);
  rates.get_gbps = passes * record_bytes / 1e9 / Seconds([&] {
    for (int i = 0; i < passes; ++i) {
      for (const Page& p : pages) {
        auto got = (*tier)->Get(p.key);
        Check(got.ok() && *got != nullptr, "tier get");
      }
    }
  });
  return rates;
}

void Throughput(const std::string& dir, uint64_t total_bytes, int rounds) {
  std::printf("| page | sync | pages | raw put GB/s | tier insert GB/s | ratio | raw get GB/s | "
              "tier get GB/s | ratio |\n|---|---|---|---|---|---|---|---|---|\n");
  for (uint64_t page_bytes : {64ull << 10, 1ull << 20, 8ull << 20}) {
    const uint32_t count = static_cast<uint32_t>(std::max<uint64_t>(total_bytes / page_bytes, 8));
    const std::vector<Page> pages = MakePages(count, page_bytes);
    std::vector<std::string> records;
    uint64_t record_bytes = 0;
    for (const Page& p : pages) {
      records.push_back(EncodeRecord(p));
      record_bytes += records.back().size();
    }
    for (bool sync : {false, true}) {
      DiskTierOptions o{.path = dir, .budget_bytes = 4 * record_bytes, .sync = sync};
      Rates raw, tier;
      for (int r = 0; r < rounds; ++r) {
        const Rates a = RunRaw(dir, o, pages, records);
        const Rates b = RunTier(dir, o, pages, record_bytes);
        raw.put_gbps = std::max(raw.put_gbps, a.put_gbps);
        raw.get_gbps = std::max(raw.get_gbps, a.get_gbps);
        tier.put_gbps = std::max(tier.put_gbps, b.put_gbps);
        tier.get_gbps = std::max(tier.get_gbps, b.get_gbps);
      }
      std::printf("| %llu KiB | %s | %u | %.2f | %.2f | %.2f | %.2f | %.2f | %.2f |\n",
                  static_cast<unsigned long long>(page_bytes >> 10), sync ? "yes" : "no", count,
                  raw.put_gbps, tier.put_gbps, tier.put_gbps / raw.put_gbps, raw.get_gbps,
                  tier.get_gbps, tier.get_gbps / raw.get_gbps);
      std::fflush(stdout);
    }
  }
}

void Rebuild(const std::string& dir, uint32_t records) {
  std::filesystem::remove_all(dir);
  const std::vector<Page> pages = MakePages(records, 1024);
  uint64_t bytes = 0;
  {
    auto tier = DiskTier::Open({.path = dir, .budget_bytes = 1ull << 40, .sync = false});
    Check(tier.ok(), "tier open");
    for (const Page& p : pages) Check((*tier)->Insert(p).ok(), "tier insert");
    bytes = (*tier)->used_bytes();
  }
  auto tier = DiskTier::Open({.path = dir, .budget_bytes = 1ull << 40, .sync = false});
  Check(tier.ok() && (*tier)->page_count() == records, "reopen");
  const DiskRebuildStats& s = (*tier)->rebuild_stats();
  std::printf("\n| rebuild | records | MiB | seconds | seconds per 100k records |\n"
              "|---|---|---|---|---|\n| 1 KiB pages | %llu | %.1f | %.3f | %.3f |\n",
              static_cast<unsigned long long>(s.records), bytes / 1048576.0, s.seconds,
              s.seconds * 1e5 / s.records);
}

}  // namespace
}  // namespace slimkv::cache

int main(int argc, char** argv) {
  std::string dir = "/tmp/disk_tier_bench";
  uint64_t mib = 256;
  int rounds = 5;
  uint32_t rebuild_records = 100000;
  for (int i = 1; i < argc; ++i) {
    absl::string_view a = argv[i];
    bool ok = true;
    if (absl::ConsumePrefix(&a, "--dir=")) {
      dir = std::string(a);
    } else if (absl::ConsumePrefix(&a, "--mib=")) {
      ok = absl::SimpleAtoi(a, &mib);
    } else if (absl::ConsumePrefix(&a, "--rounds=")) {
      ok = absl::SimpleAtoi(a, &rounds) && rounds > 0;
    } else if (absl::ConsumePrefix(&a, "--rebuild_records=")) {
      ok = absl::SimpleAtoi(a, &rebuild_records) && rebuild_records > 0;
    } else {
      ok = false;
    }
    if (!ok) {
      std::fprintf(stderr,
                   "usage: disk_tier_bench [--dir=DIR] [--mib=N] [--rounds=N] "
                   "[--rebuild_records=N]\n");
      return 2;
    }
  }
  slimkv::cache::Primitives();
  slimkv::cache::Throughput(dir, mib << 20, rounds);
  slimkv::cache::Rebuild(dir, rebuild_records);
  std::filesystem::remove_all(dir);
  return 0;
}
