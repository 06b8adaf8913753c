#include "cache/remote/internal/cluster_node.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"

namespace slimkv::remote::internal {

ClusterNode::ClusterNode(std::string host, int port, const RedisClusterOptions* options, ClusterCounters* counters)
    : host_(std::move(host)),
      port_(port),
      address_(absl::StrCat(host_, ":", port_)),
      options_(options),
      counters_(counters) {}

bool ClusterNode::IsDown(absl::Time now) const {
  std::lock_guard<std::mutex> lock(mu_);
  return now < down_until_;
}

absl::StatusOr<std::unique_ptr<RedisConnection>> ClusterNode::Acquire(absl::Time deadline, bool* fast_failed) {
  *fast_failed = false;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (absl::Now() < down_until_) {
      *fast_failed = true;
      return absl::UnavailableError(absl::StrCat("redis ", address_, ": marked down after ",
                                                 consecutive_failures_, " failure(s)"));
    }
    if (!idle_.empty()) {
      std::unique_ptr<RedisConnection> connection = std::move(idle_.back());
      idle_.pop_back();
      return connection;
    }
  }
  FailureKind failure = FailureKind::kNone;
  absl::StatusOr<std::unique_ptr<RedisConnection>> connection =
      RedisConnection::Open(host_, port_, options_->connect_timeout, deadline, options_->user,
                            options_->password, &failure);
  if (!connection.ok()) {
    ClusterCounters::Add(failure == FailureKind::kAuth ? counters_->auth_failures : counters_->connect_failures);
    MarkFailed();
    return connection.status();
  }
  ClusterCounters::Add(counters_->connects);
  std::lock_guard<std::mutex> lock(mu_);
  if (failed_since_last_connect_) ClusterCounters::Add(counters_->reconnects);
  failed_since_last_connect_ = false;
  consecutive_failures_ = 0;
  down_until_ = absl::InfinitePast();
  return connection;
}

void ClusterNode::Release(std::unique_ptr<RedisConnection> connection) {
  if (connection == nullptr || connection->broken()) return;
  std::lock_guard<std::mutex> lock(mu_);
  if (static_cast<int>(idle_.size()) < options_->max_idle_connections_per_node) idle_.push_back(std::move(connection));
}

void ClusterNode::MarkFailed() {
  std::vector<std::unique_ptr<RedisConnection>> closing;
  std::lock_guard<std::mutex> lock(mu_);
  consecutive_failures_ = std::min(consecutive_failures_ + 1, 30);
  failed_since_last_connect_ = true;
  absl::Duration backoff = options_->backoff_initial;
  for (int i = 1; i < consecutive_failures_ && backoff < options_->backoff_max; ++i) backoff *= 2;
  down_until_ = absl::Now() + std::min(backoff, options_->backoff_max);
  closing.swap(idle_);
}

}  // namespace slimkv::remote::internal

namespace slimkv::remote::internal {

void ClusterNode::DropIdle() {
  std::vector<std::unique_ptr<RedisConnection>> closing;
  std::lock_guard<std::mutex> lock(mu_);
  closing.swap(idle_);
}

}  // namespace slimkv::remote::internal
