#include "cache/remote/internal/redis_connection.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <vector>

#include "absl/strings/str_cat.h"

namespace slimkv::remote::internal {
namespace {

constexpr size_t kInlineArgument = 4096;  // smaller arguments are copied into the framing
// hiredis 0.14's reader memmoves its unread bytes after each reply: feeding it more than one
// chunk ahead of the parser would make a pipeline of large replies quadratic. 64 KiB keeps that
// memmove small and the read calls few.
constexpr size_t kReadChunk = 64 << 10;

timeval ConnectTimeval(absl::Duration d) {
  // A zero timeval would mean "no timeout" to hiredis: never pass less than 1 ms.
  return absl::ToTimeval(std::max(d, absl::Milliseconds(1)));
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
  ContextPtr context(redisConnectWithTimeout(host.c_str(), port, ConnectTimeval(std::min(left, connect_timeout))));
  if (context == nullptr) {
    *failure = FailureKind::kIo;
    return absl::UnavailableError(absl::StrCat("redis ", where, ": cannot allocate a context"));
  }
  if (context->err != 0) {
    *failure = (errno == ETIMEDOUT || errno == EINPROGRESS) ? FailureKind::kTimeout : FailureKind::kIo;
    return absl::UnavailableError(absl::StrCat("redis ", where, ": connect: ", context->errstr));
  }
  // From here on the socket is non-blocking and every wait is a poll under a deadline.
  const int flags = fcntl(context->fd, F_GETFL);
  if (flags < 0 || fcntl(context->fd, F_SETFL, flags | O_NONBLOCK) < 0) {
    *failure = FailureKind::kIo;
    return absl::UnavailableError(absl::StrCat("redis ", where, ": cannot make the socket non-blocking"));
  }
  context->flags &= ~REDIS_BLOCK;
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
  size_t bytes = 0;
  auto push = [this](Chunk chunk) {
    out_bytes_ += chunk.bytes().size();
    out_.push_back(std::move(chunk));
  };
  std::string framing = absl::StrCat("*", argv.size(), "\r\n");
  for (absl::string_view a : argv) {
    bytes += a.size();
    absl::StrAppend(&framing, "$", a.size(), "\r\n");
    if (a.size() < kInlineArgument) {
      absl::StrAppend(&framing, a, "\r\n");
    } else {
      push(Chunk{std::move(framing), {}});
      push(Chunk{{}, a});
      framing = "\r\n";
    }
  }
  push(Chunk{std::move(framing), {}});
  return bytes;
}

absl::Status RedisConnection::Fail(FailureKind kind, absl::Status status) {
  broken_ = true;
  last_failure_ = kind;
  return status;
}

absl::Status RedisConnection::FailTimeout() {
  return Fail(FailureKind::kTimeout, absl::UnavailableError("redis: timed out"));
}

absl::Status RedisConnection::WriteSome() {
  if (broken_) return absl::UnavailableError("redis: connection broken");
  while (!out_.empty()) {
    iovec iov[64];
    int n = 0;
    for (auto it = out_.begin(); it != out_.end() && n < 64; ++it, ++n) {
      absl::string_view b = it->bytes();
      if (n == 0) b.remove_prefix(out_offset_);
      iov[n].iov_base = const_cast<char*>(b.data());
      iov[n].iov_len = b.size();
    }
    // sendmsg with MSG_NOSIGNAL: a reset connection is an error here, never a SIGPIPE.
    msghdr message{};
    message.msg_iov = iov;
    message.msg_iovlen = static_cast<size_t>(n);
    const ssize_t written = sendmsg(context_->fd, &message, MSG_NOSIGNAL);
    if (written < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK) return absl::OkStatus();
      if (errno == EINTR) continue;
      return Fail(FailureKind::kIo, absl::UnavailableError(absl::StrCat("redis: write: ", std::strerror(errno))));
    }
    size_t left = static_cast<size_t>(written);
    out_bytes_ -= left;
    while (left > 0) {
      const size_t front = out_.front().bytes().size() - out_offset_;
      if (left < front) {
        out_offset_ += left;
        left = 0;
      } else {
        left -= front;
        out_.pop_front();
        out_offset_ = 0;
      }
    }
    // Zero-length chunks (empty arguments never make one, but be safe) are dropped here.
    while (!out_.empty() && out_.front().bytes().size() == out_offset_) {
      out_.pop_front();
      out_offset_ = 0;
    }
  }
  return absl::OkStatus();
}

absl::Status RedisConnection::ReadSome(bool* more) {
  *more = false;
  if (broken_) return absl::UnavailableError("redis: connection broken");
  thread_local std::vector<char> buffer(kReadChunk);
  for (;;) {
    const ssize_t got = read(context_->fd, buffer.data(), buffer.size());
    if (got > 0) {
      if (redisReaderFeed(context_->reader, buffer.data(), static_cast<size_t>(got)) != REDIS_OK) {
        return Fail(FailureKind::kProtocol, absl::InternalError("redis: reader refused input"));
      }
      *more = static_cast<size_t>(got) == buffer.size();
      return absl::OkStatus();
    }
    if (got == 0) return Fail(FailureKind::kIo, absl::UnavailableError("redis: connection closed by the server"));
    if (errno == EAGAIN || errno == EWOULDBLOCK) return absl::OkStatus();
    if (errno == EINTR) continue;
    return Fail(FailureKind::kIo, absl::UnavailableError(absl::StrCat("redis: read: ", std::strerror(errno))));
  }
}

absl::StatusOr<ReplyPtr> RedisConnection::TryGetReply() {
  if (broken_) return absl::UnavailableError("redis: connection broken");
  void* raw = nullptr;
  if (redisReaderGetReply(context_->reader, &raw) != REDIS_OK) {
    return Fail(FailureKind::kProtocol,
                absl::InternalError(absl::StrCat("redis: protocol: ", context_->reader->errstr)));
  }
  if (raw != nullptr) ++replies_received_;
  return ReplyPtr(static_cast<redisReply*>(raw));
}

absl::Status RedisConnection::Wait(bool for_write, absl::Time deadline) {
  for (;;) {
    const absl::Duration left = deadline - absl::Now();
    if (left <= absl::ZeroDuration()) return FailTimeout();
    pollfd p{fd(), static_cast<short>(for_write ? POLLOUT : POLLIN), 0};
    const timespec ts = absl::ToTimespec(left);
    const int rc = ppoll(&p, 1, &ts, nullptr);
    if (rc > 0) return absl::OkStatus();
    if (rc < 0 && errno != EINTR) {
      return Fail(FailureKind::kIo, absl::UnavailableError(absl::StrCat("redis: poll: ", std::strerror(errno))));
    }
  }
}

absl::Status RedisConnection::Flush(absl::Time deadline) {
  for (;;) {
    if (absl::Status s = WriteSome(); !s.ok()) return s;
    if (!WantsWrite()) return absl::OkStatus();
    if (absl::Status s = Wait(/*for_write=*/true, deadline); !s.ok()) return s;
  }
}

absl::StatusOr<ReplyPtr> RedisConnection::Read(absl::Time deadline) {
  for (;;) {
    absl::StatusOr<ReplyPtr> reply = TryGetReply();
    if (!reply.ok() || *reply != nullptr) return reply;
    bool more = false;
    if (absl::Status s = ReadSome(&more); !s.ok()) return s;
    if (more) continue;
    reply = TryGetReply();
    if (!reply.ok() || *reply != nullptr) return reply;
    if (absl::Status s = Wait(/*for_write=*/false, deadline); !s.ok()) return s;
  }
}

}  // namespace slimkv::remote::internal
