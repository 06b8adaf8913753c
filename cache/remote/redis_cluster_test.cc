// RedisCluster against a real Redis Cluster (3 masters + 3 replicas of Debian's redis-server on
// free loopback ports, started through ops/redis-cluster.sh in a temp dir, stopped after).
// Waits are polls for a condition under a deadline, never bare sleeps.
#include "cache/remote/redis_cluster.h"

#include <signal.h>

#include <atomic>
#include <cstdio>
#include <functional>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "cache/remote/internal/hash_slot.h"
#include "tests/support/local_redis_cluster.h"
#include "gtest/gtest.h"

namespace slimkv::remote {
namespace {

using testing::LocalCluster;

std::string RandomBytes(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::string s(n, '\0');
  for (size_t i = 0; i < n; i += 4) {
    const uint32_t r = rng();
    for (size_t k = 0; k < 4 && i + k < n; ++k) s[i + k] = static_cast<char>(r >> (8 * k));
  }
  return s;
}

// Polls `done` every 20 ms until it holds or `limit` passes; returns whether it held.
bool WaitFor(absl::Duration limit, const std::function<bool()>& done) {
  const absl::Time deadline = absl::Now() + limit;
  while (absl::Now() < deadline) {
    if (done()) return true;
    absl::SleepFor(absl::Milliseconds(20));
  }
  return done();
}

std::unique_ptr<RedisCluster> Client(const LocalCluster& cluster, absl::Duration timeout = absl::Seconds(2)) {
  RedisClusterOptions options;
  options.seeds = {cluster.seed()};
  options.command_timeout = timeout;
  absl::StatusOr<std::unique_ptr<RedisCluster>> client = RedisCluster::Create(options);
  EXPECT_TRUE(client.ok()) << client.status();
  return std::move(*client);
}

// Waits until a master's replicas have acknowledged all of its writes (so a failover loses none).
bool ReplicasCaughtUp(const std::vector<int>& masters) {
  return WaitFor(absl::Seconds(10), [&] {
    for (int port : masters) {
      absl::StatusOr<std::string> info = LocalCluster::CommandString(port, {"INFO", "replication"});
      if (!info.ok()) return false;
      long long master_offset = -1, replica_offset = -2;
      for (absl::string_view line : absl::StrSplit(*info, "\r\n", absl::SkipEmpty())) {
        if (absl::ConsumePrefix(&line, "master_repl_offset:")) (void)absl::SimpleAtoi(line, &master_offset);
        if (absl::StartsWith(line, "slave0:")) {
          size_t at = line.find("offset=");
          if (at != absl::string_view::npos) {
            absl::string_view rest = line.substr(at + 7);
            (void)absl::SimpleAtoi(rest.substr(0, rest.find(',')), &replica_offset);
          }
        }
      }
      if (master_offset != replica_offset) return false;
    }
    return true;
  });
}

TEST(HashSlot, SpecValues) {
  EXPECT_EQ(internal::Crc16Xmodem("123456789"), 0x31C3);
  EXPECT_EQ(internal::KeySlot("foo"), 12182);
  EXPECT_EQ(internal::KeySlot("bar"), 5061);
  EXPECT_EQ(internal::KeySlot("{user1000}.following"), internal::KeySlot("user1000"));
  EXPECT_EQ(internal::KeySlot("{user1000}.followers"), internal::KeySlot("{user1000}.following"));
  EXPECT_EQ(internal::KeySlot("foo{}{bar}"), internal::Crc16Xmodem("foo{}{bar}") % 16384);
  EXPECT_EQ(internal::KeySlot("foo{{bar}}zap"), internal::KeySlot("{bar"));
  EXPECT_EQ(internal::KeySlot("foo{bar}{zap}"), internal::KeySlot("bar"));
}

TEST(RedisClusterOptionsTest, RejectsBadOptions) {
  RedisClusterOptions options;
  EXPECT_EQ(RedisCluster::Create(options).status().code(), absl::StatusCode::kInvalidArgument);
  options.seeds = {"127.0.0.1"};
  EXPECT_EQ(RedisCluster::Create(options).status().code(), absl::StatusCode::kInvalidArgument);
  options.seeds = {"127.0.0.1:7000"};
  options.command_timeout = absl::ZeroDuration();
  EXPECT_EQ(RedisCluster::Create(options).status().code(), absl::StatusCode::kInvalidArgument);
}

// ---- one cluster shared by the tests that leave it as they found it ---------------------------

class RedisClusterTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    absl::StatusOr<std::unique_ptr<LocalCluster>> started = LocalCluster::Start();
    ASSERT_TRUE(started.ok()) << started.status();
    cluster_ = started->release();
  }
  static void TearDownTestSuite() {
    delete cluster_;
    cluster_ = nullptr;
  }
  void SetUp() override { ASSERT_NE(cluster_, nullptr); }

