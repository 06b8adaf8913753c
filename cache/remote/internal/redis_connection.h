// One hiredis connection to one Redis node, non-blocking after connect, driven with poll so a
// caller can wait on several nodes at once under one deadline. This file is where socket and
// hiredis errors become absl::Status (the one conversion boundary).
// External synchronization required: a connection is used by one thread at a time (the
// cluster client's per-node pool hands each out to one caller).
//
// hiredis does the connect and parses replies (its redisReader). Commands are written by this
// class: RESP framing in small owned chunks, values sent with sendmsg straight from the caller's
// memory. hiredis 0.14's own output buffer would copy each value twice and, on every partial
// write of a non-blocking socket, memmove what is left (quadratic in a pipeline of 8 MiB pages).
// hiredis 0.14 (Debian 12) has no TLS; connections are plain TCP.
#pragma once

#include <hiredis/hiredis.h>

#include <cstdint>
#include <deque>
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

  // Queues one command (binary-safe arguments); nothing is sent yet. Returns the argument bytes.
  // REQUIRES: arguments of 4 KiB or more stay valid until the queue has been written (they are
  // sent from where they are, not copied).
  size_t Append(absl::Span<const absl::string_view> argv);
  bool WantsWrite() const { return !out_.empty(); }
  size_t pending_out_bytes() const { return out_bytes_; }

  // Non-blocking steps, for a caller that polls fd(): write what the socket takes; read one
  // chunk of what it has (`*more`: the chunk was full, so more may be waiting: take the replies
  // with TryGetReply, then read again); take the next complete reply if one is buffered
  // (nullptr when none yet). Error
  // replies (-ERR ...) are replies, not errors. Errors: UNAVAILABLE (reset, closed by the
  // server), INTERNAL (unparsable reply). After an error the connection is broken().
  [[nodiscard]] absl::Status WriteSome();
  [[nodiscard]] absl::Status ReadSome(bool* more);
  [[nodiscard]] absl::StatusOr<ReplyPtr> TryGetReply();
  int fd() const { return context_->fd; }

  // Blocking conveniences for one connection alone: send the whole queue; wait for the next
  // reply. Errors as above, plus UNAVAILABLE when `deadline` passes.
  [[nodiscard]] absl::Status Flush(absl::Time deadline);
  [[nodiscard]] absl::StatusOr<ReplyPtr> Read(absl::Time deadline);

  // Records that the caller's deadline passed with this connection mid-exchange.
  absl::Status FailTimeout();

  // True after any failed operation: the stream position is unknown, so the connection must be
  // dropped, never reused.
  bool broken() const { return broken_; }
  // Replies taken so far: a pooled connection that has answered before and now fails at once
  // was most likely closed by the server while idle (a restart, CLIENT KILL, a timeout).
  uint64_t replies_received() const { return replies_received_; }
  FailureKind last_failure() const { return last_failure_; }

 private:
  explicit RedisConnection(ContextPtr context) : context_(std::move(context)) {}
  absl::Status Fail(FailureKind kind, absl::Status status);
  // Waits until fd() is readable (or writable) or the deadline passes.
  absl::Status Wait(bool for_write, absl::Time deadline);

  struct Chunk {
    std::string owned;       // framing and small arguments
    absl::string_view view;  // a large argument in the caller's memory (when owned is empty)
    absl::string_view bytes() const { return owned.empty() ? view : absl::string_view(owned); }
  };

  ContextPtr context_;
  std::deque<Chunk> out_;
  size_t out_offset_ = 0;  // bytes of out_.front() already written
  size_t out_bytes_ = 0;   // bytes queued, not yet written
  bool broken_ = false;
  uint64_t replies_received_ = 0;
  FailureKind last_failure_ = FailureKind::kNone;
};

}  // namespace slimkv::remote::internal
