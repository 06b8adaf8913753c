// redis_cluster_bench: RedisCluster's pipelined MultiSet / MultiGet against raw hiredis SET / GET
// of the same bytes on the same local Redis Cluster (3 masters + 3 replicas, loopback, started
// through ops/redis-cluster.sh and stopped at the end), in the same run.
//
// Two record sizes from Llama-2-7B (32 layers, 32 KV heads x 128, bf16): a 16-token page
// (16 * 32 * 2 * 4096 * 2 bytes = 8 MiB) and a 256 KiB per-layer record. Each batch puts or gets
// --batch_bytes worth of records in one call; GB/s is record bytes (10^9) over the wall time of
// all batches; p50/p99 are per batch. Every get is checked for size and, for the first record
// of each batch, byte for byte.
//
// Raw hiredis, pipelined: one blocking connection per master, the batch's commands appended
// (redisAppendCommand "SET %b %b" / "GET %b") per node, then each node's replies read
// (redisGetReply), node after node; routing from CLUSTER SLOTS and the same CRC16.
// Raw hiredis, one by one: redisCommand per record (a round trip each).
#include <hiredis/hiredis.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <functional>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "cache/remote/internal/hash_slot.h"
#include "cache/remote/internal/redis_connection.h"
#include "cache/remote/redis_cluster.h"
#include "tests/support/local_redis_cluster.h"

ABSL_FLAG(int, rounds, 8, "batches per phase (after one warm-up batch)");
ABSL_FLAG(int64_t, batch_bytes, 256 << 20, "record bytes per batch");
ABSL_FLAG(std::string, maxmemory, "1gb", "maxmemory of each node");

namespace slimkv::remote {
namespace {

using internal::ContextPtr;
using internal::ReplyPtr;

struct Phase {
  std::string name;
  std::vector<double> seconds;  // per batch
  double bytes = 0;
  bool ok = true;
};

double Percentile(std::vector<double> v, double p) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : v[std::min(v.size() - 1, static_cast<size_t>(p * (v.size() - 1) + 0.5))];
}

double GBps(const Phase& p) {
  double total = 0;
  for (double s : p.seconds) total += s;
  return total > 0 ? p.bytes / total / 1e9 : 0;
}

class RawCluster {
 public:
  explicit RawCluster(const testing::LocalCluster& cluster) {
    absl::StatusOr<testing::ReplyPtr> slots = testing::LocalCluster::Command(cluster.base_port(), {"CLUSTER", "SLOTS"});
    slot_port_.assign(internal::kClusterSlots, 0);
    for (size_t i = 0; i < (*slots)->elements; ++i) {
      const redisReply* e = (*slots)->element[i];
      const int port = static_cast<int>(e->element[2]->element[1]->integer);
      for (long long s = e->element[0]->integer; s <= e->element[1]->integer; ++s) slot_port_[s] = port;
      if (!contexts_.count(port)) {
        timeval tv{10, 0};
        ContextPtr c(redisConnectWithTimeout("127.0.0.1", port, tv));
        redisSetTimeout(c.get(), tv);
        contexts_[port] = std::move(c);
      }
    }
  }
  redisContext* For(absl::string_view key) { return contexts_[slot_port_[internal::KeySlot(key)]].get(); }
  std::map<int, ContextPtr>& contexts() { return contexts_; }