  static LocalCluster* cluster_;
};
LocalCluster* RedisClusterTest::cluster_ = nullptr;

TEST_F(RedisClusterTest, KeySlotMatchesTheServer) {
  std::vector<std::string> keys = {"",          "foo",         "bar",           "{user1000}.following",
                                   "foo{}{bar}", "foo{{bar}}zap", "foo{bar}{zap}", "{",
                                   "}",         "{}",          std::string("\0\xff{\x01}z", 6)};
  for (int i = 0; i < 200; ++i) keys.push_back(RandomBytes(1 + i % 40, i));
  for (const std::string& key : keys) {
    absl::StatusOr<std::string> slot = LocalCluster::CommandString(cluster_->base_port(), {"CLUSTER", "KEYSLOT", key});
    ASSERT_TRUE(slot.ok()) << slot.status();
    EXPECT_EQ(absl::StrCat(internal::KeySlot(key)), *slot) << absl::CEscape(key);
  }
}

TEST_F(RedisClusterTest, BinaryRoundTrip) {
  std::unique_ptr<RedisCluster> client = Client(*cluster_);
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"rt:empty", ""},
      {"rt:nul", std::string("\0a\0\r\n\xff", 6)},
      {"rt:1MiB", RandomBytes(1 << 20, 1)},
      {"rt:32MiB", RandomBytes(32 << 20, 2)},
      {std::string("rt:\0binary\xffkey", 14), RandomBytes(1000, 3)},
  };
  for (const auto& [key, value] : cases) {
    ASSERT_TRUE(client->Set(key, value).ok()) << absl::CEscape(key);
    absl::StatusOr<bool> exists = client->Exists(key);
    ASSERT_TRUE(exists.ok()) << exists.status();
    EXPECT_TRUE(*exists);
    absl::StatusOr<std::optional<RedisCluster::Value>> got = client->Get(key);
    ASSERT_TRUE(got.ok()) << got.status();
    ASSERT_TRUE(got->has_value());
    EXPECT_EQ((*got)->size(), value.size());
    EXPECT_TRUE((*got)->bytes() == value) << absl::CEscape(key);
    absl::StatusOr<bool> deleted = client->Del(key);
    ASSERT_TRUE(deleted.ok()) << deleted.status();
    EXPECT_TRUE(*deleted);
    got = client->Get(key);
    ASSERT_TRUE(got.ok()) << got.status();
    EXPECT_FALSE(got->has_value());
    exists = client->Exists(key);
    ASSERT_TRUE(exists.ok());
    EXPECT_FALSE(*exists);
    deleted = client->Del(key);
    ASSERT_TRUE(deleted.ok());
    EXPECT_FALSE(*deleted);
  }
  const RedisClusterStats stats = client->stats();
  EXPECT_GE(stats.bytes_in, (33u << 20));
  EXPECT_GE(stats.bytes_out, (33u << 20));
  EXPECT_EQ(stats.moved_redirects, 0u);
}

