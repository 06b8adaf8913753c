#include "cache/remote/redis_cluster.h"

#include <poll.h>

#include <cerrno>
#include <cstring>

#include <chrono>
#include <condition_variable>
#include <mutex>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "cache/remote/internal/cluster_counters.h"
#include "cache/remote/internal/cluster_node.h"
#include "cache/remote/internal/hash_slot.h"
#include "cache/remote/internal/redis_connection.h"

namespace slimkv::remote {
namespace {

using internal::ClusterCounters;
using internal::ClusterNode;
using internal::FailureKind;
using internal::ReplyPtr;

bool ParseHostPort(absl::string_view address, std::string* host, int* port) {
  const size_t colon = address.rfind(':');
  if (colon == absl::string_view::npos || colon == 0) return false;
  int p = 0;
  if (!absl::SimpleAtoi(address.substr(colon + 1), &p) || p <= 0 || p > 65535) return false;
  *host = std::string(address.substr(0, colon));
  *port = p;
  return true;
}

// "MOVED 3999 127.0.0.1:6381" / "ASK 3999 127.0.0.1:6381".
struct Redirect {
  bool ask = false;
  int slot = -1;
  std::string address;
};

bool ParseRedirect(absl::string_view error, Redirect* redirect) {
  std::vector<absl::string_view> parts = absl::StrSplit(error, ' ', absl::SkipEmpty());
  if (parts.size() != 3 || (parts[0] != "MOVED" && parts[0] != "ASK")) return false;
  redirect->ask = parts[0] == "ASK";
  if (!absl::SimpleAtoi(parts[1], &redirect->slot) || redirect->slot < 0 ||
      redirect->slot >= internal::kClusterSlots) {
    return false;
  }
  redirect->address = std::string(parts[2]);
  return true;
}

// The status an error reply (other than a redirect) maps to.
absl::Status ErrorReplyStatus(absl::string_view error) {
  const std::string message = absl::StrCat("redis: ", error);
  for (absl::string_view retry : {"CLUSTERDOWN", "TRYAGAIN", "LOADING", "MASTERDOWN", "BUSY"}) {
    if (absl::StartsWith(error, retry)) return absl::UnavailableError(message);
  }
  if (absl::StartsWith(error, "OOM")) return absl::ResourceExhaustedError(message);
  for (absl::string_view denied : {"NOAUTH", "WRONGPASS", "NOPERM"}) {
    if (absl::StartsWith(error, denied)) return absl::PermissionDeniedError(message);
  }
  return absl::InternalError(message);
}

}  // namespace

class RedisCluster::Impl {
 public:
  explicit Impl(RedisClusterOptions options) : options_(std::move(options)) {
    std::unique_lock<std::mutex> lock(map_mu_);
    for (const std::string& seed : options_.seeds) seeds_.push_back(NodeLocked(seed));
  }

  // One single-key command: argv[1] is the key.
  struct Command {
    std::vector<absl::string_view> argv;
    int slot;
  };

  std::vector<absl::StatusOr<ReplyPtr>> Run(const std::vector<Command>& commands);
  RedisClusterStats Stats() const;
  ClusterCounters& counters() { return counters_; }

 private:
  struct Item {
    size_t index;
    bool asking;
  };
  struct Group {
    std::shared_ptr<ClusterNode> node;
    std::vector<Item> items;
    std::unique_ptr<internal::RedisConnection> connection;
    size_t next_append = 0;  // items queued on the connection
    size_t next_reply = 0;   // items answered
    bool asking_acknowledged = false;  // the +OK of items[next_reply]'s ASKING was read
    bool reused = false;  // the connection came from the pool, having answered before
    bool done = false;
  };
  static constexpr size_t kMaxQueuedBytes = 16 << 20;

  // Files one command's reply: a result, or (MOVED / ASK) a retry in the next round.
  void HandleReply(size_t index, ReplyPtr reply, std::vector<absl::StatusOr<ReplyPtr>>& results,
                   std::vector<size_t>& pending, std::vector<std::shared_ptr<ClusterNode>>& ask, bool& refresh);

