// One blocking hiredis connection to one Redis node, every operation bounded by a deadline.
// This file is where hiredis's errors become absl::Status (the one conversion boundary).
// External synchronization required: a connection is used by one thread at a time (the
// cluster client's per-node pool hands each out to one caller).
//
// hiredis 0.14 (Debian 12) has no TLS; connections are plain TCP.
#ifndef SLIMKV_CACHE_REMOTE_INTERNAL_REDIS_CONNECTION_H_
#define SLIMKV_CACHE_REMOTE_INTERNAL_REDIS_CONNECTION_H_

#include <hiredis/hiredis.h>

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "absl/types/span.h"

namespace slimkv::remote::internal {

struct ContextDeleter {
  void operator()(redisContext* c) const { redisFree(c); }
};
struct ReplyDeleter {
  void operator()(redisReply* r) const { freeReplyObject(r); }
};
using ContextPtr = std::unique_ptr<redisContext, ContextDeleter>;
using ReplyPtr = std::unique_ptr<redisReply, ReplyDeleter>;

// Why an operation on a connection failed, for the client's error counters.
enum class FailureKind { kNone, kTimeout, kIo, kProtocol, kAuth };

class RedisConnection {
 public:
  // Connects to host:port within min(connect_timeout, deadline - now) and, when `password` is
  // non-empty, authenticates (`AUTH user password`, or `AUTH password` when `user` is empty).
  // Errors: UNAVAILABLE (refused, unreachable, timed out, or the deadline already passed),
  // PERMISSION_DENIED (AUTH refused). `failure` (may be null) gets the kind.
  [[nodiscard]] static absl::StatusOr<std::unique_ptr<RedisConnection>> Open(
      const std::string& host, int port, absl::Duration connect_timeout, absl::Time deadline,
      const std::string& user, const std::string& password, FailureKind* failure);

  // Queues one command (binary-safe arguments) in the output buffer; nothing is sent until
  // Flush. Returns the bytes the command adds to the wire.
  size_t Append(absl::Span<const absl::string_view> argv);

  // Sends everything queued. Errors: UNAVAILABLE (timeout at `deadline`, connection lost). After
  // an error the connection is broken().
  [[nodiscard]] absl::Status Flush(absl::Time deadline);

  // The next reply, in the order the commands were queued. Error replies (-ERR ...) are replies,
  // not errors. Errors: UNAVAILABLE (timeout at `deadline`, connection closed or reset),
  // INTERNAL (unparsable protocol). After an error the connection is broken().
  [[nodiscard]] absl::StatusOr<ReplyPtr> Read(absl::Time deadline);

  // True after any failed operation: the stream position is unknown, so the connection must be
  // dropped, never reused.
  bool broken() const { return broken_; }
  FailureKind last_failure() const { return last_failure_; }

 private:
  explicit RedisConnection(ContextPtr context) : context_(std::move(context)) {}
  // Bounds the next blocking socket call by the time left before `deadline`. Errors:
  // UNAVAILABLE when no time is left.
  absl::Status ArmSocketTimeout(absl::Time deadline);
  absl::Status Fail(FailureKind kind, absl::Status status);

  ContextPtr context_;
  bool broken_ = false;
  FailureKind last_failure_ = FailureKind::kNone;
  // The socket timeout last set, and when: re-armed once 1/20 of it has gone by, so a blocking
  // call never outlives the deadline by more than ~5% (a setsockopt per 16 KiB read would cost
  // more than the read).
  absl::Time armed_at_ = absl::InfinitePast();
  absl::Duration armed_for_ = absl::ZeroDuration();
  absl::Time armed_deadline_ = absl::InfinitePast();
};

}  // namespace slimkv::remote::internal

#endif  // SLIMKV_CACHE_REMOTE_INTERNAL_REDIS_CONNECTION_H_
