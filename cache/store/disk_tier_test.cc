#include "cache/store/disk_tier.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <functional>
#include <random>
#include <thread>
#include <vector>

#include <gtest/gtest.h>
#include <rocksdb/db.h>

#include "cache/store/disk_record.h"
#include "cache/store/internal/disk_tier_rocksdb.h"
#include "kernels/crc32c.h"

namespace slimkv::cache {
namespace {

// A well-formed page: `layers` layers of K and V, [tokens=4, heads=2, dim], with a payload and
// tensor CRCs derived from `id`.
std::shared_ptr<Page> MakePage(uint32_t id, uint32_t dim = 16, std::string tenant = "t",
                               uint32_t layers = 2) {
  auto p = std::make_shared<Page>();
  p->key = Sha256({{reinterpret_cast<const uint8_t*>(&id), sizeof(id)}});
  p->model = Sha256({{reinterpret_cast<const uint8_t*>("model"), 5}});
  p->tenant = std::move(tenant);
  p->dtype = kernels::DType::kF16;
  p->geometry = {.page_tokens = 4, .num_layers = layers, .num_kv_heads = 2, .k_head_dim = dim,
                 .v_head_dim = dim};
  p->payload.resize(p->LogicalBytes());
  std::mt19937 rng(id);
  for (auto& b : p->payload) b = static_cast<uint8_t>(rng());
  SetFullLayers(p.get());
  return p;
}

void ExpectSamePage(const Page& got, const Page& want) {
  EXPECT_EQ(got.key, want.key);
  EXPECT_EQ(got.tenant, want.tenant);
  EXPECT_EQ(got.model, want.model);
  EXPECT_EQ(got.mode, want.mode);
  EXPECT_EQ(got.dtype, want.dtype);
  EXPECT_EQ(got.geometry, want.geometry);
  EXPECT_EQ(got.quant, want.quant);
  ASSERT_EQ(got.layers.size(), want.layers.size());
  for (size_t i = 0; i < got.layers.size(); ++i) {
    EXPECT_EQ(got.layers[i].mode, want.layers[i].mode);
    EXPECT_EQ(got.layers[i].quant, want.layers[i].quant);
    EXPECT_EQ(got.layers[i].bytes, want.layers[i].bytes);
    EXPECT_EQ(got.layers[i].crc32c, want.layers[i].crc32c);
  }
  EXPECT_TRUE(got.payload == want.payload) << "payload differs";
}

// ---------------------------------------------------------------------------------------------
// The record format.

DiskRecordHeader HeaderOf(const std::string& record) {
  DiskRecordHeader h;
  std::memcpy(&h, record.data(), sizeof(h));
  return h;
}

// Recomputes both CRCs as docs/disk-format.md specifies, so that a test can make a record whose
// checksums hold but whose fields do not.
void Reseal(std::string* record, const DiskRecordHeader& h) {
  DiskRecordHeader z = h;
  z.meta_crc32c = z.record_crc32c = 0;
  std::memcpy(record->data(), &z, sizeof(z));
  const size_t meta = sizeof(z) + uint64_t{h.tenant_bytes} + sizeof(DiskLayerEntry) * h.layer_count;
  const size_t cut = std::min(meta, record->size());
  z.meta_crc32c = kernels::Crc32c(0, record->data(), cut);
  z.record_crc32c = kernels::Crc32c(z.meta_crc32c, record->data() + cut, record->size() - cut);
  std::memcpy(record->data(), &z, sizeof(z));
}

TEST(DiskRecord, RoundTripsEveryField) {
  auto page = MakePage(1, 16, "tenant-a", 3);
  const std::string record = EncodeRecord(*page);
  EXPECT_EQ(record.size(), RecordBytes(*page));
  EXPECT_EQ(record.size(), 128 + 8 + 16 * 3 + page->payload.size());
  EXPECT_EQ(record.substr(0, 4), "SKVR");
  auto decoded = DecodeRecord(record);
  ASSERT_TRUE(decoded.ok()) << decoded.status();
  ExpectSamePage(**decoded, *page);

  auto meta = DecodeRecordMeta(record);
  ASSERT_TRUE(meta.ok()) << meta.status();
  EXPECT_EQ(meta->key, page->key);
  EXPECT_EQ(meta->tenant, "tenant-a");
  EXPECT_EQ(meta->logical_bytes, page->LogicalBytes());
}

TEST(DiskRecord, EmptyTenantRoundTrips) {
  auto page = MakePage(2, 8, "");
  auto decoded = DecodeRecord(EncodeRecord(*page));
  ASSERT_TRUE(decoded.ok()) << decoded.status();
  ExpectSamePage(**decoded, *page);
}

struct MalformedCase {
  const char* name;
  std::function<void(std::string*)> corrupt;
  const char* error;        // substring of the DATA_LOSS message
  bool meta_detects = true;  // DecodeRecordMeta (no payload CRC) rejects it too
};

// Changes a header field and reseals the CRCs: only the field check can catch it.
std::function<void(std::string*)> Field(std::function<void(DiskRecordHeader*)> edit) {
  return [edit](std::string* r) {
    DiskRecordHeader h = HeaderOf(*r);
    edit(&h);
    Reseal(r, h);
  };
}

TEST(DiskRecord, RejectsEveryMalformedRecordWithDataLoss) {
  const std::string good = EncodeRecord(*MakePage(3, 16, "tenant"));
  const size_t payload_at = 128 + 6 + 2 * 16;
  const std::vector<MalformedCase> cases = {
      {"empty", [](std::string* r) { r->clear(); }, "shorter than the 128-byte header"},
      {"header cut", [](std::string* r) { r->resize(127); }, "shorter than the 128-byte header"},
      {"bad magic", [](std::string* r) { (*r)[0] = 'X'; }, "bad magic"},
      {"future version", Field([](auto* h) { h->version = 3; }), "unsupported format version 3"},
      {"header size", Field([](auto* h) { h->header_bytes = 120; }), "header size 120"},
      {"reserved0", Field([](auto* h) { h->reserved0 = 1; }), "reserved field not zero"},
      {"reserved1", Field([](auto* h) { h->reserved1 = 1; }), "reserved field not zero"},
      {"truncated payload", [](std::string* r) { r->pop_back(); }, "do not add up"},
      {"trailing byte", [](std::string* r) { r->push_back(0); }, "do not add up"},
      {"tenant length", Field([](auto* h) { h->tenant_bytes += 1; }), "do not add up"},
      {"tenant length huge", Field([](auto* h) { h->tenant_bytes = 0xffffffff; }),
       "do not add up"},
      {"payload length", Field([](auto* h) { h->payload_bytes -= 4; }), "do not add up"},
      {"layer count huge", Field([](auto* h) { h->layer_count = 0xffffffff; }),
       "do not add up"},
      {"header bit", [](std::string* r) { (*r)[60] ^= 1; }, "header CRC32C mismatch"},
      {"header crc field", [](std::string* r) { (*r)[12] ^= 1; }, "header CRC32C mismatch"},
      {"tenant byte", [](std::string* r) { (*r)[129] ^= 1; }, "header CRC32C mismatch"},
      {"layer table byte", [](std::string* r) { (*r)[128 + 6 + 5] ^= 1; },
       "header CRC32C mismatch"},
      {"payload bit", [=](std::string* r) { (*r)[payload_at + 100] ^= 0x10; },
       "record CRC32C mismatch", false},
      {"last payload byte", [](std::string* r) { r->back() ^= 1; }, "record CRC32C mismatch",
       false},
      {"record crc field", [](std::string* r) { (*r)[8] ^= 1; }, "record CRC32C mismatch", false},
      {"unknown mode", Field([](auto* h) { h->mode = 9; }), "unknown mode"},
      {"unknown quantizer", Field([](auto* h) { h->quant = 0; }), "unknown quantizer"},
      {"unknown dtype", Field([](auto* h) { h->dtype = 7; }), "unknown dtype"},
      {"layer count vs layers", Field([](auto* h) { h->num_layers = 3; }),
       "layer count is not num_layers"},
      {"geometry vs payload", Field([](auto* h) { h->k_head_dim = 8; }),
       "full layer size does not match the geometry"},
      {"dtype vs payload", Field([](auto* h) { h->dtype = 1; }),
       "full layer size does not match the geometry"},
      {"geometry overflow",
       Field([](auto* h) { h->page_tokens = h->num_kv_heads = h->k_head_dim = 0xffffffff; }),
       "geometry overflows"},
  };
  for (const MalformedCase& c : cases) {
    SCOPED_TRACE(c.name);
    std::string bad = good;
    c.corrupt(&bad);
    auto decoded = DecodeRecord(bad);
    ASSERT_FALSE(decoded.ok());
    EXPECT_EQ(decoded.status().code(), absl::StatusCode::kDataLoss);
    EXPECT_NE(decoded.status().message().find(c.error), absl::string_view::npos)
        << decoded.status();
    EXPECT_EQ(DecodeRecordMeta(bad).ok(), !c.meta_detects);
  }
}

TEST(DiskRecord, CheckRecordableRejectsPagesThatWouldNotDecode) {
  auto short_payload = MakePage(4);
  short_payload->payload.pop_back();
  auto missing_crcs = MakePage(5);
  missing_crcs->layers.pop_back();
  for (const auto& p : {short_payload, missing_crcs}) {
    EXPECT_EQ(CheckRecordable(*p).code(), absl::StatusCode::kInvalidArgument);
  }
  EXPECT_TRUE(CheckRecordable(*MakePage(6)).ok());
}

// ---------------------------------------------------------------------------------------------
// The tier.

class DiskTierTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = ::testing::TempDir() + "disk_tier_XXXXXX";
    ASSERT_NE(mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  std::unique_ptr<DiskTier> Open(uint64_t budget = 1 << 30, bool sync = false) {
    auto tier = DiskTier::Open({.path = dir_, .budget_bytes = budget, .sync = sync});
    EXPECT_TRUE(tier.ok()) << tier.status();
    return tier.ok() ? *std::move(tier) : nullptr;
  }

  // Opens the tier's database with RocksDB directly. REQUIRES: no DiskTier has it open.
  std::unique_ptr<rocksdb::DB> OpenRaw() {
    rocksdb::DB* db = nullptr;
    rocksdb::Status s = rocksdb::DB::Open(internal::DiskTierDbOptions({}), dir_, &db);
    EXPECT_TRUE(s.ok()) << s.ToString();
    return std::unique_ptr<rocksdb::DB>(db);
  }

  static rocksdb::Slice K(const PageKey& k) {
    return {reinterpret_cast<const char*>(k.data()), k.size()};
  }

  // Applies `edit` to the stored value of `key`, with the tier closed.
  void EditStoredValue(const PageKey& key, const std::function<void(std::string*)>& edit) {
    auto db = OpenRaw();
    std::string v;
    ASSERT_TRUE(db->Get({}, K(key), &v).ok());
    edit(&v);
    ASSERT_TRUE(db->Put({}, K(key), v).ok());
  }

  bool StoredInRocksDb(const PageKey& key) {
    auto db = OpenRaw();
    std::string v;
    return db->Get({}, K(key), &v).ok();
  }

  std::string dir_;
};

TEST_F(DiskTierTest, InsertGetErase) {
  auto tier = Open();
  auto page = MakePage(1, 32, "a");
  ASSERT_EQ(*tier->Insert(*page), DiskTier::InsertResult::kInserted);
  EXPECT_TRUE(tier->Contains(page->key));
  EXPECT_EQ(tier->used_bytes(), DiskTier::DiskBytes(*page));
  auto got = tier->Get(page->key);
  ASSERT_TRUE(got.ok()) << got.status();
  ASSERT_NE(*got, nullptr);
  ExpectSamePage(**got, *page);

  auto other = MakePage(1, 32, "a");  // same key, other bytes: not rewritten
  other->payload.assign(other->payload.size(), 0xee);
  EXPECT_EQ(*tier->Insert(*other), DiskTier::InsertResult::kAlreadyPresent);
  EXPECT_TRUE((**tier->Get(page->key)).payload == page->payload);
  EXPECT_EQ(tier->page_count(), 1u);

  const TenantUsage u = tier->UsageByTenant()["a"];
  EXPECT_EQ(u.pages, 1u);
  EXPECT_EQ(u.stored_bytes, DiskTier::DiskBytes(*page));
  EXPECT_EQ(u.logical_bytes, page->LogicalBytes());

  EXPECT_EQ(*tier->Erase(page->key), true);
  EXPECT_EQ(*tier->Erase(page->key), false);
  EXPECT_FALSE(tier->Contains(page->key));
  EXPECT_EQ(*tier->Get(page->key), nullptr);
  EXPECT_EQ(tier->used_bytes(), 0u);
  EXPECT_EQ(tier->UsageByTenant()["a"].pages, 0u);
  EXPECT_EQ(tier->checksum_failures(), 0u);
  tier.reset();
  EXPECT_FALSE(StoredInRocksDb(page->key));
}

TEST_F(DiskTierTest, RefusesUnrecordableAndOversizedPages) {
  const uint64_t one = DiskTier::DiskBytes(*MakePage(0));
  auto tier = Open(2 * one);
  auto bad = MakePage(1);
  bad->layers.pop_back();
  EXPECT_EQ(tier->Insert(*bad).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(tier->Insert(*MakePage(2, 64)).status().code(),
            absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(tier->page_count(), 0u);
}

TEST_F(DiskTierTest, EvictsLeastRecentlyUsedWithinBudget) {
  const uint64_t one = DiskTier::DiskBytes(*MakePage(0));
  auto tier = Open(4 * one);
  for (uint32_t i = 0; i < 4; ++i) ASSERT_TRUE(tier->Insert(*MakePage(i)).ok());
  EXPECT_EQ(tier->used_bytes(), 4 * one);
  ASSERT_NE(*tier->Get(MakePage(0)->key), nullptr);  // 0 becomes most recent
  EXPECT_TRUE(tier->Touch(MakePage(1)->key));          // then 1
  ASSERT_TRUE(tier->Insert(*MakePage(4)).ok());        // evicts 2, the LRU
  EXPECT_EQ(tier->used_bytes(), 4 * one);
  EXPECT_FALSE(tier->Contains(MakePage(2)->key));
  for (uint32_t i : {0, 1, 3, 4}) EXPECT_TRUE(tier->Contains(MakePage(i)->key)) << i;
  EXPECT_EQ(tier->UsageByTenant()["t"].evictions, 1u);

  // A page twice the size displaces the two least recent: 3, then 0.
  ASSERT_TRUE(tier->Insert(*MakePage(5, 16, "t", 4)).ok());
  EXPECT_FALSE(tier->Contains(MakePage(3)->key));
  EXPECT_FALSE(tier->Contains(MakePage(0)->key));
  EXPECT_LE(tier->used_bytes(), 4 * one);
  tier.reset();
  EXPECT_FALSE(StoredInRocksDb(MakePage(2)->key));  // evicted means deleted on disk
  EXPECT_FALSE(StoredInRocksDb(MakePage(3)->key));
  EXPECT_TRUE(StoredInRocksDb(MakePage(4)->key));
}

TEST_F(DiskTierTest, TenantsOnlyEvictTheirOwnPagesAndQuotasHold) {
  const uint64_t one = DiskTier::DiskBytes(*MakePage(0, 16, "a"));  // for tenants a, b, c
  auto tier = Open(4 * one);
  tier->SetQuota("c", {.bytes = 1 * one, .reject = true});
  for (uint32_t i = 0; i < 3; ++i) ASSERT_TRUE(tier->Insert(*MakePage(i, 16, "a")).ok());
  ASSERT_TRUE(tier->Insert(*MakePage(10, 16, "b")).ok());
  // b's next page displaces b's own page, never one of a's older ones.
  ASSERT_TRUE(tier->Insert(*MakePage(11, 16, "b")).ok());
  EXPECT_FALSE(tier->Contains(MakePage(10, 16, "b")->key));
  for (uint32_t i = 0; i < 3; ++i) EXPECT_TRUE(tier->Contains(MakePage(i, 16, "a")->key));
  // A tenant with no pages in a full tier is refused, and nothing changes.
  auto refused = tier->Insert(*MakePage(20, 16, "c"));
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kResourceExhausted) << refused.status();
  EXPECT_EQ(tier->page_count(), 4u);
  ASSERT_TRUE(tier->Erase(MakePage(0, 16, "a")->key).ok());
  ASSERT_TRUE(tier->Insert(*MakePage(20, 16, "c")).ok());
  auto over = tier->Insert(*MakePage(21, 16, "c"));  // over its rejecting quota
  EXPECT_EQ(over.status().code(), absl::StatusCode::kResourceExhausted) << over.status();
  EXPECT_NE(over.status().message().find("quota"), absl::string_view::npos) << over.status();
  EXPECT_TRUE(tier->Contains(MakePage(20, 16, "c")->key));
}

TEST_F(DiskTierTest, ReopenWithLowerQuotasEvictsOnlyTheTenantsOverThem) {
  const uint64_t one = DiskTier::DiskBytes(*MakePage(0, 16, "b"));
  {
    auto tier = Open();
    for (uint32_t i = 0; i < 6; ++i) ASSERT_TRUE(tier->Insert(*MakePage(i, 16, "b")).ok());
    for (uint32_t i = 10; i < 12; ++i) ASSERT_TRUE(tier->Insert(*MakePage(i, 16, "s")).ok());
  }
  auto reopened = DiskTier::Open(
      {.path = dir_, .budget_bytes = 1 << 30, .sync = false, .quotas = {{"b", {2 * one}}}});
  ASSERT_TRUE(reopened.ok()) << reopened.status();
  auto& tier = *reopened;
  auto usage = tier->UsageByTenant();
  EXPECT_EQ(usage["b"].pages, 2u);
  EXPECT_EQ(usage["s"].pages, 2u);
  EXPECT_EQ(tier->rebuild_stats().evicted, 4u);
}

TEST_F(DiskTierTest, ReopenRebuildsTheIndexWithTheSamePages) {
  std::vector<std::shared_ptr<Page>> pages;
  for (uint32_t i = 0; i < 50; ++i) pages.push_back(MakePage(i, 8 + i % 5 * 8, i % 3 ? "a" : "b"));
  std::map<std::string, TenantUsage> usage;
  uint64_t used;
  {
    auto tier = Open();
    for (const auto& p : pages) ASSERT_TRUE(tier->Insert(*p).ok());
    usage = tier->UsageByTenant();
    used = tier->used_bytes();
  }
  auto tier = Open();
  EXPECT_EQ(tier->rebuild_stats().records, 50u);
  EXPECT_EQ(tier->rebuild_stats().dropped, 0u);
  EXPECT_EQ(tier->page_count(), 50u);
  EXPECT_EQ(tier->used_bytes(), used);
  for (const auto& [tenant, u] : tier->UsageByTenant()) {
    EXPECT_EQ(u.pages, usage[tenant].pages) << tenant;
    EXPECT_EQ(u.stored_bytes, usage[tenant].stored_bytes) << tenant;
    EXPECT_EQ(u.logical_bytes, usage[tenant].logical_bytes) << tenant;
  }
  for (const auto& p : pages) {
    auto got = tier->Get(p->key);
    ASSERT_TRUE(got.ok() && *got != nullptr);
    ExpectSamePage(**got, *p);
  }
}

TEST_F(DiskTierTest, ReopenWithASmallerBudgetEvictsDownToIt) {
  const uint64_t one = DiskTier::DiskBytes(*MakePage(0));
  {
    auto tier = Open();
    for (uint32_t i = 0; i < 10; ++i) ASSERT_TRUE(tier->Insert(*MakePage(i)).ok());
  }
  auto tier = Open(3 * one);
  EXPECT_EQ(tier->page_count(), 3u);
  EXPECT_EQ(tier->used_bytes(), 3 * one);
  EXPECT_EQ(tier->rebuild_stats().evicted, 7u);
  tier.reset();
  auto db = OpenRaw();
  std::unique_ptr<rocksdb::Iterator> it(db->NewIterator({}));
  int stored = 0;
  for (it->SeekToFirst(); it->Valid(); it->Next()) ++stored;
  EXPECT_EQ(stored, 3);
}

TEST_F(DiskTierTest, CorruptPayloadIsDroppedAtGetAndNeverServed) {
  {
    auto tier = Open();
    for (uint32_t i = 0; i < 3; ++i) ASSERT_TRUE(tier->Insert(*MakePage(i)).ok());
  }
  const PageKey victim = MakePage(1)->key;
  EditStoredValue(victim, [](std::string* v) { (*v)[v->size() - 7] ^= 0x40; });

  auto tier = Open();
  EXPECT_EQ(tier->rebuild_stats().records, 3u);  // the head still checks out
  EXPECT_TRUE(tier->Contains(victim));
  auto got = tier->Get(victim);
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(*got, nullptr);
  EXPECT_EQ(tier->checksum_failures(), 1u);
  EXPECT_FALSE(tier->Contains(victim));
  EXPECT_EQ(tier->page_count(), 2u);
  EXPECT_EQ(tier->used_bytes(), 2 * DiskTier::DiskBytes(*MakePage(0)));
  for (uint32_t i : {0, 2}) ExpectSamePage(**tier->Get(MakePage(i)->key), *MakePage(i));
  tier.reset();
  EXPECT_FALSE(StoredInRocksDb(victim));
}

TEST_F(DiskTierTest, RecordsFailingTheirCheckAreDroppedAtRebuild) {
  {
    auto tier = Open();
    for (uint32_t i = 0; i < 4; ++i) ASSERT_TRUE(tier->Insert(*MakePage(i)).ok());
  }
  EditStoredValue(MakePage(0)->key, [](std::string* v) { (*v)[40] ^= 1; });  // header byte
  EditStoredValue(MakePage(1)->key, [](std::string* v) { v->resize(v->size() / 2); });
  // A record under another page's key: its own checks pass, the key does not match.
  const std::string moved = EncodeRecord(*MakePage(9));
  EditStoredValue(MakePage(2)->key, [&](std::string* v) { *v = moved; });
  {
    auto db = OpenRaw();
    ASSERT_TRUE(db->Put({}, "short key", EncodeRecord(*MakePage(10))).ok());
  }
  auto tier = Open();
  EXPECT_EQ(tier->rebuild_stats().records, 1u);
  EXPECT_EQ(tier->rebuild_stats().dropped, 4u);
  EXPECT_EQ(tier->checksum_failures(), 4u);
  EXPECT_EQ(tier->page_count(), 1u);
  EXPECT_TRUE(tier->Contains(MakePage(3)->key));
  tier.reset();
  for (uint32_t i : {0, 1, 2}) EXPECT_FALSE(StoredInRocksDb(MakePage(i)->key)) << i;
}

TEST_F(DiskTierTest, SecondOpenOfTheSameDirectoryIsUnavailable) {
  auto tier = Open();
  auto second = DiskTier::Open({.path = dir_});
  EXPECT_EQ(second.status().code(), absl::StatusCode::kUnavailable) << second.status();
}

// 4 threads insert, get and erase overlapping keys in a tier a fraction of their working set:
// the budget holds at every observation, readers see whole, correct pages, and the accounting
// adds up at the end.
TEST_F(DiskTierTest, ConcurrentMixedLoadKeepsInvariants) {
  const uint64_t budget = 16 * DiskTier::DiskBytes(*MakePage(0));
  auto tier = Open(budget);
  std::vector<std::shared_ptr<Page>> pages;
  for (uint32_t i = 0; i < 48; ++i) pages.push_back(MakePage(i, 16, i % 2 ? "odd" : "even"));
  std::atomic<bool> failed{false};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      std::mt19937 rng(t);
      for (int i = 0; i < 400; ++i) {
        const Page& p = *pages[rng() % pages.size()];
        switch (rng() % 4) {
          case 0:
          case 1:
            if (!tier->Insert(p).ok()) failed = true;
            break;
          case 2: {
            auto got = tier->Get(p.key);
            if (!got.ok() || (*got != nullptr && (*got)->payload != p.payload)) failed = true;
            break;
          }
          case 3:
            if (!tier->Erase(p.key).ok()) failed = true;
            break;
        }
        if (tier->used_bytes() > budget) failed = true;
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_FALSE(failed);
  EXPECT_EQ(tier->checksum_failures(), 0u);
  uint64_t bytes = 0, count = 0;
  for (auto& [tenant, u] : tier->UsageByTenant()) bytes += u.stored_bytes, count += u.pages;
  EXPECT_EQ(bytes, tier->used_bytes());
  EXPECT_EQ(count, tier->page_count());
  const uint64_t indexed = tier->page_count();
  tier.reset();
  EXPECT_EQ(Open(budget)->page_count(), indexed);  // index and database agree
}

// ---------------------------------------------------------------------------------------------
// Crash safety. The child is this executable re-executed (a forked child of a process that has
// run RocksDB would lack the parent's background threads). With these variables set, the global
// environment below, which gtest sets up in main before any test, makes it insert pages with
// sync=true, writing each page's id to the pipe once Insert returned, until it is killed.

constexpr char kCrashDirEnv[] = "SLIMKV_DISK_TIER_CRASH_DIR";
constexpr char kCrashFdEnv[] = "SLIMKV_DISK_TIER_CRASH_FD";
constexpr uint32_t kCrashChildPages = 100000;

class CrashChild : public ::testing::Environment {
 public:
  void SetUp() override {
    const char* dir = std::getenv(kCrashDirEnv);
    const char* fd = std::getenv(kCrashFdEnv);
    if (dir == nullptr || fd == nullptr) return;
    auto tier = DiskTier::Open({.path = dir, .budget_bytes = 64ull << 30, .sync = true});
    if (!tier.ok()) _exit(2);
    for (uint32_t i = 0; i < kCrashChildPages; ++i) {
      if (!(*tier)->Insert(*MakePage(i, 64 + i % 7 * 32)).ok()) _exit(3);
      if (write(std::atoi(fd), &i, sizeof(i)) != sizeof(i)) _exit(4);
    }
    _exit(0);
  }
};
[[maybe_unused]] ::testing::Environment* const kCrashChild =
    ::testing::AddGlobalTestEnvironment(new CrashChild);

TEST_F(DiskTierTest, AcknowledgedInsertsSurviveKill9) {
  int fds[2];
  ASSERT_EQ(pipe(fds), 0);
  // Built before fork: between fork and exec the child may only make async-signal-safe calls.
  std::vector<std::string> env_strings = {std::string(kCrashDirEnv) + "=" + dir_,
                                          std::string(kCrashFdEnv) + "=" + std::to_string(fds[1])};
  std::vector<char*> env;
  for (auto& e : env_strings) env.push_back(e.data());
  env.push_back(nullptr);
  char arg0[] = "disk_tier_crash_child";
  char* argv[] = {arg0, nullptr};
  const pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    close(fds[0]);
    const int devnull = open("/dev/null", O_WRONLY);  // keep the child's gtest banner quiet
    if (devnull >= 0) dup2(devnull, STDOUT_FILENO);
    execve("/proc/self/exe", argv, env.data());
    _exit(5);
  }
  close(fds[1]);
  std::vector<uint32_t> acked;
  auto read_one = [&](int timeout_ms) {
    pollfd p{.fd = fds[0], .events = POLLIN, .revents = 0};
    if (poll(&p, 1, timeout_ms) != 1) return false;
    uint32_t id;
    if (read(fds[0], &id, sizeof(id)) != sizeof(id)) return false;
    acked.push_back(id);
    return true;
  };
  while (acked.size() < 300 && read_one(60'000)) {
  }
  kill(child, SIGKILL);
  int status = 0;
  ASSERT_EQ(waitpid(child, &status, 0), child);
  while (read_one(0)) {  // acknowledged before the kill, still in the pipe
  }
  close(fds[0]);
  ASSERT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL)
      << "child exited early with status " << status;
  ASSERT_GE(acked.size(), 300u);
  ASSERT_LT(acked.size(), kCrashChildPages) << "the kill came after the last insert";

  auto tier = Open();
  EXPECT_EQ(tier->rebuild_stats().dropped, 0u);
  for (uint32_t id : acked) {
    auto want = MakePage(id, 64 + id % 7 * 32);
    auto got = tier->Get(want->key);
    ASSERT_TRUE(got.ok() && *got != nullptr) << "acknowledged page " << id << " lost";
    ExpectSamePage(**got, *want);
  }
  // At most the insert in flight at the kill is present beyond the acknowledged ones, and
  // whatever is present is whole.
  EXPECT_LE(tier->page_count(), acked.size() + 1);
  EXPECT_EQ(tier->checksum_failures(), 0u);
  tier.reset();
  auto db = OpenRaw();
  std::unique_ptr<rocksdb::Iterator> it(db->NewIterator({}));
  for (it->SeekToFirst(); it->Valid(); it->Next()) {
    EXPECT_TRUE(DecodeRecord({it->value().data(), it->value().size()}).ok());
  }
}

}  // namespace
}  // namespace slimkv::cache
