// disk_tier_bench: the disk tier, alone and behind KvCache, against RocksDB used directly, in
// the same run, with the same options (internal/disk_tier_rocksdb.h) and the same bytes: the raw
// side puts and gets the very records DiskTier stores. Throughput counts record bytes, so a
// ratio is our overhead over RocksDB.
//
// For each page size and sync setting, each round runs, alternating, each on a fresh database:
//   raw    RocksDB Put of every record, then Gets of them (each Get timed, for p50/p99);
//   tier   DiskTier::Insert of every page (encode + CRC + index), then DiskTier::Get (CRC +
//          decode);
//   kv     KvCache over a DiskTier with a host budget of 1/8 of the pages: Insert every page (the
//          host tier evicts 7/8 of them into the demotion queue, which the background writer
//          drains into the DiskTier); "demote" is the record bytes that reached disk over the time
//          from the first Insert until FlushDemotions() returns. Then KvCache::Get of every page
//          in insertion order (a scan larger than the host tier, so every get finds the page on
//          disk and promotes it), after one untimed pass: "promote", with each get timed. Then
//          gets of the pages left in the host tier: host-resident latency;
//   wt     with sync only: the same inserts with write_through (each insert synced to disk
//          before it returns).
// The demotion queue holds every page (it only points at pages the bench holds anyway), so no
// demotion is dropped; the bench checks that. The best round counts for throughput, the lowest
// of the rounds for each percentile (the machine is shared). Reads make as many passes as reach
// about 1 GiB. Then restart: DiskTier::Open of a database of 100k small pages (and of 64 KiB
// pages), the index rebuild timed.
//
// Usage: disk_tier_bench [--dir=DIR] [--mib=N] [--rounds=N] [--rebuild_records=N]
//                        [--rebuild_large_mib=N] [--page_kib=64,1024,8192] [--sync=both|no|yes]
//                        [--keep_freed_memory=true|false]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <functional>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include <rocksdb/db.h>

#include "absl/strings/strip.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "cache/store/disk_record.h"
#include "cache/store/disk_tier.h"
#include "cache/store/page_memory.h"
#include "cache/store/internal/disk_tier_rocksdb.h"
#include "cache/store/kv_cache.h"
#include "kernels/crc32c.h"