TEST_F(RedisClusterTest, PipelinedBatchesSpanAllMasters) {
  std::unique_ptr<RedisCluster> client = Client(*cluster_);
  constexpr int kKeys = 300;
  std::vector<std::string> keys, values;
  std::vector<RedisCluster::KeyValue> items;
  for (int i = 0; i < kKeys; ++i) {
    keys.push_back(absl::StrCat("batch:", i));
    values.push_back(RandomBytes(1 + (i * 997) % 20000, 100 + i));
  }
  for (int i = 0; i < kKeys; ++i) items.push_back({keys[i], values[i]});
  // Every master owns some of the keys.
  absl::StatusOr<std::vector<int>> masters = cluster_->Masters(cluster_->base_port());
  ASSERT_TRUE(masters.ok()) << masters.status();
  ASSERT_EQ(masters->size(), 3u);
  std::set<int> owners;
  for (const std::string& key : keys) owners.insert(*cluster_->MasterOfSlot(internal::KeySlot(key), cluster_->base_port()));
  EXPECT_EQ(owners.size(), 3u);

  const uint64_t commands_before = client->stats().commands;
  for (const absl::Status& s : client->MultiSet(items)) ASSERT_TRUE(s.ok()) << s;
  EXPECT_EQ(client->stats().commands - commands_before, static_cast<uint64_t>(kKeys));

  std::vector<absl::string_view> lookup(keys.begin(), keys.end());
  std::vector<std::string> absent;
  for (int i = 0; i < 50; ++i) absent.push_back(absl::StrCat("batch:absent:", i));
  lookup.insert(lookup.end(), absent.begin(), absent.end());
  std::vector<absl::StatusOr<bool>> exists = client->MultiExists(lookup);
  ASSERT_EQ(exists.size(), lookup.size());
  for (size_t i = 0; i < lookup.size(); ++i) {
    ASSERT_TRUE(exists[i].ok()) << exists[i].status();
    EXPECT_EQ(*exists[i], i < keys.size()) << lookup[i];
  }
  std::vector<absl::StatusOr<std::optional<RedisCluster::Value>>> got = client->MultiGet(lookup);
  ASSERT_EQ(got.size(), lookup.size());
  for (size_t i = 0; i < lookup.size(); ++i) {
    ASSERT_TRUE(got[i].ok()) << got[i].status();
    ASSERT_EQ(got[i]->has_value(), i < keys.size()) << lookup[i];
    if (i < keys.size()) {
      EXPECT_TRUE((*got[i])->bytes() == values[i]) << lookup[i];
    }
  }
  for (const std::string& key : keys) ASSERT_TRUE(client->Del(key).ok());
}

TEST_F(RedisClusterTest, ConcurrentCallersShareOneClient) {
  std::unique_ptr<RedisCluster> client = Client(*cluster_);
  constexpr int kThreads = 8, kRounds = 20, kBatch = 16;
  std::atomic<int> wrong{0}, failed{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int r = 0; r < kRounds; ++r) {
        std::vector<std::string> keys, values;
        std::vector<RedisCluster::KeyValue> items;
        for (int i = 0; i < kBatch; ++i) {
          keys.push_back(absl::StrCat("conc:", t, ":", r, ":", i));
          values.push_back(RandomBytes(4096 + i, t * 100000 + r * 100 + i));
        }
        for (int i = 0; i < kBatch; ++i) items.push_back({keys[i], values[i]});
        for (const absl::Status& s : client->MultiSet(items)) failed += !s.ok();
        std::vector<absl::string_view> views(keys.begin(), keys.end());
        auto got = client->MultiGet(views);
        for (int i = 0; i < kBatch; ++i) {
          if (!got[i].ok() || !got[i]->has_value()) {
            ++failed;
          } else if ((*got[i])->bytes() != values[i]) {
            ++wrong;
          }
        }
        for (const std::string& k : keys) failed += !client->Del(k).ok();
      }
    });
  }
  for (std::thread& t : threads) t.join();
  EXPECT_EQ(failed.load(), 0);
  EXPECT_EQ(wrong.load(), 0);
  // The pool reuses connections: far fewer connects than calls.
  EXPECT_LE(client->stats().connects, static_cast<uint64_t>(3 * kThreads + 6));
}

