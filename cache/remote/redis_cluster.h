// RedisCluster: a client of one Redis Cluster (Debian's redis-server 7.0, hiredis 0.14) for
// single-key, binary-safe GET / SET / EXISTS / DEL, one at a time or pipelined in batches.
// Internally synchronized: one instance is shared by every RPC thread.
//
// Routing: a key goes to the master that owns its hash slot (CRC16-XMODEM mod 16384, `{tag}`
// honoured). The slot map comes from `CLUSTER SLOTS`, asked of any reachable node (seeds first);
// it is loaded on first use, refreshed after a `MOVED`, after a node failure, and every
// `slot_map_refresh_interval`, by the calling thread, at most one refresh at a time and at most
// one per `min_refresh_gap`. `MOVED` updates the slot and retries there; `ASK` sends `ASKING`
// then retries once on the named node; at most `max_redirects` rounds per call.
//
// Time: every call (a single command or a whole batch, redirects and slot-map refreshes
// included) runs under one deadline, now + `command_timeout`; the connect to a node is bounded
// by min(`connect_timeout`, time left), and every wait after it is a poll on non-blocking
// sockets until that deadline, so no call outlives it by more than scheduling noise. A node that
// failed (refused, reset, timed out) is marked down for an exponential backoff
// (`backoff_initial` doubling to `backoff_max`); a call routed to a down node fails at once with
// UNAVAILABLE rather than waiting. Callers treat a failure as a miss.
//
// A pooled connection the server closed while it sat idle (restart, CLIENT KILL) is detected
// on use; the node's idle connections are dropped and its keys retried once on a new
// connection, within the same deadline (GET, SET, EXISTS and DEL are idempotent).
//
// Batches (MultiGet, MultiExists, MultiSet) group keys by node and pipeline each node's commands
// on one connection; all nodes are written and read at once under one poll, so nodes work in
// parallel and a slow or dead node fails only its own keys. Values are sent from the caller's
// memory (no copy); a GET's value is handed back inside the hiredis reply that
// carried it (no copy beyond hiredis's own).
//
// Security: AUTH with ACL user + password (Redis 6+), or the default user's password. No TLS:
// hiredis 0.14 (Debian 12's libhiredis-dev) has no TLS support (libhiredis-ssl arrived in
// hiredis 1.0), so keep the cluster on a trusted network or loopback.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "absl/types/span.h"

namespace slimkv::remote {

struct RedisClusterOptions {
  // "host:port" of one or more cluster nodes; any one reachable node is enough to learn the
  // rest. Required.
  std::vector<std::string> seeds;
  // ACL user and password (AUTH user password); with an empty user, AUTH password (the default
  // user). Both empty: no AUTH.
  std::string user;
  std::string password;
  // Bound of one TCP connect. Default 200 ms: loopback or a LAN answers in well under that.
  absl::Duration connect_timeout = absl::Milliseconds(200);
  // Bound of one call, whole batch included. Default 1 s; size it for the batch (a 32 × 8 MiB
  // MultiGet at ~1 GB/s needs ~0.3 s).
  absl::Duration command_timeout = absl::Seconds(1);
  // Connections kept open per node when idle (more are opened under load, then closed).
  int max_idle_connections_per_node = 8;
  // A failed node is skipped for backoff_initial, doubling per consecutive failure up to
  // backoff_max. Short keeps recovery fast; long keeps a dead node from costing connects.
  absl::Duration backoff_initial = absl::Milliseconds(50);
  absl::Duration backoff_max = absl::Seconds(2);
  // Periodic slot-map refresh (besides the ones MOVED and failures trigger).
  absl::Duration slot_map_refresh_interval = absl::Seconds(10);
  // At most one slot-map refresh per this gap, whatever triggers it.
  absl::Duration min_refresh_gap = absl::Milliseconds(100);
  // Redirect rounds (MOVED / ASK) per call before giving up with UNAVAILABLE.
  int max_redirects = 5;
};

// Counters since Create, each monotonic. Read with RedisCluster::stats().
struct RedisClusterStats {
  uint64_t commands = 0;            // commands sent (ASKING and refreshes not counted)
  uint64_t moved_redirects = 0;     // MOVED replies followed
  uint64_t ask_redirects = 0;       // ASK replies followed
  uint64_t slot_map_refreshes = 0;  // successful CLUSTER SLOTS loads
  uint64_t slot_map_refresh_failures = 0;  // refresh attempts that reached no node
  uint64_t connects = 0;            // connections opened
  uint64_t reconnects = 0;          // connections opened to a node that had failed before
  uint64_t connect_failures = 0;    // connects refused, unreachable or timed out
  uint64_t fast_failures = 0;       // keys failed at once because their node was marked down
  uint64_t timeouts = 0;            // operations that hit their deadline
  uint64_t io_errors = 0;           // connections lost (reset, closed) mid-call
  uint64_t stale_connection_retries = 0;  // pooled connections found closed, retried on a new one
  uint64_t protocol_errors = 0;     // unparsable or unexpected replies
  uint64_t server_errors = 0;       // error replies other than redirects (OOM, CLUSTERDOWN, ...)
  uint64_t auth_failures = 0;       // AUTH refused
  uint64_t bytes_out = 0;           // command argument bytes sent (keys + values)
  uint64_t bytes_in = 0;            // value bytes received (GET replies)
};

class RedisCluster {
 public:
  // A GET result: the value's bytes, held without a copy in the reply that carried them.
  // Immutable; cheap to move.
  class Value {
   public:
    absl::string_view bytes() const { return bytes_; }
    size_t size() const { return bytes_.size(); }
    std::string ToString() const { return std::string(bytes_); }

