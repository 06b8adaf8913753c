// One Redis node as the cluster client sees it: its address, a pool of idle connections, and
// its health (consecutive failures, and until when it is skipped). Internally synchronized.
#pragma once

#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "cache/remote/internal/cluster_counters.h"
#include "cache/remote/internal/redis_connection.h"
#include "cache/remote/redis_cluster.h"

namespace slimkv::remote::internal {

class ClusterNode {
 public:
  // `options` and `counters` must outlive the node.
  ClusterNode(std::string host, int port, const RedisClusterOptions* options, ClusterCounters* counters);

  const std::string& host() const { return host_; }
  int port() const { return port_; }
  const std::string& address() const { return address_; }

  // An idle pooled connection, or a new one (connect bounded by the deadline).
  // Errors: UNAVAILABLE at once, without connecting, while the node is marked down
  // (`*fast_failed` set); UNAVAILABLE (connect failed: the node is marked down);
  // PERMISSION_DENIED (AUTH refused: the node is marked down too, so a wrong password does not
  // cost a connect per call).
  [[nodiscard]] absl::StatusOr<std::unique_ptr<RedisConnection>> Acquire(absl::Time deadline, bool* fast_failed);

  // Returns a connection to the pool; a broken one, or one over the idle cap, is closed.
  void Release(std::unique_ptr<RedisConnection> connection);

  // Records a failure: the node is skipped for the next backoff (doubling per consecutive
  // failure) and its idle connections are closed (they most likely share the fate).
  void MarkFailed();

  // Closes the idle connections without marking the node down (they were found stale).
  void DropIdle();

  bool IsDown(absl::Time now) const;

 private:
  // Constant after construction.
  const std::string host_;
  const int port_;
  const std::string address_;
  const RedisClusterOptions* const options_;
  ClusterCounters* const counters_;

  // std::mutex rather than absl::Mutex: TSan intercepts it (docs/testing.md).
  mutable std::mutex mu_;
  std::vector<std::unique_ptr<RedisConnection>> idle_ ABSL_GUARDED_BY(mu_);
  int consecutive_failures_ ABSL_GUARDED_BY(mu_) = 0;
  bool failed_since_last_connect_ ABSL_GUARDED_BY(mu_) = false;
  absl::Time down_until_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
};

}  // namespace slimkv::remote::internal