// Moves `slot` from its owner to another master the way redis-cli --cluster reshard does:
// IMPORTING / MIGRATING, MIGRATE of its keys, then SETSLOT NODE on every master. With
// `finish` false it stops after IMPORTING / MIGRATING (the slot is mid-migration).
struct Migration {
  int from, to;
  std::string from_id, to_id;
};
Migration StartMigration(LocalCluster& cluster, int slot) {
  Migration m{};
  const int via = cluster.base_port();
  m.from = *cluster.MasterOfSlot(slot, via);
  const std::vector<int> masters = *cluster.Masters(via);
  for (int port : masters) {
    if (port != m.from) {
      m.to = port;
      break;
    }
  }
  m.from_id = *LocalCluster::NodeId(m.from);
  m.to_id = *LocalCluster::NodeId(m.to);
  const std::string s = absl::StrCat(slot);
  EXPECT_TRUE(LocalCluster::Command(m.to, {"CLUSTER", "SETSLOT", s, "IMPORTING", m.from_id}).ok());
  EXPECT_TRUE(LocalCluster::Command(m.from, {"CLUSTER", "SETSLOT", s, "MIGRATING", m.to_id}).ok());
  return m;
}
void FinishMigration(LocalCluster& cluster, int slot, const Migration& m) {
  const std::string s = absl::StrCat(slot);
  absl::StatusOr<testing::ReplyPtr> keys = LocalCluster::Command(m.from, {"CLUSTER", "GETKEYSINSLOT", s, "1000"});
  ASSERT_TRUE(keys.ok()) << keys.status();
  if ((*keys)->elements > 0) {
    std::vector<std::string> migrate = {"MIGRATE", "127.0.0.1", absl::StrCat(m.to), "", "0", "5000", "KEYS"};
    for (size_t i = 0; i < (*keys)->elements; ++i) {
      migrate.emplace_back((*keys)->element[i]->str, (*keys)->element[i]->len);
    }
    absl::StatusOr<testing::ReplyPtr> moved = LocalCluster::Command(m.from, migrate);
    ASSERT_TRUE(moved.ok()) << moved.status();
  }
  const std::vector<int> masters = *cluster.Masters(cluster.base_port());
  for (int port : masters) {
    ASSERT_TRUE(LocalCluster::Command(port, {"CLUSTER", "SETSLOT", s, "NODE", m.to_id}).ok());
  }
}

TEST_F(RedisClusterTest, ConnectionsClosedWhileIdleAreRetriedNotMisses) {
  std::unique_ptr<RedisCluster> client = Client(*cluster_);
  std::vector<std::string> keys;
  for (int i = 0; i < 60; ++i) keys.push_back(absl::StrCat("idle:", i));
  std::vector<absl::string_view> views(keys.begin(), keys.end());
  std::vector<RedisCluster::KeyValue> items;
  for (const std::string& k : keys) items.push_back({k, k});
  for (const absl::Status& s : client->MultiSet(items)) ASSERT_TRUE(s.ok()) << s;
  // Every master closes every client connection (the pooled ones included).
  absl::StatusOr<std::vector<int>> masters = cluster_->Masters(cluster_->base_port());
  ASSERT_TRUE(masters.ok());
  for (int port : *masters) ASSERT_TRUE(LocalCluster::Command(port, {"CLIENT", "KILL", "TYPE", "normal"}).ok());
  auto got = client->MultiGet(views);
  for (size_t i = 0; i < keys.size(); ++i) {
    ASSERT_TRUE(got[i].ok()) << got[i].status();
    ASSERT_TRUE(got[i]->has_value());
    EXPECT_EQ((*got[i])->bytes(), keys[i]);
  }
  EXPECT_GE(client->stats().stale_connection_retries, 1u);
  EXPECT_EQ(client->stats().fast_failures, 0u);
  for (const std::string& k : keys) ASSERT_TRUE(client->Del(k).ok());
}

TEST_F(RedisClusterTest, FollowsMovedAfterASlotMigration) {
  std::unique_ptr<RedisCluster> client = Client(*cluster_);
  const std::string key = "moved:{page-a}";
  const std::string value = RandomBytes(100000, 7);
  ASSERT_TRUE(client->Set(key, value).ok());  // loads the slot map
  const int slot = internal::KeySlot(key);
  const Migration m = StartMigration(*cluster_, slot);
  FinishMigration(*cluster_, slot, m);
  ASSERT_EQ(*cluster_->MasterOfSlot(slot, m.to), m.to);

  const uint64_t moved_before = client->stats().moved_redirects;
  absl::StatusOr<std::optional<RedisCluster::Value>> got = client->Get(key);
  ASSERT_TRUE(got.ok()) << got.status();
  ASSERT_TRUE(got->has_value());
  EXPECT_TRUE((*got)->bytes() == value);
  EXPECT_GE(client->stats().moved_redirects, moved_before + 1);
  // The map was updated: the next call goes straight to the new owner.
  const uint64_t moved_after = client->stats().moved_redirects;
  ASSERT_TRUE(client->Get(key).ok());
  EXPECT_EQ(client->stats().moved_redirects, moved_after);
  ASSERT_TRUE(client->Del(key).ok());
}