  std::shared_ptr<ClusterNode> NodeLocked(absl::string_view address) ABSL_EXCLUSIVE_LOCKS_REQUIRED(map_mu_);
  std::shared_ptr<ClusterNode> Node(absl::string_view address) ABSL_LOCKS_EXCLUDED(map_mu_);
  // Loads the slot map when there is none, when `force`, or when the periodic interval passed;
  // at most one thread at a time, at most once per min_refresh_gap.
  void MaybeRefresh(absl::Time deadline, bool force) ABSL_LOCKS_EXCLUDED(map_mu_);
  absl::Status LoadSlotMap(ClusterNode& node, absl::Time deadline) ABSL_LOCKS_EXCLUDED(map_mu_);
  // Counts a failed connection operation and marks the node down (it refused, reset, sent
  // garbage, or had not answered by the deadline).
  void CountFailure(FailureKind kind, ClusterNode& node);

  // Constant after construction.
  const RedisClusterOptions options_;

  ClusterCounters counters_;

  // std::mutex rather than absl::Mutex: TSan intercepts it (docs/testing.md).
  mutable std::mutex map_mu_;
  std::condition_variable refreshed_;  // signalled when a slot-map load ends
  // Every node ever named (seeds, slot maps, redirects), by "host:port". Never shrinks: a
  // cluster has a handful of nodes.
  absl::flat_hash_map<std::string, std::shared_ptr<ClusterNode>> nodes_ ABSL_GUARDED_BY(map_mu_);
  std::vector<std::shared_ptr<ClusterNode>> seeds_ ABSL_GUARDED_BY(map_mu_);
  // Owner (master) of each slot; empty until the first successful load, nullptr for a slot no
  // node serves.
  std::vector<std::shared_ptr<ClusterNode>> slots_ ABSL_GUARDED_BY(map_mu_);
  absl::Time last_load_ ABSL_GUARDED_BY(map_mu_) = absl::InfinitePast();
  // Why the last refresh failed (OK when it succeeded): what a call gets while there is no map.
  absl::Status last_refresh_error_ ABSL_GUARDED_BY(map_mu_) =
      absl::UnavailableError("redis: no slot map yet (no node reachable)");
  absl::Time last_attempt_ ABSL_GUARDED_BY(map_mu_) = absl::InfinitePast();
  size_t next_candidate_ ABSL_GUARDED_BY(map_mu_) = 0;

