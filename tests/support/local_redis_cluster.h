// LocalCluster: a Redis Cluster (3 masters + 3 replicas) started through ops/redis-cluster.sh on
// free loopback ports in a fresh temp dir, stopped and removed when the object goes away; plus
// raw hiredis helpers to drive and inspect its nodes. For tests and benchmarks only.
// External synchronization required.
#pragma once

#include <sys/types.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include <hiredis/hiredis.h>

namespace slimkv::remote::testing {

struct ReplyFree {
  void operator()(redisReply* r) const { freeReplyObject(r); }
};
using ReplyPtr = std::unique_ptr<redisReply, ReplyFree>;

class LocalCluster {
 public:
  static constexpr int kNodes = 6;

  // Starts a cluster (bounded by the script: ~60 s at worst). `maxmemory` is redis.conf syntax.
  // First stops and removes clusters that earlier processes left behind when they crashed
  // (their dir's owner.pid names a process that no longer exists).
  // Errors: UNAVAILABLE (no free ports, the script failed: its log is in the message).
  [[nodiscard]] static absl::StatusOr<std::unique_ptr<LocalCluster>> Start(const std::string& maxmemory = "256mb");
  ~LocalCluster();  // stops every node and removes the dir

  int base_port() const { return base_port_; }
  std::vector<int> ports() const;
  std::string seed() const;  // "127.0.0.1:<base>"
  const std::string& dir() const { return dir_; }

  // `ops/redis-cluster.sh stop|start` on this cluster's dir. start restarts the same nodes.
  [[nodiscard]] absl::Status Stop();
  [[nodiscard]] absl::Status Restart();
  // The redis-server pid on `port` (from its pid file), or -1.
  pid_t Pid(int port) const;

  // One command on one node over a fresh connection (2 s timeouts).
  // Errors: UNAVAILABLE (connect/IO), INTERNAL (an error reply, its text in the message).
  [[nodiscard]] static absl::StatusOr<ReplyPtr> Command(int port, std::vector<std::string> argv);
  // The same, the reply as a string (status/string/integer replies).
  [[nodiscard]] static absl::StatusOr<std::string> CommandString(int port, std::vector<std::string> argv);

  // Ports of the masters that currently serve slots, from CLUSTER NODES as seen by `via_port`.
  [[nodiscard]] absl::StatusOr<std::vector<int>> Masters(int via_port) const;
  // The master port owning `slot`, and a node's id.
  [[nodiscard]] absl::StatusOr<int> MasterOfSlot(int slot, int via_port) const;
  [[nodiscard]] static absl::StatusOr<std::string> NodeId(int port);

 private:
  LocalCluster(std::string dir, int base_port) : dir_(std::move(dir)), base_port_(base_port) {}
  absl::Status Script(absl::string_view verb) const;

  const std::string dir_;
  const int base_port_;
};

}  // namespace slimkv::remote::testing