TEST_F(RedisClusterTest, FollowsAskDuringAMigration) {
  std::unique_ptr<RedisCluster> client = Client(*cluster_);
  const std::string key = "ask:{page-b}";
  const std::string value = RandomBytes(50000, 8);
  ASSERT_TRUE(client->Del(key).ok());  // loads the slot map; the key is absent from its owner
  const int slot = internal::KeySlot(key);
  const Migration m = StartMigration(*cluster_, slot);

  // The source lacks the key and its slot is MIGRATING: it answers ASK, and the client writes
  // and reads the key on the importing node after ASKING.
  ASSERT_TRUE(client->Set(key, value).ok());
  absl::StatusOr<std::optional<RedisCluster::Value>> got = client->Get(key);
  ASSERT_TRUE(got.ok()) << got.status();
  ASSERT_TRUE(got->has_value());
  EXPECT_TRUE((*got)->bytes() == value);
  EXPECT_GE(client->stats().ask_redirects, 2u);
  EXPECT_EQ(client->stats().moved_redirects, 0u);
  // The key went to the importing node, not the source.
  EXPECT_EQ(LocalCluster::CommandString(m.from, {"CLUSTER", "COUNTKEYSINSLOT", absl::StrCat(slot)}).value_or("?"), "0");
  EXPECT_EQ(LocalCluster::CommandString(m.to, {"CLUSTER", "COUNTKEYSINSLOT", absl::StrCat(slot)}).value_or("?"), "1");

  FinishMigration(*cluster_, slot, m);
  got = client->Get(key);
  ASSERT_TRUE(got.ok()) << got.status();
  ASSERT_TRUE(got->has_value());
  EXPECT_TRUE((*got)->bytes() == value);
  EXPECT_GE(client->stats().moved_redirects, 1u);
  ASSERT_TRUE(client->Del(key).ok());
}

