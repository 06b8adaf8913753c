// The tiered store end to end: a real slimkvd with its RocksDB disk tier in a temp dir. Host
// pages demote to disk and promote back byte-identical while sampled budgets and quotas hold;
// with `sync`, kill -9 loses no acknowledged page and shows no unacknowledged one half-written;
// corrupted records are dropped, counted and never served.
#include <atomic>
#include <chrono>
#include <filesystem>
#include <mutex>
#include <thread>
#include <vector>

#include <gtest/gtest.h>
#include <rocksdb/db.h>
#include <rocksdb/utilities/options_util.h>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "cache/store/disk_tier.h"
#include "tests/support/synthetic_model.h"
#include "tests/daemon_process.h"
#include "tests/support/test_pages.h"

namespace slimkv::testing {
namespace {

// The options the daemon opened its disk tier with, as RocksDB persisted them beside the data.
rocksdb::Options PersistedOptions(const std::string& path) {
  rocksdb::DBOptions db;
  std::vector<rocksdb::ColumnFamilyDescriptor> families;
  const rocksdb::Status s =
      rocksdb::LoadLatestOptions(rocksdb::ConfigOptions(), path, &db, &families);
  EXPECT_TRUE(s.ok() && !families.empty()) << s.ToString();
  return families.empty() ? rocksdb::Options() : rocksdb::Options(db, families[0].options);
}

// SyntheticModel{} pages of 16 tokens in bf16 cost 65792 bytes each in the host tier.
constexpr uint64_t kPageCost = 4 * 2 * 16 * 256 * 2 + 256;
constexpr uint32_t kPageTokens = 16;

std::unique_ptr<client::Client> As(const DaemonProcess& d, const std::string& tenant) {
  client::ClientOptions o;
  o.token = tenant.empty() ? "" : TenantToken(tenant);
  o.deadline_seconds = 20;
  return d.NewClient(o);
}

// Registers SyntheticModel{} (written once under the daemon's dir) with 16-token pages.
client::ModelHandle Register(const DaemonProcess& d, client::Client& c) {
  const std::string dir = d.dir() + "/model";
  if (!std::filesystem::exists(dir)) {
    EXPECT_TRUE(client::SyntheticModel{}.Write(dir).ok());
  }
  auto m = c.RegisterModelDir(dir, kPageTokens);
  EXPECT_TRUE(m.ok()) << m.status();
  return m.ok() ? *m : client::ModelHandle{};
}

// Value of one series in a fresh scrape; -1 when absent, -2 when the scrape failed.
double Metric(const DaemonProcess& d, const std::string& series) {
  auto scrape = ScrapeMetrics(d.metrics_port());
  return scrape.ok() ? MetricValue(*scrape, series) : -2;
}

// Waits (up to 20 s) until `series` reaches at least `value`.
bool WaitForMetric(const DaemonProcess& d, const std::string& series, double value) {
  for (int i = 0; i < 1000; ++i) {
    if (Metric(d, series) >= value) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return false;
}

// Scrapes /metrics every 10 ms while alive and remembers the largest value of each series.
class MetricSampler {
 public:
  MetricSampler(const DaemonProcess& d, std::vector<std::string> series)
      : series_(std::move(series)), max_(series_.size(), 0), thread_([this, &d] {
          while (!stop_) {
            if (auto s = ScrapeMetrics(d.metrics_port()); s.ok()) {
              std::lock_guard<std::mutex> lock(mu_);
              for (size_t i = 0; i < series_.size(); ++i) {
                max_[i] = std::max(max_[i], MetricValue(*s, series_[i]));
              }
              ++samples_;
            }
            std::this_thread::sleep_for(std::chrono::milliseconds(10));
          }
        }) {}
  ~MetricSampler() { Stop(); }
  void Stop() {
    stop_ = true;
    if (thread_.joinable()) thread_.join();
  }
  double Max(size_t i) {
    std::lock_guard<std::mutex> lock(mu_);
    return max_[i];
  }
  int samples() {
    std::lock_guard<std::mutex> lock(mu_);
    return samples_;
  }

 private:
  const std::vector<std::string> series_;
  std::mutex mu_;
  std::vector<double> max_;
  int samples_ = 0;
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

// Gets every whole page of `tokens` and checks each returned page is the one put; returns how
// many came back.
size_t GetAndCheck(client::Client& c, const client::ModelHandle& m,
                   const std::vector<uint32_t>& tokens) {
  auto got = c.Get(m, tokens, 0);
  EXPECT_TRUE(got.ok()) << got.status();
  if (!got.ok()) return 0;
  for (size_t p = 0; p < got->size(); ++p) {
    EXPECT_TRUE((*got)[p].bytes == MakePage(m, tokens, p).bytes) << "page " << p;
  }
  return got->size();
}

TEST(Tiers, DemotedPagesPromoteByteIdenticalWithinBudgetsAndQuotas) {
  const uint64_t disk_budget = 24 * kPageCost, alpha_disk_quota = 6 * kPageCost;
  auto d = DaemonProcess::Start(
      absl::StrCat("host_budget_bytes: ", 8 * kPageCost,
                   " disk { budget_bytes: ", disk_budget, " }\n",
                   TenantBlock("alpha", absl::StrCat("host_quota_bytes: ", 4 * kPageCost,
                                                     " disk_quota_bytes: ", alpha_disk_quota)),
                   TenantBlock("beta", absl::StrCat("host_quota_bytes: ", 4 * kPageCost))));
  ASSERT_TRUE(d.ok()) << d.status();
  DaemonProcess& daemon = **d;
  auto alpha = As(daemon, "alpha"), beta = As(daemon, "beta");
  const auto model = Register(daemon, *alpha);
  ASSERT_TRUE(Register(daemon, *beta).page_tokens == kPageTokens);

  MetricSampler sampler(daemon, {R"(slimkv_stored_bytes{tenant="alpha",tier="host"})",
                                 R"(slimkv_stored_bytes{tenant="beta",tier="host"})",
                                 R"(slimkv_stored_bytes{tenant="alpha",tier="disk"})",
                                 R"(slimkv_stored_bytes{tenant="beta",tier="disk"})"});
  // beta: 12 pages, 4 fit its host quota, the other 8 go to disk. alpha: 20 pages, more than its
  // host quota and disk quota together: its oldest are evicted from disk, never beta's.
  std::vector<std::vector<uint32_t>> beta_prompts, alpha_prompts;
  for (uint32_t i = 0; i < 3; ++i) beta_prompts.push_back(Tokens(100 + i, 4 * kPageTokens));
  for (uint32_t i = 0; i < 5; ++i) alpha_prompts.push_back(Tokens(200 + i, 4 * kPageTokens));
  for (const auto& t : beta_prompts) ASSERT_TRUE(beta->Put(model, t, 0, MakePages(model, t)).ok());
  for (const auto& t : alpha_prompts) {
    ASSERT_TRUE(alpha->Put(model, t, 0, MakePages(model, t)).ok());
  }
  ASSERT_TRUE(WaitForMetric(daemon, R"(slimkv_demotions_total{tenant="beta"})", 8));

  size_t beta_hits = 0, alpha_hits = 0;
  for (const auto& t : beta_prompts) {
    EXPECT_EQ(beta->Lookup(model, t)->hit_tokens(), 4 * kPageTokens);
    beta_hits += GetAndCheck(*beta, model, t);
  }
  for (const auto& t : alpha_prompts) alpha_hits += GetAndCheck(*alpha, model, t);
  EXPECT_EQ(beta_hits, 12u) << "beta's pages are untouched by alpha's evictions";
  EXPECT_GE(alpha_hits, 4u);   // what fits its host quota at least
  EXPECT_LT(alpha_hits, 20u);  // its disk quota evicted some
  EXPECT_GE(Metric(daemon, R"(slimkv_promotions_total{tenant="beta"})"), 8);
  EXPECT_GT(Metric(daemon, R"(slimkv_evictions_total{tenant="alpha",tier="disk"})"), 0);
  EXPECT_EQ(Metric(daemon, R"(slimkv_evictions_total{tenant="beta",tier="disk"})"), 0);
  EXPECT_GT(Metric(daemon, R"(slimkv_disk_read_bytes_total{tenant="beta"})"), 0);

  sampler.Stop();
  EXPECT_GT(sampler.samples(), 5);
  EXPECT_LE(sampler.Max(0), 4 * kPageCost);
  EXPECT_LE(sampler.Max(1), 4 * kPageCost);
  EXPECT_LE(sampler.Max(2), alpha_disk_quota);
  EXPECT_LE(sampler.Max(2) + sampler.Max(3), disk_budget);
  EXPECT_GT(sampler.Max(3), 0);
}

TEST(Tiers, KillNineWithSyncLosesNoAcknowledgedPage) {
  auto d = DaemonProcess::Start(
      absl::StrCat("host_budget_bytes: ", 8 * kPageCost, " disk { sync: true }"));
  ASSERT_TRUE(d.ok()) << d.status();
  DaemonProcess& daemon = **d;
  const auto model = Register(daemon, *As(daemon, ""));

  // Four clients put pages one per call; each acknowledged one is remembered.
  struct Attempt {
    std::vector<uint32_t> tokens;  // the prompt up to and including the page
    uint32_t page;
    bool acked;
  };
  std::mutex mu;
  std::vector<Attempt> attempts;
  std::atomic<bool> stop{false};
  std::atomic<int> acked{0};
  std::vector<std::thread> clients;
  for (uint32_t c = 0; c < 4; ++c) {
    clients.emplace_back([&, c] {
      auto client = As(daemon, "");
      for (uint32_t i = 0; !stop; ++i) {
        const auto prompt = Tokens(1000 * (c + 1) + i, 4 * kPageTokens);
        for (uint32_t p = 0; p < 4 && !stop; ++p) {
          std::vector<uint32_t> upto(prompt.begin(), prompt.begin() + (p + 1) * kPageTokens);
          const bool ok = client->Put(model, upto, p, std::vector{MakePage(model, upto, p)}).ok();
          acked += ok;
          std::lock_guard<std::mutex> lock(mu);
          attempts.push_back({upto, p, ok});
        }
      }
    });
  }
  for (int i = 0; i < 500 && acked < 60; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(20));
  daemon.Kill();  // mid-storm
  stop = true;
  for (auto& t : clients) t.join();
  ASSERT_GE(acked, 20) << "the storm was too short to mean anything";

  // What RocksDB holds, counted directly.
  uint64_t records = 0;
  {
    rocksdb::DB* raw = nullptr;
    const std::string path = daemon.dir() + "/data/pages";
    ASSERT_TRUE(rocksdb::DB::OpenForReadOnly(PersistedOptions(path), path, &raw).ok());
    std::unique_ptr<rocksdb::DB> db(raw);
    std::unique_ptr<rocksdb::Iterator> it(db->NewIterator({}));
    for (it->SeekToFirst(); it->Valid(); it->Next()) ++records;
  }
  ASSERT_TRUE(daemon.Restart().ok());
  EXPECT_NE(daemon.Log().find(absl::StrCat("disk tier: ", records, " pages")), std::string::npos)
      << daemon.Log();
  EXPECT_EQ(Metric(daemon, R"(slimkv_stored_pages{tenant="default",tier="disk"})"), records);
  EXPECT_EQ(Metric(daemon, R"(slimkv_checksum_failures_total{tier="disk"})"), 0);

  auto client = As(daemon, "");
  ASSERT_EQ(Register(daemon, *client).model_id, model.model_id);
  int present = 0;
  for (const Attempt& a : attempts) {
    auto got = client->Get(model, a.tokens, a.page);
    ASSERT_TRUE(got.ok()) << got.status();
    if (a.acked) {
      ASSERT_EQ(got->size(), 1u) << "acknowledged page " << a.page << " lost";
    }
    if (!got->empty()) {
      ++present;
      EXPECT_TRUE((*got)[0].bytes == MakePage(model, a.tokens, a.page).bytes);
    }
  }
  EXPECT_GE(present, acked.load());
}

// Flips one byte of the RocksDB value under `key_hex` at `offset` (from the end when negative).
void FlipByte(const std::string& db_path, const std::string& key_hex, int64_t offset) {
  rocksdb::DB* raw = nullptr;
  ASSERT_TRUE(rocksdb::DB::Open(PersistedOptions(db_path), db_path, &raw).ok());
  std::unique_ptr<rocksdb::DB> db(raw);
  const std::string key = absl::HexStringToBytes(key_hex);
  std::string value;
  ASSERT_TRUE(db->Get({}, key, &value).ok()) << key_hex;
  value[offset >= 0 ? offset : value.size() + offset] ^= 0x5a;
  rocksdb::WriteOptions w;
  w.sync = true;
  ASSERT_TRUE(db->Put(w, key, value).ok());
}

TEST(Tiers, CorruptRecordsAreDroppedCountedAndNeverServed) {
  auto d = DaemonProcess::Start("disk { sync: true }");
  ASSERT_TRUE(d.ok()) << d.status();
  DaemonProcess& daemon = **d;
  auto client = As(daemon, "");
  const auto model = Register(daemon, *client);
  const auto tokens = Tokens(7, 4 * kPageTokens);
  ASSERT_TRUE(client->Put(model, tokens, 0, MakePages(model, tokens)).ok());
  auto keys = client->Explain(model.model_id, tokens);
  ASSERT_TRUE(keys.ok() && keys->page_keys_size() == 4);
  ASSERT_EQ(daemon.Stop(), 0);

  const std::string db = daemon.dir() + "/data/pages";
  FlipByte(db, keys->page_keys(1), -1000);  // in page 1's payload: found at get
  FlipByte(db, keys->page_keys(3), 20);     // in page 3's header: found at the rebuild
  ASSERT_TRUE(daemon.Restart().ok());
  EXPECT_EQ(Metric(daemon, R"(slimkv_checksum_failures_total{tier="disk"})"), 1);
  EXPECT_EQ(Metric(daemon, R"(slimkv_stored_pages{tenant="default",tier="disk"})"), 3);

  client = As(daemon, "");
  ASSERT_EQ(Register(daemon, *client).model_id, model.model_id);
  EXPECT_EQ(GetAndCheck(*client, model, tokens), 1u) << "page 1 is never served";
  EXPECT_EQ(Metric(daemon, R"(slimkv_checksum_failures_total{tier="disk"})"), 2);
  EXPECT_EQ(client->Lookup(model, tokens)->hit_tokens(), kPageTokens);
  auto rest = client->Get(model, tokens, 2);
  ASSERT_TRUE(rest.ok());
  ASSERT_EQ(rest->size(), 1u) << "page 2 intact, page 3 dropped at the rebuild";
  EXPECT_TRUE((*rest)[0].bytes == MakePage(model, tokens, 2).bytes);
}

}  // namespace
}  // namespace slimkv::testing
