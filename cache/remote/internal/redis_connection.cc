#include "cache/remote/internal/redis_connection.h"

#include <sys/time.h>

#include <cerrno>
#include <vector>

#include "absl/strings/str_cat.h"

namespace slimkv::remote::internal {
namespace {

timeval SocketTimeval(absl::Duration d) {
  // SO_RCVTIMEO of zero means "wait forever": never arm less than 1 ms.
  d = std::max(d, absl::Milliseconds(1));
  timeval tv = absl::ToTimeval(d);
  return tv;
}

bool TimedOut(int saved_errno) {
  return saved_errno == EAGAIN || saved_errno == EWOULDBLOCK || saved_errno == ETIMEDOUT ||
         saved_errno == EINPROGRESS;
}

}  // namespace

absl::StatusOr<std::unique_ptr<RedisConnection>> RedisConnection::Open(
    const std::string& host, int port, absl::Duration connect_timeout, absl::Time deadline,
    const std::string& user, const std::string& password, FailureKind* failure) {
  FailureKind ignored;
  if (failure == nullptr) failure = &ignored;
  *failure = FailureKind::kNone;
  const std::string where = absl::StrCat(host, ":", port);
  const absl::Duration left = deadline - absl::Now();
  if (left <= absl::ZeroDuration()) {
    *failure = FailureKind::kTimeout;
    return absl::UnavailableError(absl::StrCat("redis ", where, ": deadline passed before connect"));
  }
  errno = 0;
  ContextPtr context(redisConnectWithTimeout(host.c_str(), port, SocketTimeval(std::min(left, connect_timeout))));
  if (context == nullptr) {
    *failure = FailureKind::kIo;
    return absl::UnavailableError(absl::StrCat("redis ", where, ": cannot allocate a context"));
  }
  if (context->err != 0) {
    *failure = TimedOut(errno) ? FailureKind::kTimeout : FailureKind::kIo;
    return absl::UnavailableError(absl::StrCat("redis ", where, ": connect: ", context->errstr));
  }
  std::unique_ptr<RedisConnection> connection(new RedisConnection(std::move(context)));
  if (!password.empty()) {
    std::vector<absl::string_view> argv = {"AUTH"};
    if (!user.empty()) argv.push_back(user);
    argv.push_back(password);
    connection->Append(argv);
    absl::Status sent = connection->Flush(deadline);
    if (!sent.ok()) {
      *failure = connection->last_failure();
      return sent;
    }
    absl::StatusOr<ReplyPtr> reply = connection->Read(deadline);
    if (!reply.ok()) {
      *failure = connection->last_failure();
      return reply.status();
    }
    if ((*reply)->type == REDIS_REPLY_ERROR) {
      *failure = FailureKind::kAuth;
      // The server's message names the failure (WRONGPASS ...), never the password.
      return absl::PermissionDeniedError(absl::StrCat("redis ", where, ": AUTH refused: ",
                                                      absl::string_view((*reply)->str, (*reply)->len)));
    }
  }
  return connection;
}

size_t RedisConnection::Append(absl::Span<const absl::string_view> argv) {
  std::vector<const char*> args;
  std::vector<size_t> lens;
  args.reserve(argv.size());
  lens.reserve(argv.size());
  size_t bytes = 0;
  for (absl::string_view a : argv) {
    args.push_back(a.data());
    lens.push_back(a.size());
    bytes += a.size();
  }
  if (redisAppendCommandArgv(context_.get(), static_cast<int>(args.size()), args.data(), lens.data()) !=
      REDIS_OK) {
    // Only an allocation failure gets here; the next Flush reports the broken connection.
    (void)Fail(FailureKind::kIo, absl::ResourceExhaustedError("redis: cannot queue a command"));
  }
  return bytes;
}

absl::Status RedisConnection::Fail(FailureKind kind, absl::Status status) {
  broken_ = true;
  last_failure_ = kind;
  return status;
}

absl::Status RedisConnection::ArmSocketTimeout(absl::Time deadline) {
  const absl::Time now = absl::Now();
  const absl::Duration left = deadline - now;
  if (left <= absl::ZeroDuration()) {
    return Fail(FailureKind::kTimeout, absl::UnavailableError("redis: timed out"));
  }
  // Same deadline: the armed timeout is >= the time left (never an early timeout) and exceeds it
  // by at most the time gone since arming (re-armed once that reaches 1/20).
  if (deadline == armed_deadline_ && now - armed_at_ < armed_for_ / 20) return absl::OkStatus();
  if (redisSetTimeout(context_.get(), SocketTimeval(left)) != REDIS_OK) {
    return Fail(FailureKind::kIo, absl::UnavailableError("redis: cannot set the socket timeout"));
  }
  armed_at_ = now;
  armed_for_ = left;
  armed_deadline_ = deadline;
  return absl::OkStatus();
}

absl::Status RedisConnection::Flush(absl::Time deadline) {
  if (broken_) return absl::UnavailableError("redis: connection broken");
  int done = 0;
  while (!done) {
    if (absl::Status armed = ArmSocketTimeout(deadline); !armed.ok()) return armed;
    errno = 0;
    if (redisBufferWrite(context_.get(), &done) != REDIS_OK) {
      const int saved = errno;
      if (TimedOut(saved)) return Fail(FailureKind::kTimeout, absl::UnavailableError("redis: write timed out"));
      return Fail(FailureKind::kIo, absl::UnavailableError(absl::StrCat("redis: write: ", context_->errstr)));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<ReplyPtr> RedisConnection::Read(absl::Time deadline) {
  if (broken_) return absl::UnavailableError("redis: connection broken");
  for (;;) {
    void* raw = nullptr;
    if (redisGetReplyFromReader(context_.get(), &raw) != REDIS_OK) {
      return Fail(FailureKind::kProtocol,
                  absl::InternalError(absl::StrCat("redis: protocol: ", context_->errstr)));
    }
    if (raw != nullptr) return ReplyPtr(static_cast<redisReply*>(raw));
    if (absl::Status armed = ArmSocketTimeout(deadline); !armed.ok()) return armed;
    errno = 0;
    if (redisBufferRead(context_.get()) != REDIS_OK) {
      const int saved = errno;
      if (context_->err == REDIS_ERR_EOF) {
        return Fail(FailureKind::kIo, absl::UnavailableError("redis: connection closed by the server"));
      }
      if (TimedOut(saved)) return Fail(FailureKind::kTimeout, absl::UnavailableError("redis: read timed out"));
      return Fail(FailureKind::kIo, absl::UnavailableError(absl::StrCat("redis: read: ", context_->errstr)));
    }
  }
}

}  // namespace slimkv::remote::internal