   private:
    friend class RedisCluster;
    std::shared_ptr<void> owner_;
    absl::string_view bytes_;
  };

  struct KeyValue {
    absl::string_view key;
    absl::string_view value;
  };

  // Checks the options; connects to nothing (the slot map loads on first use, so a cluster that
  // is down at start-up is usable as soon as it comes up).
  // Errors: INVALID_ARGUMENT (no seeds, a seed not "host:port", a non-positive timeout).
  [[nodiscard]] static absl::StatusOr<std::unique_ptr<RedisCluster>> Create(RedisClusterOptions options);

  ~RedisCluster();
  RedisCluster(const RedisCluster&) = delete;
  RedisCluster& operator=(const RedisCluster&) = delete;

  // Per-key errors, common to every call below:
  //   UNAVAILABLE: no slot map yet, the owning node is down / refused / reset / timed out, the
  //     cluster answered CLUSTERDOWN / TRYAGAIN / LOADING / MASTERDOWN, or redirects exceeded
  //     max_redirects. Retry later; count as a miss.
  //   RESOURCE_EXHAUSTED: the node refused a write (-OOM: maxmemory with a noeviction policy, or
  //     a value larger than maxmemory).
  //   PERMISSION_DENIED: AUTH refused, or the ACL user may not run the command (-NOPERM).
  //   INTERNAL: any other error reply, or a reply of an unexpected type.

  // GET key. Success: the value, or nullopt when the key does not exist (never written, deleted,
  // expired or evicted).
  [[nodiscard]] absl::StatusOr<std::optional<Value>> Get(absl::string_view key);
  // SET key value, binary-safe (a value may hold any bytes, 0 bytes included; Redis caps a value
  // at proto-max-bulk-len, 512 MiB by default). One SET: a reader sees the old or the new value.
  [[nodiscard]] absl::Status Set(absl::string_view key, absl::string_view value);
  // EXISTS key. Success: whether the key exists.
  [[nodiscard]] absl::StatusOr<bool> Exists(absl::string_view key);
  // DEL key. Success: whether a key was deleted.
  [[nodiscard]] absl::StatusOr<bool> Del(absl::string_view key);

  // Pipelined batches: result i answers keys[i] (or items[i]), as the single call would.
  std::vector<absl::StatusOr<std::optional<Value>>> MultiGet(absl::Span<const absl::string_view> keys);
  std::vector<absl::StatusOr<bool>> MultiExists(absl::Span<const absl::string_view> keys);
  std::vector<absl::Status> MultiSet(absl::Span<const KeyValue> items);

  // A snapshot of the counters.
  RedisClusterStats stats() const;

 private:
  class Impl;
  explicit RedisCluster(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace slimkv::remote