namespace slimkv::cache {
namespace {

using Clock = std::chrono::steady_clock;
using Pages = std::vector<std::shared_ptr<const Page>>;

double Seconds(const std::function<void()>& f) {
  const auto start = Clock::now();
  f();
  return std::chrono::duration<double>(Clock::now() - start).count();
}

double Since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

void Check(bool ok, const char* what) {
  if (!ok) {
    std::fprintf(stderr, "disk_tier_bench: %s failed\n", what);
    std::exit(1);
  }
}

// `count` pages of `payload_bytes` each, bf16, 16 tokens, random bytes, distinct keys. Pages of a
// layer or more have Llama-2-7B's layers (32 KV heads × 128), as many as the size calls for
// (8 MiB: all 32, Llama-2-7B's 16-token page); smaller ones one layer of 8 KV heads with the head
// dim the size calls for (64 KiB: 128, a Llama-3-8B layer).
Pages MakePages(uint32_t count, uint64_t payload_bytes) {
  PageGeometry g{.page_tokens = 16, .num_layers = 1, .num_kv_heads = 32, .k_head_dim = 128,
                 .v_head_dim = 128};
  const uint64_t layer_bytes = g.LayerElems() * 2;
  if (payload_bytes < layer_bytes) {
    g.num_kv_heads = 8;
    g.k_head_dim = g.v_head_dim = static_cast<uint32_t>(payload_bytes / (16 * 8 * 2 * 2));
  } else {
    g.num_layers = static_cast<uint32_t>(payload_bytes / layer_bytes);
  }
  std::mt19937_64 rng(42);
  Pages pages(count);
  for (uint32_t i = 0; i < count; ++i) {
    auto p = std::make_shared<Page>();
    p->key = Sha256({{reinterpret_cast<const uint8_t*>(&i), sizeof(i)}});
    p->tenant = "bench";
    p->dtype = kernels::DType::kBF16;
    p->geometry = g;
    p->payload.resize(p->LogicalBytes());
    for (size_t j = 0; j + 8 <= p->payload.size(); j += 8) {
      const uint64_t v = rng();
      std::memcpy(p->payload.data() + j, &v, 8);
    }
    SetFullLayers(p.get());
    pages[i] = std::move(p);
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

// p50 and p99 of per-operation seconds, in microseconds.
struct Latency {
  double p50_us = 0, p99_us = 0;
};

Latency Percentiles(std::vector<double> seconds) {
  if (seconds.empty()) return {};
  std::sort(seconds.begin(), seconds.end());
  auto at = [&](double q) { return 1e6 * seconds[static_cast<size_t>(q * (seconds.size() - 1))]; };
  return {at(0.50), at(0.99)};
}

// The lower of each percentile: the least disturbed of the rounds.
void KeepBest(Latency* best, const Latency& l) {
  if (best->p50_us == 0 || l.p50_us < best->p50_us) best->p50_us = l.p50_us;
  if (best->p99_us == 0 || l.p99_us < best->p99_us) best->p99_us = l.p99_us;
}

// One round's figures; a side leaves what it does not measure at zero.
struct Rates {
  double put_gbps = 0, get_gbps = 0;   // raw put / tier insert / demote; raw get / tier get / promote
  double write_through_gbps = 0;       // kv with write_through
  Latency get;                         // raw get, or KvCache get of disk-resident pages
  Latency host_get;                    // KvCache get of host-resident pages
};

Rates RunRaw(const std::string& dir, const DiskTierOptions& o, const Pages& pages,
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
      Check(db->Put(wo, K(pages[i]->key), records[i]).ok(), "raw put");
    }
  });
  std::string value;
  const int passes = GetPasses(bytes);
  std::vector<double> each;
  each.reserve(passes * pages.size());
  rates.get_gbps = passes * bytes / 1e9 / Seconds([&] {
    for (int i = 0; i < passes; ++i) {
      for (const auto& p : pages) {
        const auto start = Clock::now();
        Check(db->Get({}, K(p->key), &value).ok(), "raw get");
        each.push_back(Since(start));
      }
    }
  });
  rates.get = Percentiles(std::move(each));
  return rates;
}

Rates RunTier(const std::string& dir, DiskTierOptions o, const Pages& pages,
              uint64_t record_bytes) {
  std::filesystem::remove_all(dir);
  o.path = dir;
  auto tier = DiskTier::Open(o);
  Check(tier.ok(), "tier open");
  Rates rates;
  rates.put_gbps = record_bytes / 1e9 / Seconds([&] {
    for (const auto& p : pages) Check((*tier)->Insert(*p).ok(), "tier insert");
  });
  const int passes = GetPasses(record_bytes);
  rates.get_gbps = passes * record_bytes / 1e9 / Seconds([&] {
    for (int i = 0; i < passes; ++i) {
      for (const auto& p : pages) {
        auto got = (*tier)->Get(p->key);
        Check(got.ok() && *got != nullptr, "tier get");
      }
    }
  });
  return rates;
}

// KvCache over a fresh DiskTier whose host tier holds `host_pages` of the pages.
std::unique_ptr<KvCache> OpenKvCache(const std::string& dir, DiskTierOptions o, const Pages& pages,
                                     uint32_t host_pages, bool write_through) {
  std::filesystem::remove_all(dir);
  o.path = dir;
  auto tier = DiskTier::Open(o);
  Check(tier.ok(), "kv tier open");
  KvCacheOptions ko;
  ko.host.budget_bytes = host_pages * pages[0]->StoredBytes();
  ko.demotion_queue_bytes = pages.size() * pages[0]->StoredBytes();
  ko.write_through = write_through;
  return std::make_unique<KvCache>(ko, *std::move(tier));
}

// Inserts every page and waits for the demotions: record bytes on disk per second.
double InsertAndFlush(KvCache& cache, const Pages& pages, uint32_t expect_on_disk) {
  const double s = Seconds([&] {
    for (const auto& p : pages) Check(cache.Insert(p).ok(), "kv insert");
    cache.FlushDemotions();
  });
  const DiskStats ds = cache.disk_stats();
  Check(ds.demotions_dropped == 0 && ds.errors.empty(), "demotion without drops or errors");
  Check(cache.disk()->page_count() == expect_on_disk, "pages on disk after demotion");
  return expect_on_disk * RecordBytes(*pages[0]) / 1e9 / s;
}

Rates RunKv(const std::string& dir, const DiskTierOptions& o, const Pages& pages) {
  const uint32_t n = static_cast<uint32_t>(pages.size());
  const uint32_t host_pages = std::max<uint32_t>(2, n / 8);
  const uint64_t record_bytes = RecordBytes(*pages[0]);
  std::unique_ptr<KvCache> cache = OpenKvCache(dir, o, pages, host_pages, false);
  Rates rates;
  rates.put_gbps = InsertAndFlush(*cache, pages, n - host_pages);

  // A scan in insertion order, larger than the host tier: each get finds its page on disk and
  // promotes it, evicting the least recent host page. One untimed pass first, then the flush,
  // so that the pages the host tier held after the inserts (never demoted) are on disk too and
  // the timed passes measure promotion alone.
  for (const auto& p : pages) {
    Tier tier;
    Check(cache->Get(p->key, &tier) != nullptr, "kv warm-up get");
  }
  cache->FlushDemotions();
  const int passes = GetPasses(n * record_bytes);
  std::vector<double> each;
  each.reserve(uint64_t(passes) * n);
  uint64_t disk_bytes = 0;
  std::shared_ptr<const Page> first;
  const double s = Seconds([&] {
    for (int i = 0; i < passes; ++i) {
      for (const auto& p : pages) {
        Tier tier;
        const auto start = Clock::now();
        std::shared_ptr<const Page> got = cache->Get(p->key, &tier);
        const double t = Since(start);
        Check(got != nullptr && tier == Tier::kDisk, "kv get of a disk-resident page");
        each.push_back(t);
        disk_bytes += record_bytes;
        if (first == nullptr) first = std::move(got);
      }
    }
  });
  Check(first->payload == pages[0]->payload, "promoted page is byte-identical");
  rates.get_gbps = disk_bytes / 1e9 / s;
  rates.get = Percentiles(std::move(each));

  // The host tier now holds the last pages promoted: get them round and round.
  std::vector<std::shared_ptr<const Page>> resident;
  for (const auto& p : pages) {
    if (cache->host().Contains(p->key)) resident.push_back(p);
  }
  Check(resident.size() == host_pages, "host-resident pages");
  std::vector<double> host;
  const int host_passes = std::max<int>(1, 20000 / host_pages);
  host.reserve(uint64_t(host_passes) * host_pages);
  for (int i = 0; i < host_passes; ++i) {
    for (const auto& p : resident) {
      Tier tier;
      const auto start = Clock::now();
      std::shared_ptr<const Page> got = cache->Get(p->key, &tier);
      host.push_back(Since(start));
      Check(got != nullptr && tier == Tier::kHost, "kv host get");
    }
  }
  rates.host_get = Percentiles(std::move(host));
  return rates;
}

// Write-through inserts: each on disk (synced when o.sync) before Insert returns.
double RunWriteThrough(const std::string& dir, const DiskTierOptions& o, const Pages& pages) {
  const uint32_t n = static_cast<uint32_t>(pages.size());
  std::unique_ptr<KvCache> cache =
      OpenKvCache(dir, o, pages, std::max<uint32_t>(2, n / 8), /*write_through=*/true);
  return InsertAndFlush(*cache, pages, n);
}

void Throughput(const std::string& dir, uint64_t total_bytes, int rounds,
                const std::vector<uint64_t>& page_kib, const std::vector<bool>& syncs) {
  std::printf("GB/s of record bytes, best of %d rounds; (ratio to raw RocksDB in the same run)\n\n"
              "| page | sync | pages | raw put | tier insert | demote | write-through insert | "
              "raw get | tier get | promote |\n|---|---|---|---|---|---|---|---|---|---|\n",
              rounds);
  std::string latency_rows;
  for (uint64_t kib : page_kib) {
    const uint64_t page_bytes = kib << 10;
    const uint32_t count = static_cast<uint32_t>(std::max<uint64_t>(total_bytes / page_bytes, 16));
    const Pages pages = MakePages(count, page_bytes);
    std::vector<std::string> records;
    uint64_t record_bytes = 0;
    for (const auto& p : pages) {
      records.push_back(EncodeRecord(*p));
      record_bytes += records.back().size();
    }
    for (bool sync : syncs) {
      DiskTierOptions o{.path = dir, .budget_bytes = 4 * record_bytes, .sync = sync};
      Rates raw, tier, kv;
      for (int r = 0; r < rounds; ++r) {
        const Rates a = RunRaw(dir, o, pages, records);
        const Rates b = RunTier(dir, o, pages, record_bytes);
        const Rates c = RunKv(dir, o, pages);
        const double wt = sync ? RunWriteThrough(dir, o, pages) : 0;
        raw.put_gbps = std::max(raw.put_gbps, a.put_gbps);
        raw.get_gbps = std::max(raw.get_gbps, a.get_gbps);
        tier.put_gbps = std::max(tier.put_gbps, b.put_gbps);
        tier.get_gbps = std::max(tier.get_gbps, b.get_gbps);
        kv.put_gbps = std::max(kv.put_gbps, c.put_gbps);
        kv.get_gbps = std::max(kv.get_gbps, c.get_gbps);
        kv.write_through_gbps = std::max(kv.write_through_gbps, wt);
        KeepBest(&raw.get, a.get);
        KeepBest(&kv.get, c.get);
        KeepBest(&kv.host_get, c.host_get);
      }
      const double put = raw.put_gbps, get = raw.get_gbps;
      char wt[64] = "—";
      if (sync) {
        std::snprintf(wt, sizeof(wt), "%.2f (%.2f×)", kv.write_through_gbps,
                      kv.write_through_gbps / put);
      }
      std::printf("| %llu KiB | %s | %u | %.2f | %.2f (%.2f×) | %.2f (%.2f×) | %s | %.2f | "
                  "%.2f (%.2f×) | %.2f (%.2f×) |\n",
                  static_cast<unsigned long long>(page_bytes >> 10), sync ? "yes" : "no", count,
                  put, tier.put_gbps, tier.put_gbps / put, kv.put_gbps, kv.put_gbps / put, wt,
                  get, tier.get_gbps, tier.get_gbps / get, kv.get_gbps, kv.get_gbps / get);
      std::fflush(stdout);
      char row[256];
      std::snprintf(row, sizeof(row), "| %llu KiB | %s | %.1f | %.1f | %.2f | %.2f | %.1f | %.1f |\n",
                    static_cast<unsigned long long>(page_bytes >> 10), sync ? "yes" : "no",
                    raw.get.p50_us, raw.get.p99_us, kv.host_get.p50_us, kv.host_get.p99_us,
                    kv.get.p50_us, kv.get.p99_us);
      latency_rows += row;
    }
  }
  std::printf("\nGet latency in µs (lowest of the rounds): raw RocksDB Get; KvCache::Get of a "
              "host-resident page; KvCache::Get of a disk-resident page (promotes it)\n\n"
              "| page | sync | raw p50 | raw p99 | host p50 | host p99 | disk p50 | disk p99 |\n"
              "|---|---|---|---|---|---|---|---|\n%s",
              latency_rows.c_str());
  std::fflush(stdout);
}

// Restart: writes `records` pages of `page_bytes` through a DiskTier, closes it, and opens it
// again. "open" is all of DiskTier::Open (RocksDB's open, replaying its write-ahead log as after
// kill -9, and the index rebuild); "rebuild" the iteration that builds the index.
void Rebuild(const std::string& dir, uint32_t records, uint64_t page_bytes) {
  std::filesystem::remove_all(dir);
  uint64_t bytes = 0;
  {
    const Pages pages = MakePages(records, page_bytes);
    auto tier = DiskTier::Open({.path = dir, .budget_bytes = 1ull << 40, .sync = false});
    Check(tier.ok(), "tier open");
    for (const auto& p : pages) Check((*tier)->Insert(*p).ok(), "tier insert");
    bytes = (*tier)->used_bytes();
  }
  absl::StatusOr<std::unique_ptr<DiskTier>> tier;
  const double open_s = Seconds([&] {
    tier = DiskTier::Open({.path = dir, .budget_bytes = 1ull << 40, .sync = false});
  });
  Check(tier.ok() && (*tier)->page_count() == records, "reopen");
  const DiskRebuildStats& s = (*tier)->rebuild_stats();
  std::printf("| %llu KiB pages | %llu | %.1f | %.3f | %.3f | %.3f | %.3f |\n",
              static_cast<unsigned long long>(page_bytes >> 10),
              static_cast<unsigned long long>(s.records), bytes / 1048576.0, open_s, s.seconds,
              open_s * 1e5 / s.records, s.seconds * 1e5 / s.records);
  std::fflush(stdout);
}

}  // namespace
}  // namespace slimkv::cache