 private:
  std::vector<int> slot_port_;
  std::map<int, ContextPtr> contexts_;
};

int Run() {
  absl::StatusOr<std::unique_ptr<testing::LocalCluster>> cluster =
      testing::LocalCluster::Start(absl::GetFlag(FLAGS_maxmemory));
  if (!cluster.ok()) {
    std::fprintf(stderr, "%s\n", std::string(cluster.status().message()).c_str());
    return 1;
  }
  RedisClusterOptions options;
  options.seeds = {(*cluster)->seed()};
  options.command_timeout = absl::Seconds(30);
  std::unique_ptr<RedisCluster> client = *RedisCluster::Create(options);
  RawCluster raw(**cluster);

  const int rounds = absl::GetFlag(FLAGS_rounds);
  std::vector<Phase> phases;
  for (const size_t record : {size_t{8} << 20, size_t{256} << 10}) {
    const size_t count = std::max<size_t>(1, absl::GetFlag(FLAGS_batch_bytes) / record);
    const std::string label = record >= (1 << 20) ? absl::StrCat(record >> 20, " MiB") : absl::StrCat(record >> 10, " KiB");
    std::vector<std::string> keys, values;
    std::mt19937_64 rng(record);
    for (size_t i = 0; i < count; ++i) {
      keys.push_back(absl::StrCat("bench:", label, ":", i));
      std::string v(record, '\0');
      for (size_t k = 0; k + 8 <= v.size(); k += 8) {
        const uint64_t r = rng();
        std::memcpy(&v[k], &r, 8);
      }
      values.push_back(std::move(v));
    }
    std::vector<absl::string_view> views(keys.begin(), keys.end());
    std::vector<RedisCluster::KeyValue> items;
    for (size_t i = 0; i < count; ++i) items.push_back({keys[i], values[i]});
    const std::string batch = absl::StrFormat("%s x %d", label, count);

    auto time_phase = [&](const std::string& name, const std::function<bool()>& once) {
      Phase p;
      p.name = absl::StrCat(name, " (", batch, ")");
      once();  // warm-up
      for (int r = 0; r < rounds; ++r) {
        const absl::Time t0 = absl::Now();
        p.ok &= once();
        p.seconds.push_back(absl::ToDoubleSeconds(absl::Now() - t0));
        p.bytes += static_cast<double>(record) * count;
      }
      phases.push_back(p);
    };

    time_phase("slimkv MultiSet", [&] {
      bool ok = true;
      for (const absl::Status& s : client->MultiSet(items)) ok &= s.ok();
      return ok;
    });
    time_phase("hiredis SET pipelined", [&] {
      for (size_t i = 0; i < count; ++i) {
        redisAppendCommand(raw.For(keys[i]), "SET %b %b", keys[i].data(), keys[i].size(), values[i].data(), values[i].size());
      }
      bool ok = true;
      // Replies come back per connection in order: read node after node.
      std::map<redisContext*, size_t> per;
      for (size_t i = 0; i < count; ++i) ++per[raw.For(keys[i])];
      for (auto& [c, n] : per) {
        for (size_t k = 0; k < n; ++k) {
          void* r = nullptr;
          if (redisGetReply(c, &r) != REDIS_OK) return false;
          ReplyPtr reply(static_cast<redisReply*>(r));
          ok &= reply->type == REDIS_REPLY_STATUS;
        }
      }
      return ok;
    });
    time_phase("hiredis SET one by one", [&] {
      bool ok = true;
      for (size_t i = 0; i < count; ++i) {
        ReplyPtr reply(static_cast<redisReply*>(redisCommand(raw.For(keys[i]), "SET %b %b", keys[i].data(),
                                                             keys[i].size(), values[i].data(), values[i].size())));
        ok &= reply != nullptr && reply->type == REDIS_REPLY_STATUS;
      }
      return ok;
    });
    time_phase("slimkv MultiGet", [&] {
      bool ok = true;
      auto got = client->MultiGet(views);
      for (size_t i = 0; i < count; ++i) {
        ok &= got[i].ok() && got[i]->has_value() && (*got[i])->size() == record;
        if (ok && i == 0) ok &= (*got[i])->bytes() == values[i];
      }
      return ok;
    });
    time_phase("hiredis GET pipelined", [&] {
      std::map<redisContext*, std::vector<size_t>> per;
      for (size_t i = 0; i < count; ++i) {
        redisContext* c = raw.For(keys[i]);
        redisAppendCommand(c, "GET %b", keys[i].data(), keys[i].size());
        per[c].push_back(i);
      }
      bool ok = true;
      for (auto& [c, indexes] : per) {
        for (size_t i : indexes) {
          void* r = nullptr;
          if (redisGetReply(c, &r) != REDIS_OK) return false;
          ReplyPtr reply(static_cast<redisReply*>(r));
          ok &= reply->type == REDIS_REPLY_STRING && reply->len == record;
          if (ok && i == 0) ok &= absl::string_view(reply->str, reply->len) == values[i];
        }
      }
      return ok;
    });
    time_phase("hiredis GET one by one", [&] {
      bool ok = true;
      for (size_t i = 0; i < count; ++i) {
        ReplyPtr reply(static_cast<redisReply*>(redisCommand(raw.For(keys[i]), "GET %b", keys[i].data(), keys[i].size())));
        ok &= reply != nullptr && reply->type == REDIS_REPLY_STRING && reply->len == record;
      }
      return ok;
    });
  }

  std::printf("%-44s %8s %10s %10s %14s %s\n", "phase", "GB/s", "p50 ms", "p99 ms", "vs pipelined", "check");
  for (size_t i = 0; i < phases.size(); ++i) {
    const Phase& p = phases[i];
    // Ratio: the slimkv rows against the pipelined hiredis row of the same op and size.
    std::string ratio = "";
    if (p.name.rfind("slimkv", 0) == 0) ratio = absl::StrFormat("%.2fx", GBps(p) / GBps(phases[i + 1]));
    std::printf("%-44s %8.2f %10.1f %10.1f %14s %s\n", p.name.c_str(), GBps(p), 1e3 * Percentile(p.seconds, 0.5),
                1e3 * Percentile(p.seconds, 0.99), ratio.c_str(), p.ok ? "ok" : "FAILED");
  }
  const RedisClusterStats s = client->stats();
  std::printf("client: %llu commands, %llu connects, %llu timeouts, %llu io errors, %.2f GB out, %.2f GB in\n",
              static_cast<unsigned long long>(s.commands), static_cast<unsigned long long>(s.connects),
              static_cast<unsigned long long>(s.timeouts), static_cast<unsigned long long>(s.io_errors),
              s.bytes_out / 1e9, s.bytes_in / 1e9);
  bool all_ok = true;
  for (const Phase& p : phases) all_ok &= p.ok;
  return all_ok ? 0 : 1;
}

}  // namespace
}  // namespace slimkv::remote

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  return slimkv::remote::Run();
}
