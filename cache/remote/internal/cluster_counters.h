// The cluster client's counters, bumped from any thread (relaxed atomics: each is a tally, none
// orders anything). Internally synchronized. RedisCluster::stats() snapshots them.
#pragma once

#include <atomic>
#include <cstdint>

namespace slimkv::remote::internal {

struct ClusterCounters {
  using Counter = std::atomic<uint64_t>;
  static void Add(Counter& c, uint64_t n = 1) { c.fetch_add(n, std::memory_order_relaxed); }

  Counter commands{0};
  Counter moved_redirects{0};
  Counter ask_redirects{0};
  Counter slot_map_refreshes{0};
  Counter slot_map_refresh_failures{0};
  Counter connects{0};
  Counter reconnects{0};
  Counter connect_failures{0};
  Counter fast_failures{0};
  Counter timeouts{0};
  Counter io_errors{0};
  Counter stale_connection_retries{0};
  Counter protocol_errors{0};
  Counter server_errors{0};
  Counter auth_failures{0};
  Counter bytes_out{0};
  Counter bytes_in{0};
};

}  // namespace slimkv::remote::internal