int main(int argc, char** argv) {
  std::string dir = "/tmp/disk_tier_bench";
  uint64_t mib = 256;
  int rounds = 5;
  uint32_t rebuild_records = 100000;
  uint64_t rebuild_large_mib = 1024;
  std::vector<uint64_t> page_kib = {64, 1024, 8192};
  std::vector<bool> syncs = {false, true};
  bool keep_freed_memory = true;
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
    } else if (absl::ConsumePrefix(&a, "--page_kib=")) {
      page_kib.clear();
      for (absl::string_view v : absl::StrSplit(a, ',')) {
        ok = ok && absl::SimpleAtoi(v, &page_kib.emplace_back()) && page_kib.back() > 0;
      }
    } else if (absl::ConsumePrefix(&a, "--sync=")) {
      ok = a == "both" || a == "no" || a == "yes";
      if (a != "both") syncs = {a == "yes"};
    } else if (absl::ConsumePrefix(&a, "--rebuild_large_mib=")) {
      ok = absl::SimpleAtoi(a, &rebuild_large_mib);
    } else if (absl::ConsumePrefix(&a, "--keep_freed_memory=")) {
      ok = absl::SimpleAtob(a, &keep_freed_memory);
    } else {
      ok = false;
    }
    if (!ok) {
      std::fprintf(stderr,
                   "usage: disk_tier_bench [--dir=DIR] [--mib=N] [--rounds=N] "
                   "[--rebuild_records=N] [--rebuild_large_mib=N] [--page_kib=K,K,...] "
                   "[--sync=both|no|yes] [--keep_freed_memory=true|false]\n");
      return 2;
    }
  }
  // As slimkvd runs (daemon/main.cc); false measures glibc's defaults.
  if (keep_freed_memory) slimkv::cache::KeepFreedPageMemory();
  slimkv::cache::Primitives();
  slimkv::cache::Throughput(dir, mib << 20, rounds, page_kib, syncs);
  std::printf("\n| restart | records | MiB | open s | rebuild s | open s per 100k | "
              "rebuild s per 100k |\n|---|---|---|---|---|---|---|\n");
  slimkv::cache::Rebuild(dir, rebuild_records, 1024);
  if (rebuild_large_mib > 0) {
    slimkv::cache::Rebuild(dir, static_cast<uint32_t>(rebuild_large_mib * 16), 64 << 10);
  }
  std::filesystem::remove_all(dir);
  return 0;
}