  // A slot-map load is in flight (by one thread; the others go on with the map they have, or,
  // with none, wait for it until their deadline).
  bool refreshing_ ABSL_GUARDED_BY(map_mu_) = false;
};

std::shared_ptr<ClusterNode> RedisCluster::Impl::NodeLocked(absl::string_view address) {
  auto it = nodes_.find(address);
  if (it != nodes_.end()) return it->second;
  std::string host;
  int port = 0;
  if (!ParseHostPort(address, &host, &port)) return nullptr;
  auto node = std::make_shared<ClusterNode>(host, port, &options_, &counters_);
  nodes_.emplace(std::string(address), node);
  return node;
}

std::shared_ptr<ClusterNode> RedisCluster::Impl::Node(absl::string_view address) {
  std::unique_lock<std::mutex> lock(map_mu_);
  return NodeLocked(address);
}

void RedisCluster::Impl::CountFailure(FailureKind kind, ClusterNode& node) {
  switch (kind) {
    case FailureKind::kTimeout: ClusterCounters::Add(counters_.timeouts); break;
    case FailureKind::kProtocol: ClusterCounters::Add(counters_.protocol_errors); break;
    case FailureKind::kAuth: ClusterCounters::Add(counters_.auth_failures); break;
    default: ClusterCounters::Add(counters_.io_errors); break;
  }
  node.MarkFailed();
}

absl::Status RedisCluster::Impl::LoadSlotMap(ClusterNode& node, absl::Time deadline) {
  bool fast_failed = false;
  absl::StatusOr<std::unique_ptr<internal::RedisConnection>> connection = node.Acquire(deadline, &fast_failed);
  if (!connection.ok()) return connection.status();
  const absl::string_view argv[] = {"CLUSTER", "SLOTS"};
  (*connection)->Append(argv);
  absl::StatusOr<ReplyPtr> reply = absl::UnavailableError("unsent");
  if (absl::Status sent = (*connection)->Flush(deadline); !sent.ok()) {
    reply = sent;
  } else {
    reply = (*connection)->Read(deadline);
  }
  if (!reply.ok()) {
    CountFailure((*connection)->last_failure(), node);
    return reply.status();
  }
  node.Release(std::move(*connection));
  const redisReply* r = reply->get();
  if (r->type == REDIS_REPLY_ERROR) return ErrorReplyStatus(absl::string_view(r->str, r->len));
  if (r->type != REDIS_REPLY_ARRAY) {
    ClusterCounters::Add(counters_.protocol_errors);
    return absl::InternalError("redis: CLUSTER SLOTS: not an array");
  }
  // Parse first, then swap under the lock.
  struct Range {
    long long first, last;
    std::string address;
  };
  std::vector<Range> ranges;
  for (size_t i = 0; i < r->elements; ++i) {
    const redisReply* e = r->element[i];
    if (e->type != REDIS_REPLY_ARRAY || e->elements < 3 || e->element[0]->type != REDIS_REPLY_INTEGER ||
        e->element[1]->type != REDIS_REPLY_INTEGER || e->element[2]->type != REDIS_REPLY_ARRAY ||
        e->element[2]->elements < 2 || e->element[2]->element[0]->type != REDIS_REPLY_STRING ||
        e->element[2]->element[1]->type != REDIS_REPLY_INTEGER) {
      ClusterCounters::Add(counters_.protocol_errors);
      return absl::InternalError("redis: CLUSTER SLOTS: unexpected entry");
    }
    const redisReply* master = e->element[2];
    std::string host(master->element[0]->str, master->element[0]->len);
    // An empty or "?" host means "the address you reached me on".
    if (host.empty() || host == "?") host = node.host();
    const long long first = e->element[0]->integer, last = e->element[1]->integer;
    if (first < 0 || last >= internal::kClusterSlots || first > last) {
      ClusterCounters::Add(counters_.protocol_errors);
      return absl::InternalError("redis: CLUSTER SLOTS: slot range out of bounds");
    }
    ranges.push_back({first, last, absl::StrCat(host, ":", master->element[1]->integer)});
  }
  std::unique_lock<std::mutex> lock(map_mu_);
  std::vector<std::shared_ptr<ClusterNode>> slots(internal::kClusterSlots);
  for (const Range& range : ranges) {
    std::shared_ptr<ClusterNode> owner = NodeLocked(range.address);
    for (long long s = range.first; s <= range.last; ++s) slots[s] = owner;
  }
  slots_.swap(slots);
  last_load_ = absl::Now();
  ClusterCounters::Add(counters_.slot_map_refreshes);
  return absl::OkStatus();
}

void RedisCluster::Impl::MaybeRefresh(absl::Time deadline, bool force) {
  std::vector<std::shared_ptr<ClusterNode>> candidates;
  {
    std::unique_lock<std::mutex> lock(map_mu_);
    const absl::Time now = absl::Now();
    const bool due = slots_.empty() || force || now - last_load_ >= options_.slot_map_refresh_interval;
    if (!due) return;
    if (refreshing_) {
      if (slots_.empty()) {
        refreshed_.wait_until(lock, absl::ToChronoTime(deadline), [this] { return !refreshing_; });
      }
      return;
    }
    if (now - last_attempt_ < options_.min_refresh_gap) return;
    refreshing_ = true;
    last_attempt_ = now;
    // Seeds first (they are what the operator named), then the rest, starting from a rotating
    // point so refreshes spread over the nodes.
    std::vector<std::shared_ptr<ClusterNode>> others;
    for (const auto& [address, node] : nodes_) others.push_back(node);
    const size_t start = others.empty() ? 0 : next_candidate_++ % others.size();
    candidates = seeds_;
    for (size_t i = 0; i < others.size(); ++i) candidates.push_back(others[(start + i) % others.size()]);
  }
  bool loaded = false;
  bool tried_any = false;
  absl::Status error = absl::UnavailableError("redis: no slot map (every node is down or timed out)");
  const absl::Time now = absl::Now();
  absl::flat_hash_map<const ClusterNode*, bool> tried;
  for (const std::shared_ptr<ClusterNode>& node : candidates) {
    if (absl::Now() >= deadline) break;
    if (!tried.emplace(node.get(), true).second || node->IsDown(now)) continue;
    tried_any = true;
    absl::Status status = LoadSlotMap(*node, deadline);
    if (status.ok()) {
      loaded = true;
      break;
    }
    error = status;
  }
  if (!loaded) ClusterCounters::Add(counters_.slot_map_refresh_failures);
  {
    std::unique_lock<std::mutex> lock(map_mu_);
    refreshing_ = false;
    refreshed_.notify_all();
    // Every node skipped as down: the reason they went down (say, AUTH refused) stays the answer.
    if (loaded) {
      last_refresh_error_ = absl::OkStatus();
    } else if (tried_any || last_refresh_error_.ok()) {
      last_refresh_error_ = error;
    }
  }
}

void RedisCluster::Impl::HandleReply(size_t index, ReplyPtr reply, std::vector<absl::StatusOr<ReplyPtr>>& results,
                                     std::vector<size_t>& pending, std::vector<std::shared_ptr<ClusterNode>>& ask,
                                     bool& refresh) {
  const redisReply* r = reply.get();
  if (r->type != REDIS_REPLY_ERROR) {
    results[index] = std::move(reply);
    return;
  }
  const absl::string_view error(r->str, r->len);
  Redirect redirect;
  if (!ParseRedirect(error, &redirect)) {
    ClusterCounters::Add(counters_.server_errors);
    if (absl::StartsWith(error, "CLUSTERDOWN")) refresh = true;
    results[index] = ErrorReplyStatus(error);
    return;
  }
  std::shared_ptr<ClusterNode> target = Node(redirect.address);
  if (target == nullptr) {
    ClusterCounters::Add(counters_.protocol_errors);
    results[index] = absl::InternalError(absl::StrCat("redis: bad redirect: ", error));
    return;
  }
  if (redirect.ask) {
    ClusterCounters::Add(counters_.ask_redirects);
    ask[index] = std::move(target);
  } else {
    ClusterCounters::Add(counters_.moved_redirects);
    std::unique_lock<std::mutex> lock(map_mu_);
    if (!slots_.empty()) slots_[redirect.slot] = std::move(target);
    refresh = true;
  }
  pending.push_back(index);
}

std::vector<absl::StatusOr<ReplyPtr>> RedisCluster::Impl::Run(const std::vector<Command>& commands) {
  const absl::Time deadline = absl::Now() + options_.command_timeout;
  std::vector<absl::StatusOr<ReplyPtr>> results(commands.size());
  MaybeRefresh(deadline, /*force=*/false);

  std::vector<size_t> pending(commands.size());
  for (size_t i = 0; i < pending.size(); ++i) pending[i] = i;
  std::vector<std::shared_ptr<ClusterNode>> ask(commands.size());
  absl::flat_hash_set<const ClusterNode*> retried_stale;  // at most one stale retry per node

  for (int round = 0; !pending.empty(); ++round) {
    if (round > options_.max_redirects) {
      for (size_t i : pending) {
        results[i] = absl::UnavailableError(absl::StrCat("redis: more than ", options_.max_redirects, " redirects"));
      }
      break;
    }
    // Group by node, in first-seen order.
    std::vector<Group> groups;
    absl::flat_hash_map<const ClusterNode*, size_t> group_of;
    {
      std::unique_lock<std::mutex> lock(map_mu_);
      for (size_t i : pending) {
        std::shared_ptr<ClusterNode> node = ask[i] != nullptr ? ask[i] : (slots_.empty() ? nullptr : slots_[commands[i].slot]);
        if (node == nullptr) {
          if (slots_.empty()) {
            results[i] = last_refresh_error_.ok() ? absl::UnavailableError("redis: no slot map yet") : last_refresh_error_;
          } else {
            results[i] = absl::UnavailableError(absl::StrCat("redis: slot ", commands[i].slot, " has no owner"));
          }
          continue;
        }
        auto [it, added] = group_of.emplace(node.get(), groups.size());
        if (added) {
          groups.emplace_back();
          groups.back().node = node;
        }
        groups[it->second].items.push_back(Item{i, ask[i] != nullptr});
        ask[i] = nullptr;
      }
    }
    pending.clear();
    bool refresh = false;

    // Every node's pipeline is written and read at once, under one poll: a slow or hung node
    // costs its own keys only. Commands are queued as the socket drains (at most
    // kMaxQueuedBytes ahead), so a batch of large values never sits whole in a buffer.
    for (Group& group : groups) {
      bool fast_failed = false;
      absl::StatusOr<std::unique_ptr<internal::RedisConnection>> connection = group.node->Acquire(deadline, &fast_failed);
      if (!connection.ok()) {
        if (fast_failed) ClusterCounters::Add(counters_.fast_failures, group.items.size());
        for (const Item& item : group.items) results[item.index] = connection.status();
        group.done = true;
        refresh = true;
        continue;
      }
      group.connection = std::move(*connection);
      group.reused = group.connection->replies_received() > 0;
    }
    auto fail_group = [&](Group& group, const absl::Status& status) {
      const bool stale = group.reused && group.next_reply == 0 && !group.asking_acknowledged &&
                         group.connection->last_failure() == FailureKind::kIo;
      if (stale && retried_stale.insert(group.node.get()).second) {
        // Closed while idle, not a node failure: retry the group once on a new connection.
        ClusterCounters::Add(counters_.stale_connection_retries);
        group.node->DropIdle();
        for (const Item& item : group.items) {
          if (item.asking) ask[item.index] = group.node;
          pending.push_back(item.index);
        }
        group.connection.reset();
        group.done = true;
        return;
      }
      CountFailure(group.connection->last_failure(), *group.node);
      for (size_t k = group.next_reply; k < group.items.size(); ++k) results[group.items[k].index] = status;
      group.connection.reset();
      group.done = true;
      refresh = true;
    };
    // Takes every buffered reply of the group; false when the group failed.
    auto drain = [&](Group& group) {
      while (group.next_reply < group.next_append) {
        absl::StatusOr<ReplyPtr> reply = group.connection->TryGetReply();
        if (!reply.ok()) {
          fail_group(group, reply.status());
          return false;
        }
        if (*reply == nullptr) break;
        const Item& item = group.items[group.next_reply];
        if (item.asking && !group.asking_acknowledged) {
          group.asking_acknowledged = true;  // +OK to ASKING
          continue;
        }
        group.asking_acknowledged = false;
        ++group.next_reply;
        HandleReply(item.index, std::move(*reply), results, pending, ask, refresh);
      }
      return true;
    };
    std::vector<pollfd> polled;
    std::vector<Group*> polled_groups;
    for (;;) {
      polled.clear();
      polled_groups.clear();
      for (Group& group : groups) {
        if (group.done) continue;
        internal::RedisConnection& c = *group.connection;
        while (group.next_append < group.items.size() && c.pending_out_bytes() < kMaxQueuedBytes) {
          const Item& item = group.items[group.next_append++];
          if (item.asking) {
            const absl::string_view asking[] = {"ASKING"};
            c.Append(asking);
          }
          ClusterCounters::Add(counters_.bytes_out, c.Append(commands[item.index].argv));
          ClusterCounters::Add(counters_.commands);
        }
        if (c.WantsWrite()) {
          if (absl::Status s = c.WriteSome(); !s.ok()) {
            fail_group(group, s);
            continue;
          }
        }
        const bool failed = !drain(group);
        if (failed) continue;
        if (group.next_reply == group.items.size()) {
          group.node->Release(std::move(group.connection));
          group.done = true;
          continue;
        }
        polled.push_back(pollfd{c.fd(), static_cast<short>(POLLIN | (c.WantsWrite() ? POLLOUT : 0)), 0});
        polled_groups.push_back(&group);
      }
      if (polled.empty()) break;
      const absl::Duration left = deadline - absl::Now();
      if (left <= absl::ZeroDuration()) {
        for (Group* group : polled_groups) fail_group(*group, group->connection->FailTimeout());
        break;
      }
      const timespec ts = absl::ToTimespec(left);
      const int ready = ppoll(polled.data(), polled.size(), &ts, nullptr);
      if (ready < 0 && errno != EINTR) {
        for (Group* group : polled_groups) {
          fail_group(*group, absl::UnavailableError(absl::StrCat("redis: poll: ", std::strerror(errno))));
        }
        break;
      }
      for (size_t k = 0; k < polled.size() && ready > 0; ++k) {
        if ((polled[k].revents & (POLLIN | POLLERR | POLLHUP)) == 0) continue;
        Group& group = *polled_groups[k];
        for (bool more = true; more;) {
          if (absl::Status s = group.connection->ReadSome(&more); !s.ok()) {
            fail_group(group, s);
            break;
          }
          if (!drain(group)) break;
        }
      }
    }
    if (refresh) MaybeRefresh(deadline, /*force=*/true);
  }
  return results;
}

RedisClusterStats RedisCluster::Impl::Stats() const {
  auto get = [](const ClusterCounters::Counter& c) { return c.load(std::memory_order_relaxed); };
  RedisClusterStats s;
  s.commands = get(counters_.commands);
  s.moved_redirects = get(counters_.moved_redirects);
  s.ask_redirects = get(counters_.ask_redirects);
  s.slot_map_refreshes = get(counters_.slot_map_refreshes);
  s.slot_map_refresh_failures = get(counters_.slot_map_refresh_failures);
  s.connects = get(counters_.connects);
  s.reconnects = get(counters_.reconnects);
  s.connect_failures = get(counters_.connect_failures);
  s.fast_failures = get(counters_.fast_failures);
  s.timeouts = get(counters_.timeouts);
  s.io_errors = get(counters_.io_errors);
  s.stale_connection_retries = get(counters_.stale_connection_retries);
  s.protocol_errors = get(counters_.protocol_errors);
  s.server_errors = get(counters_.server_errors);
  s.auth_failures = get(counters_.auth_failures);
  s.bytes_out = get(counters_.bytes_out);
  s.bytes_in = get(counters_.bytes_in);
  return s;
}

// ---- RedisCluster ----------------------------------------------------------------------------

absl::StatusOr<std::unique_ptr<RedisCluster>> RedisCluster::Create(RedisClusterOptions options) {
  if (options.seeds.empty()) return absl::InvalidArgumentError("redis cluster: no seed nodes");
  for (const std::string& seed : options.seeds) {
    std::string host;
    int port = 0;
    if (!ParseHostPort(seed, &host, &port)) {
      return absl::InvalidArgumentError(absl::StrCat("redis cluster: seed \"", seed, "\" is not host:port"));
    }
  }
  if (options.connect_timeout <= absl::ZeroDuration() || options.command_timeout <= absl::ZeroDuration() ||
      options.backoff_initial <= absl::ZeroDuration() || options.backoff_max < options.backoff_initial) {
    return absl::InvalidArgumentError("redis cluster: timeouts and backoffs must be positive (max >= initial)");
  }
  if (options.max_redirects < 1 || options.max_idle_connections_per_node < 0) {
    return absl::InvalidArgumentError("redis cluster: max_redirects >= 1, max_idle_connections_per_node >= 0");
  }
  return std::unique_ptr<RedisCluster>(new RedisCluster(std::make_unique<Impl>(std::move(options))));
}

RedisCluster::RedisCluster(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
RedisCluster::~RedisCluster() = default;

RedisClusterStats RedisCluster::stats() const { return impl_->Stats(); }

namespace {

absl::Status UnexpectedReply(absl::string_view command, const redisReply& r, ClusterCounters& counters) {
  ClusterCounters::Add(counters.protocol_errors);
  return absl::InternalError(absl::StrCat("redis: ", command, ": unexpected reply type ", r.type));
}

}  // namespace

std::vector<absl::StatusOr<std::optional<RedisCluster::Value>>> RedisCluster::MultiGet(
    absl::Span<const absl::string_view> keys) {
  std::vector<Impl::Command> commands;
  commands.reserve(keys.size());
  for (absl::string_view key : keys) commands.push_back({{"GET", key}, internal::KeySlot(key)});
  std::vector<absl::StatusOr<ReplyPtr>> replies = impl_->Run(commands);
  std::vector<absl::StatusOr<std::optional<Value>>> out;
  out.reserve(keys.size());
  for (absl::StatusOr<ReplyPtr>& reply : replies) {
    if (!reply.ok()) {
      out.push_back(reply.status());
      continue;
    }
    redisReply* r = reply->get();
    if (r->type == REDIS_REPLY_NIL) {
      out.push_back(std::optional<Value>());
    } else if (r->type == REDIS_REPLY_STRING) {
      Value value;
      value.bytes_ = absl::string_view(r->str, r->len);
      value.owner_ = std::shared_ptr<void>(reply->release(), [](void* p) { freeReplyObject(p); });
      ClusterCounters::Add(impl_->counters().bytes_in, value.size());
      out.push_back(std::optional<Value>(std::move(value)));
    } else {
      out.push_back(UnexpectedReply("GET", *r, impl_->counters()));
    }
  }
  return out;
}

std::vector<absl::StatusOr<bool>> RedisCluster::MultiExists(absl::Span<const absl::string_view> keys) {
  std::vector<Impl::Command> commands;
  commands.reserve(keys.size());
  for (absl::string_view key : keys) commands.push_back({{"EXISTS", key}, internal::KeySlot(key)});
  std::vector<absl::StatusOr<ReplyPtr>> replies = impl_->Run(commands);
  std::vector<absl::StatusOr<bool>> out;
  out.reserve(keys.size());
  for (absl::StatusOr<ReplyPtr>& reply : replies) {
    if (!reply.ok()) {
      out.push_back(reply.status());
    } else if ((*reply)->type == REDIS_REPLY_INTEGER) {
      out.push_back((*reply)->integer > 0);
    } else {
      out.push_back(UnexpectedReply("EXISTS", **reply, impl_->counters()));
    }
  }
  return out;
}

std::vector<absl::Status> RedisCluster::MultiSet(absl::Span<const KeyValue> items) {
  std::vector<Impl::Command> commands;
  commands.reserve(items.size());
  for (const KeyValue& kv : items) commands.push_back({{"SET", kv.key, kv.value}, internal::KeySlot(kv.key)});
  std::vector<absl::StatusOr<ReplyPtr>> replies = impl_->Run(commands);
  std::vector<absl::Status> out;
  out.reserve(items.size());
  for (absl::StatusOr<ReplyPtr>& reply : replies) {
    if (!reply.ok()) {
      out.push_back(reply.status());
    } else if ((*reply)->type == REDIS_REPLY_STATUS) {
      out.push_back(absl::OkStatus());
    } else {
      out.push_back(UnexpectedReply("SET", **reply, impl_->counters()));
    }
  }
  return out;
}

absl::StatusOr<std::optional<RedisCluster::Value>> RedisCluster::Get(absl::string_view key) {
  return std::move(MultiGet({key})[0]);
}

absl::Status RedisCluster::Set(absl::string_view key, absl::string_view value) {
  const KeyValue item{key, value};
  return MultiSet({item})[0];
}

absl::StatusOr<bool> RedisCluster::Exists(absl::string_view key) { return MultiExists({key})[0]; }

absl::StatusOr<bool> RedisCluster::Del(absl::string_view key) {
  std::vector<absl::StatusOr<ReplyPtr>> replies = impl_->Run({{{"DEL", key}, internal::KeySlot(key)}});
  if (!replies[0].ok()) return replies[0].status();
  if ((*replies[0])->type != REDIS_REPLY_INTEGER) return UnexpectedReply("DEL", **replies[0], impl_->counters());
  return (*replies[0])->integer > 0;
}

}  // namespace slimkv::remote