TEST_F(RedisClusterTest, AuthenticatesAsAnAclUser) {
  for (int port : cluster_->ports()) {
    ASSERT_TRUE(LocalCluster::Command(port, {"ACL", "SETUSER", "slimkv", "on", ">s3cret", "~*", "+@all"}).ok());
  }
  RedisClusterOptions options;
  options.seeds = {cluster_->seed()};
  options.user = "slimkv";
  options.password = "s3cret";
  std::unique_ptr<RedisCluster> client = *RedisCluster::Create(options);
  ASSERT_TRUE(client->Set("auth:k", "v").ok());
  absl::StatusOr<std::optional<RedisCluster::Value>> got = client->Get("auth:k");
  ASSERT_TRUE(got.ok() && got->has_value()) << got.status();
  EXPECT_EQ((*got)->bytes(), "v");
  ASSERT_TRUE(client->Del("auth:k").ok());

  options.password = "wrong";
  std::unique_ptr<RedisCluster> denied = *RedisCluster::Create(options);
  EXPECT_EQ(denied->Get("auth:k").status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_GE(denied->stats().auth_failures, 1u);
  for (int port : cluster_->ports()) ASSERT_TRUE(LocalCluster::Command(port, {"ACL", "DELUSER", "slimkv"}).ok());
}

TEST_F(RedisClusterTest, EvictedKeysAreMissesNotErrors) {
  absl::StatusOr<std::vector<int>> masters = cluster_->Masters(cluster_->base_port());
  ASSERT_TRUE(masters.ok());
  for (int port : *masters) ASSERT_TRUE(LocalCluster::Command(port, {"CONFIG", "SET", "maxmemory", "8mb"}).ok());
  std::unique_ptr<RedisCluster> client = Client(*cluster_);
  constexpr int kKeys = 60;  // 60 MiB into 3 × 8 MiB
  std::vector<std::string> keys, values;
  for (int i = 0; i < kKeys; ++i) {
    keys.push_back(absl::StrCat("evict:", i));
    values.push_back(RandomBytes(1 << 20, 500 + i));
    ASSERT_TRUE(client->Set(keys[i], values[i]).ok()) << i;
  }
  std::vector<absl::string_view> views(keys.begin(), keys.end());
  int hits = 0, misses = 0;
  for (size_t i = 0; i < views.size(); ++i) {
    absl::StatusOr<std::optional<RedisCluster::Value>> got = client->Get(views[i]);
    ASSERT_TRUE(got.ok()) << got.status();
    if (got->has_value()) {
      ++hits;
      EXPECT_TRUE((*got)->bytes() == values[i]);
    } else {
      ++misses;
    }
  }
  std::vector<absl::StatusOr<bool>> exists = client->MultiExists(views);
  for (const absl::StatusOr<bool>& e : exists) EXPECT_TRUE(e.ok()) << e.status();
  EXPECT_GT(misses, kKeys / 2);
  EXPECT_GT(hits, 0);
  for (int port : *masters) ASSERT_TRUE(LocalCluster::Command(port, {"CONFIG", "SET", "maxmemory", "256mb"}).ok());
  for (const std::string& key : keys) ASSERT_TRUE(client->Del(key).ok());
}

// ---- faults: each test owns its cluster -----------------------------------------------------

// A fresh cluster per test, and a client with a short timeout.
class RedisClusterFaultTest : public ::testing::Test {
 protected:
  void SetUp() override {
    absl::StatusOr<std::unique_ptr<LocalCluster>> started = LocalCluster::Start();
    ASSERT_TRUE(started.ok()) << started.status();
    owned_ = std::move(*started);
    client = Client(*owned_, timeout);
  }

  const absl::Duration timeout = absl::Milliseconds(300);
  std::unique_ptr<LocalCluster> owned_;
  LocalCluster& cluster() { return *owned_; }
  std::unique_ptr<RedisCluster> client;
};

TEST_F(RedisClusterFaultTest, HungMasterTimesOutThenMasterKilledFailsOver) {
  LocalCluster& cluster = this->cluster();

  constexpr int kKeys = 90;
  std::vector<std::string> keys, values;
  std::vector<RedisCluster::KeyValue> items;
  for (int i = 0; i < kKeys; ++i) {
    keys.push_back(absl::StrCat("fo:", i));
    values.push_back(RandomBytes(64 << 10, 900 + i));
  }
  for (int i = 0; i < kKeys; ++i) items.push_back({keys[i], values[i]});
  for (const absl::Status& s : client->MultiSet(items)) ASSERT_TRUE(s.ok()) << s;
  std::vector<absl::string_view> views(keys.begin(), keys.end());
  ASSERT_TRUE(ReplicasCaughtUp(*cluster.Masters(cluster.base_port())));

  const int victim = *cluster.MasterOfSlot(internal::KeySlot(keys[0]), cluster.base_port());
  const pid_t pid = cluster.Pid(victim);
  ASSERT_GT(pid, 0);
  std::vector<size_t> on_victim, elsewhere;
  for (size_t i = 0; i < keys.size(); ++i) {
    (*cluster.MasterOfSlot(internal::KeySlot(keys[i]), cluster.base_port()) == victim ? on_victim : elsewhere).push_back(i);
  }
  ASSERT_FALSE(on_victim.empty());
  ASSERT_FALSE(elsewhere.empty());

  // A hung master (SIGSTOP, shorter than cluster-node-timeout so no failover): its keys fail
  // with UNAVAILABLE within the timeout, the other masters' keys are served.
  ASSERT_EQ(kill(pid, SIGSTOP), 0);
  {
    const absl::Time t0 = absl::Now();
    auto got = client->MultiGet(views);
    const absl::Duration took = absl::Now() - t0;
    EXPECT_LE(took, 2 * timeout);
    std::printf("hung master: MultiGet of %zu keys took %s (timeout %s)\n", views.size(),
                absl::FormatDuration(took).c_str(), absl::FormatDuration(timeout).c_str());
    for (size_t i : on_victim) EXPECT_EQ(got[i].status().code(), absl::StatusCode::kUnavailable);
    for (size_t i : elsewhere) {
      ASSERT_TRUE(got[i].ok()) << got[i].status();
      EXPECT_TRUE(got[i]->has_value() && (*got[i])->bytes() == values[i]);
    }
    // Marked down: the next call skips it at once.
    const absl::Time t1 = absl::Now();
    EXPECT_EQ(client->Get(keys[on_victim[0]]).status().code(), absl::StatusCode::kUnavailable);
    EXPECT_LE(absl::Now() - t1, 2 * timeout);
  }
  EXPECT_GE(client->stats().timeouts, 1u);
  ASSERT_EQ(kill(pid, SIGCONT), 0);
  ASSERT_TRUE(WaitFor(absl::Seconds(10), [&] {
    auto got = client->Get(keys[on_victim[0]]);
    return got.ok() && got->has_value();
  }));

  // Killed master: calls fail fast until its replica takes over, then succeed, never with
  // wrong bytes.
  ASSERT_EQ(kill(pid, SIGKILL), 0);
  absl::Duration slowest;
  int calls = 0, failures = 0;
  const bool recovered = WaitFor(absl::Seconds(30), [&] {
    const absl::Time t0 = absl::Now();
    auto got = client->MultiGet(views);
    slowest = std::max(slowest, absl::Now() - t0);
    ++calls;
    bool all = true;
    for (size_t i = 0; i < got.size(); ++i) {
      if (!got[i].ok()) {
        EXPECT_EQ(got[i].status().code(), absl::StatusCode::kUnavailable) << got[i].status();
        all = false;
        continue;
      }
      EXPECT_TRUE(got[i]->has_value()) << keys[i];
      if (got[i]->has_value()) {
        EXPECT_TRUE((*got[i])->bytes() == values[i]) << keys[i];
      }
    }
    failures += !all;
    return all;
  });
  ASSERT_TRUE(recovered) << "replica did not take over in 30 s";
  EXPECT_GT(failures, 0);
  EXPECT_LE(slowest, 2 * timeout) << "over " << calls << " calls";
  std::printf("failover: %d MultiGet calls until the replica served, %d failed, slowest %s (timeout %s)\n", calls,
              failures, absl::FormatDuration(slowest).c_str(), absl::FormatDuration(timeout).c_str());
  const int via = cluster.base_port() == victim ? cluster.base_port() + 1 : cluster.base_port();
  const int new_owner = *cluster.MasterOfSlot(internal::KeySlot(keys[0]), via);
  EXPECT_NE(new_owner, victim);
  // Writes resume on the promoted replica.
  ASSERT_TRUE(client->Set(keys[on_victim[0]], "after failover").ok());
  auto got = client->Get(keys[on_victim[0]]);
  ASSERT_TRUE(got.ok() && got->has_value());
  EXPECT_EQ((*got)->bytes(), "after failover");
  const RedisClusterStats stats = client->stats();
  EXPECT_GE(stats.slot_map_refreshes, 2u);
  EXPECT_GE(stats.connect_failures + stats.io_errors, 1u);
}

TEST_F(RedisClusterFaultTest, AllNodesStoppedIsUnavailableWithinTheTimeoutThenRecovers) {
  LocalCluster& cluster = this->cluster();
  std::vector<std::string> keys;
  for (int i = 0; i < 30; ++i) keys.push_back(absl::StrCat("down:", i));
  std::vector<absl::string_view> views(keys.begin(), keys.end());
  for (const std::string& k : keys) ASSERT_TRUE(client->Set(k, k).ok());

  ASSERT_TRUE(cluster.Stop().ok());
  absl::Duration slowest;
  for (int round = 0; round < 20; ++round) {
    const absl::Time t0 = absl::Now();
    EXPECT_EQ(client->Get(keys[round % keys.size()]).status().code(), absl::StatusCode::kUnavailable);
    EXPECT_EQ(client->Set(keys[round % keys.size()], "x").code(), absl::StatusCode::kUnavailable);
    for (const auto& r : client->MultiGet(views)) EXPECT_EQ(r.status().code(), absl::StatusCode::kUnavailable);
    for (const auto& r : client->MultiExists(views)) EXPECT_EQ(r.status().code(), absl::StatusCode::kUnavailable);
    slowest = std::max(slowest, (absl::Now() - t0) / 4);
  }
  EXPECT_LE(slowest, 2 * timeout);
  std::printf("all nodes down: slowest call %s (timeout %s)\n", absl::FormatDuration(slowest).c_str(),
              absl::FormatDuration(timeout).c_str());

  // A client created while the cluster is down is usable once it is back.
  std::unique_ptr<RedisCluster> late = Client(cluster, timeout);
  EXPECT_EQ(late->Get("down:0").status().code(), absl::StatusCode::kUnavailable);

  ASSERT_TRUE(cluster.Restart().ok());
  for (RedisCluster* c : {client.get(), late.get()}) {
    ASSERT_TRUE(WaitFor(absl::Seconds(20), [&] { return c->Set("down:back", "yes").ok(); }));
    auto got = c->Get("down:back");
    ASSERT_TRUE(got.ok() && got->has_value()) << got.status();
    EXPECT_EQ((*got)->bytes(), "yes");
    // No persistence: what was there before the stop is gone, a miss rather than an error.
    auto old = c->MultiGet(views);
    for (const auto& r : old) {
      ASSERT_TRUE(r.ok()) << r.status();
      EXPECT_FALSE(r->has_value());
    }
  }
  EXPECT_GE(client->stats().reconnects, 1u);
}

}  // namespace
}  // namespace slimkv::remote
