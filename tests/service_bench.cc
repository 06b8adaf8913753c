// service_bench: SlimKV's gRPC Put/Get against Redis SET/GET on loopback, same payload bytes,
// same run (the core service's acceptance benchmark; results in docs/benchmarks.md).
//
// The bench starts its own slimkvd (DaemonProcess) and its own redis-server (free port, no
// persistence, maxmemory with noeviction, killed at exit and with the bench through
// PR_SET_PDEATHSIG). For each page size (Llama-2-7B geometry, bf16) and each client count it
// has every client thread, on its own connection, put `pages_per_client` distinct pages one
// operation per page, then get them all back `get_rounds` times; Redis does the same with one
// key per page (as LMCache's Redis connector stores chunks). Every operation is bounded by a
// deadline (gRPC) or a socket timeout (hiredis), so the bench always ends.
//
// What is checked, so the numbers cannot come from a cheat: every get returns exactly the page
// size and carries the page's stamp (client and page id written at every tensor start); every
// `verify_every`-th get of each client, and its first, is compared byte for byte with what was
// put. SlimKV's client also verifies each tensor's CRC32C, as it always does.
//
// Not a test: a separate executable, run by hand (see docs/benchmarks.md for the command).
#include <hiredis/hiredis.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <functional>
#include <latch>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "clients/cpp/slimkv_client.h"
#include "tests/daemon_process.h"

ABSL_FLAG(std::string, page_tokens, "16,256", "page sizes to run, in tokens, comma-separated");
ABSL_FLAG(std::string, clients, "1,8", "client counts to run, comma-separated");
ABSL_FLAG(double, gib_per_row, 1.0,
          "data each (page size, clients) row stores, in GiB; sets pages per client (min 2)");
ABSL_FLAG(int, get_rounds, 2, "times each stored page is read back");
ABSL_FLAG(int, verify_every, 8, "compare every n-th get of each client byte for byte");
ABSL_FLAG(double, host_budget_gib, 8.0, "slimkvd host_budget_bytes, in GiB");
ABSL_FLAG(double, redis_maxmemory_gib, 8.0, "redis-server --maxmemory, in GiB");
ABSL_FLAG(std::string, daemon_config, "",
          "extra slimkvd config text (text-format DaemonConfig fields), for tuning runs");
ABSL_FLAG(std::string, only, "", "run one side only: slimkv or redis (default both)");

namespace slimkv::bench {
namespace {

using Clock = std::chrono::steady_clock;
using client::Client;
using client::ModelHandle;
using client::PageData;

// Llama-2-7B's config.json, the parts registration reads.
constexpr char kLlama2Config[] = R"({
  "architectures": ["LlamaForCausalLM"], "model_type": "llama",
  "hidden_size": 4096, "intermediate_size": 11008, "num_hidden_layers": 32,
  "num_attention_heads": 32, "num_key_value_heads": 32, "max_position_embeddings": 4096,
  "rms_norm_eps": 1e-05, "rope_theta": 10000.0, "torch_dtype": "float16", "vocab_size": 32000
})";

constexpr int kOpTimeoutSeconds = 120;

// ---- redis-server, owned by the bench ----------------------------------------------------

absl::StatusOr<int> FreeLoopbackPort() {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return absl::InternalError("socket failed");
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(addr);
  if (bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 ||
      getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    close(fd);
    return absl::InternalError("bind to a free loopback port failed");
  }
  close(fd);
  return ntohs(addr.sin_port);
}

struct RedisFree {
  void operator()(redisContext* c) const { redisFree(c); }
  void operator()(redisReply* r) const { freeReplyObject(r); }
};
using RedisConn = std::unique_ptr<redisContext, RedisFree>;
using RedisReplyPtr = std::unique_ptr<redisReply, RedisFree>;

absl::StatusOr<RedisConn> ConnectRedis(int port) {
  timeval connect_timeout{5, 0};
  RedisConn c(redisConnectWithTimeout("127.0.0.1", port, connect_timeout));
  if (c == nullptr) return absl::UnavailableError("redis: cannot allocate a context");
  if (c->err) return absl::UnavailableError(absl::StrCat("redis: ", c->errstr));
  timeval op_timeout{kOpTimeoutSeconds, 0};
  redisSetTimeout(c.get(), op_timeout);
  return c;
}

// A redis-server child on 127.0.0.1 with persistence off; SIGKILLed when this object goes away
// or when the bench dies.
class RedisServer {
 public:
  static absl::StatusOr<std::unique_ptr<RedisServer>> Start(uint64_t maxmemory_bytes) {
    auto port = FreeLoopbackPort();
    if (!port.ok()) return port.status();
    std::unique_ptr<RedisServer> r(new RedisServer());
    r->port_ = *port;
    std::string dir = (std::filesystem::temp_directory_path() / "slimkv-bench-redis-XXXXXX");
    if (mkdtemp(dir.data()) == nullptr) return absl::InternalError("mkdtemp failed");
    r->dir_ = dir;
    const std::string port_s = std::to_string(r->port_), mem_s = std::to_string(maxmemory_bytes);
    const std::string log = dir + "/redis.log";
    const pid_t parent = getpid();
    r->pid_ = fork();
    if (r->pid_ < 0) return absl::InternalError("fork failed");
    if (r->pid_ == 0) {
      prctl(PR_SET_PDEATHSIG, SIGKILL);
      if (getppid() != parent) _exit(1);  // the bench died before prctl took effect
      std::freopen(log.c_str(), "w", stdout);
      std::freopen(log.c_str(), "a", stderr);
      execlp("redis-server", "redis-server", "--port", port_s.c_str(), "--bind", "127.0.0.1",
             "--save", "", "--appendonly", "no", "--protected-mode", "yes", "--maxmemory",
             mem_s.c_str(), "--maxmemory-policy", "noeviction", "--dir", dir.c_str(),
             "--daemonize", "no", static_cast<char*>(nullptr));
      _exit(127);
    }
    const auto deadline = Clock::now() + std::chrono::seconds(10);
    while (Clock::now() < deadline) {
      int status;
      if (waitpid(r->pid_, &status, WNOHANG) == r->pid_) {
        r->pid_ = -1;
        return absl::InternalError(absl::StrCat("redis-server exited at start-up; see ", log));
      }
      if (auto c = ConnectRedis(r->port_); c.ok()) {
        RedisReplyPtr pong(static_cast<redisReply*>(redisCommand(c->get(), "PING")));
        if (pong != nullptr && pong->type == REDIS_REPLY_STATUS) return r;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));  // polling start-up
    }
    return absl::DeadlineExceededError("redis-server did not answer PING within 10 s");
  }

  ~RedisServer() {
    if (pid_ > 0) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }

  int port() const { return port_; }

 private:
  RedisServer() = default;
  pid_t pid_ = -1;
  int port_ = 0;
  std::string dir_;
};

// ---- payloads ----------------------------------------------------------------------------

// Finite bf16 values of magnitude in [2^-8, 2^2), from a xorshift stream: realistic bits that
// do not compress to nothing.
std::vector<uint8_t> MakePayload(uint64_t bytes, uint64_t seed) {
  std::vector<uint8_t> out(bytes);
  uint64_t x = seed * 0x9E3779B97F4A7C15ull + 1;
  for (uint64_t i = 0; i + 8 <= bytes; i += 8) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    uint64_t w = 0;
    for (int k = 0; k < 4; ++k) {
      const uint16_t r = static_cast<uint16_t>(x >> (16 * k));
      const uint16_t exponent = 119 + (r >> 7) % 10;
      w |= uint64_t((r & 0x8000) | (exponent << 7) | (r & 0x7f)) << (16 * k);
    }
    std::memcpy(&out[i], &w, 8);
  }
  return out;
}

// Writes (client, page) as eight bf16 values 1 + nibble/128 at the start of each of `tensors`
// equal tensors, so a page served in place of another is caught without a full compare.
void Stamp(std::vector<uint8_t>& page, uint32_t tensors, uint32_t id) {
  const uint64_t stride = page.size() / tensors;
  for (uint32_t t = 0; t < tensors; ++t) {
    for (int k = 0; k < 8; ++k) {
      const uint16_t v = 0x3F80 | ((id >> (4 * k)) & 0xF);
      std::memcpy(&page[t * stride + 2 * k], &v, 2);
    }
  }
}

bool HasStamp(const uint8_t* page, uint64_t size, uint32_t tensors, uint32_t id) {
  const uint64_t stride = size / tensors;
  for (uint32_t t = 0; t < tensors; ++t) {
    for (int k = 0; k < 8; ++k) {
      const uint16_t v = 0x3F80 | ((id >> (4 * k)) & 0xF);
      if (std::memcmp(page + t * stride + 2 * k, &v, 2) != 0) return false;
    }
  }
  return true;
}

uint32_t PageId(int client, int page) { return (uint32_t(client) << 20) | uint32_t(page); }

// ---- timing ------------------------------------------------------------------------------

struct PhaseResult {
  double wall_seconds = 0;
  std::vector<double> latencies_ms;  // one per operation
  uint64_t bytes = 0;
  double GBps() const { return bytes / wall_seconds / 1e9; }
  double Percentile(double q) const {
    std::vector<double> v = latencies_ms;
    if (v.empty()) return 0;
    std::sort(v.begin(), v.end());
    return v[std::min(v.size() - 1, static_cast<size_t>(q * v.size()))];
  }
};

// Runs `ops` operations on each of `clients` threads, started together; op(client, i) returns
// the status of operation i. Wall time runs from the common start to the last thread's end.
absl::StatusOr<PhaseResult> RunPhase(int clients, int ops, uint64_t op_bytes,
                                     const std::function<absl::Status(int, int)>& op) {
  std::vector<std::vector<double>> lat(clients);
  std::vector<absl::Status> status(clients);
  std::vector<Clock::time_point> end(clients);
  std::latch ready(clients + 1);
  std::latch go(1);
  std::vector<std::thread> threads;
  for (int c = 0; c < clients; ++c) {
    threads.emplace_back([&, c] {
      lat[c].reserve(ops);
      ready.count_down();
      go.wait();
      for (int i = 0; i < ops && status[c].ok(); ++i) {
        const auto t0 = Clock::now();
        status[c] = op(c, i);
        lat[c].push_back(std::chrono::duration<double, std::milli>(Clock::now() - t0).count());
      }
      end[c] = Clock::now();
    });
  }
  ready.arrive_and_wait();
  const auto start = Clock::now();
  go.count_down();
  for (auto& t : threads) t.join();
  for (const auto& s : status) {
    if (!s.ok()) return s;
  }
  PhaseResult r;
  r.wall_seconds =
      std::chrono::duration<double>(*std::max_element(end.begin(), end.end()) - start).count();
  for (auto& l : lat) r.latencies_ms.insert(r.latencies_ms.end(), l.begin(), l.end());
  r.bytes = op_bytes * r.latencies_ms.size();
  return r;
}

// ---- one row -----------------------------------------------------------------------------

struct Row {
  uint32_t page_tokens = 0;
  int clients = 0;
  int pages_per_client = 0;
  uint64_t page_bytes = 0;
  PhaseResult slim_put, slim_get, redis_put, redis_get;
};

// The bytes client c puts as page j: its own payload with the page's stamp.
struct ClientPayloads {
  std::vector<std::vector<uint8_t>> base;  // one per client
  uint32_t tensors = 0;
  void StampFor(int c, int j) { Stamp(base[c], tensors, PageId(c, j)); }
};

absl::Status CheckGot(const uint8_t* got, uint64_t size, ClientPayloads& payloads, int c, int j,
                      bool full_compare, const char* who) {
  const std::vector<uint8_t>& want = payloads.base[c];
  if (size != want.size()) {
    return absl::DataLossError(absl::StrCat(who, ": page ", j, " of client ", c, " came back with ",
                                            size, " bytes, put ", want.size()));
  }
  if (!HasStamp(got, size, payloads.tensors, PageId(c, j))) {
    return absl::DataLossError(absl::StrCat(who, ": page ", j, " of client ", c,
                                            " came back with another page's stamp"));
  }
  if (full_compare) {
    payloads.StampFor(c, j);
    if (std::memcmp(got, want.data(), size) != 0) {
      return absl::DataLossError(absl::StrCat(who, ": page ", j, " of client ", c,
                                              " differs from what was put"));
    }
  }
  return absl::OkStatus();
}

// Prompt of client c, page j: one page of tokens unique to (row, c, j), so every page has its
// own key chain and the same pages are never put twice.
std::vector<uint32_t> PromptTokens(uint32_t page_tokens, uint32_t row, int c, int j) {
  std::vector<uint32_t> t(page_tokens);
  for (uint32_t i = 0; i < page_tokens; ++i) {
    t[i] = (row * 7919u + uint32_t(c) * 104729u + uint32_t(j) * 131u + i * 31u) % 32000u;
  }
  t[0] = row;  // rows never share a first page
  t[1] = uint32_t(c);
  t[2] = uint32_t(j) % 32000u;
  t[3] = uint32_t(j) / 32000u;
  return t;
}

absl::Status RunSlimKV(const testing::DaemonProcess& daemon, uint32_t row_id, Row& row,
                       ClientPayloads& payloads) {
  const int verify_every = std::max(1, absl::GetFlag(FLAGS_verify_every));
  std::vector<std::unique_ptr<Client>> clients;
  std::vector<ModelHandle> models;
  for (int c = 0; c < row.clients; ++c) {
    client::ClientOptions options;
    options.deadline_seconds = kOpTimeoutSeconds;
    clients.push_back(daemon.NewClient(options));
    auto m = clients.back()->RegisterModelConfig(kLlama2Config, row.page_tokens);
    if (!m.ok()) return m.status();
    models.push_back(*m);
  }
  if (models[0].PageElems() * 2 != row.page_bytes) {
    return absl::InternalError(absl::StrCat("registered geometry gives ",
                                            models[0].PageElems() * 2, " bytes per page, want ",
                                            row.page_bytes));
  }
  std::vector<std::vector<std::vector<uint32_t>>> prompts(row.clients);
  for (int c = 0; c < row.clients; ++c) {
    for (int j = 0; j < row.pages_per_client; ++j) {
      prompts[c].push_back(PromptTokens(row.page_tokens, row_id, c, j));
    }
  }

  std::vector<PageData> page(row.clients);
  auto put = RunPhase(row.clients, row.pages_per_client, row.page_bytes,
                      [&](int c, int j) -> absl::Status {
                        payloads.StampFor(c, j);
                        page[c].dtype = kernels::DType::kBF16;
                        // The page vector is the client's payload: swap, not copy, around Put.
                        page[c].bytes.swap(payloads.base[c]);
                        auto r = clients[c]->Put(models[c], prompts[c][j], 0, {&page[c], 1});
                        page[c].bytes.swap(payloads.base[c]);
                        if (!r.ok()) return r.status();
                        if (r->pages_stored() != 1) {
                          return absl::InternalError(absl::StrCat(
                              "slimkv put: page ", j, " of client ", c, " stored ",
                              r->pages_stored(), " pages, present ", r->pages_present()));
                        }
                        return absl::OkStatus();
                      });
  if (!put.ok()) return put.status();
  row.slim_put = *std::move(put);

  const int n = row.pages_per_client;
  auto get = RunPhase(row.clients, n * absl::GetFlag(FLAGS_get_rounds), row.page_bytes,
                      [&](int c, int i) -> absl::Status {
                        const int j = i % n;
                        auto got = clients[c]->Get(models[c], prompts[c][j]);
                        if (!got.ok()) return got.status();
                        if (got->size() != 1) {
                          return absl::DataLossError(absl::StrCat(
                              "slimkv get: page ", j, " of client ", c, " returned ",
                              got->size(), " pages"));
                        }
                        const auto& b = (*got)[0].bytes;
                        return CheckGot(b.data(), b.size(), payloads, c, j,
                                        i % verify_every == 0, "slimkv get");
                      });
  if (!get.ok()) return get.status();
  row.slim_get = *std::move(get);

  for (int c = 0; c < row.clients; ++c) {
    for (const auto& p : prompts[c]) {
      if (auto d = clients[c]->Delete(models[c], p); !d.ok()) return d.status();
    }
  }
  return absl::OkStatus();
}

absl::Status RunRedis(int port, uint32_t row_id, Row& row, ClientPayloads& payloads) {
  const int verify_every = std::max(1, absl::GetFlag(FLAGS_verify_every));
  std::vector<RedisConn> conns;
  for (int c = 0; c < row.clients; ++c) {
    auto conn = ConnectRedis(port);
    if (!conn.ok()) return conn.status();
    conns.push_back(*std::move(conn));
  }
  auto key = [&](int c, int j) { return absl::StrCat("slimkv-bench:", row_id, ":", c, ":", j); };
  auto put = RunPhase(row.clients, row.pages_per_client, row.page_bytes,
                      [&](int c, int j) -> absl::Status {
                        payloads.StampFor(c, j);
                        const std::string k = key(c, j);
                        const auto& v = payloads.base[c];
                        RedisReplyPtr r(static_cast<redisReply*>(redisCommand(
                            conns[c].get(), "SET %b %b", k.data(), k.size(), v.data(), v.size())));
                        if (r == nullptr) {
                          return absl::UnavailableError(
                              absl::StrCat("redis SET: ", conns[c]->errstr));
                        }
                        if (r->type != REDIS_REPLY_STATUS) {
                          return absl::InternalError(absl::StrCat(
                              "redis SET: ", r->type == REDIS_REPLY_ERROR ? r->str : "bad reply"));
                        }
                        return absl::OkStatus();
                      });
  if (!put.ok()) return put.status();
  row.redis_put = *std::move(put);

  const int n = row.pages_per_client;
  auto get = RunPhase(row.clients, n * absl::GetFlag(FLAGS_get_rounds), row.page_bytes,
                      [&](int c, int i) -> absl::Status {
                        const int j = i % n;
                        const std::string k = key(c, j);
                        RedisReplyPtr r(static_cast<redisReply*>(
                            redisCommand(conns[c].get(), "GET %b", k.data(), k.size())));
                        if (r == nullptr) {
                          return absl::UnavailableError(
                              absl::StrCat("redis GET: ", conns[c]->errstr));
                        }
                        if (r->type != REDIS_REPLY_STRING) {
                          return absl::DataLossError(absl::StrCat("redis GET: ", k, " missing"));
                        }
                        return CheckGot(reinterpret_cast<const uint8_t*>(r->str), r->len,
                                        payloads, c, j, i % verify_every == 0, "redis get");
                      });
  if (!get.ok()) return get.status();
  row.redis_get = *std::move(get);

  RedisReplyPtr flushed(static_cast<redisReply*>(redisCommand(conns[0].get(), "FLUSHALL")));
  if (flushed == nullptr || flushed->type != REDIS_REPLY_STATUS) {
    return absl::InternalError("redis FLUSHALL failed");
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<int>> ParseList(const std::string& flag, const char* name) {
  std::vector<int> out;
  for (absl::string_view s : absl::StrSplit(flag, ',', absl::SkipEmpty())) {
    int v;
    if (!absl::SimpleAtoi(s, &v) || v <= 0) {
      return absl::InvalidArgumentError(absl::StrCat("--", name, ": bad value '", s, "'"));
    }
    out.push_back(v);
  }
  return out;
}

std::string Ratio(const PhaseResult& a, const PhaseResult& b) {
  if (a.latencies_ms.empty() || b.latencies_ms.empty()) return "—";
  return absl::StrFormat("%.2f×", a.GBps() / b.GBps());
}

std::string Side(const PhaseResult& r) {
  if (r.latencies_ms.empty()) return "— | — | —";
  return absl::StrFormat("%.2f | %.1f | %.1f", r.GBps(), r.Percentile(0.5), r.Percentile(0.99));
}

absl::Status Main() {
  auto page_tokens = ParseList(absl::GetFlag(FLAGS_page_tokens), "page_tokens");
  if (!page_tokens.ok()) return page_tokens.status();
  auto client_counts = ParseList(absl::GetFlag(FLAGS_clients), "clients");
  if (!client_counts.ok()) return client_counts.status();
  const std::string only = absl::GetFlag(FLAGS_only);
  if (!only.empty() && only != "slimkv" && only != "redis") {
    return absl::InvalidArgumentError("--only: slimkv or redis");
  }
  const bool run_slim = only != "redis", run_redis = only != "slimkv";

  const uint64_t gib = 1ull << 30;
  std::unique_ptr<testing::DaemonProcess> daemon;
  if (run_slim) {
    auto d = testing::DaemonProcess::Start(absl::StrCat(
        "host_budget_bytes: ", uint64_t(absl::GetFlag(FLAGS_host_budget_gib) * gib), "\n",
        absl::GetFlag(FLAGS_daemon_config)));
    if (!d.ok()) return d.status();
    daemon = *std::move(d);
  }
  std::unique_ptr<RedisServer> redis;
  if (run_redis) {
    auto r = RedisServer::Start(uint64_t(absl::GetFlag(FLAGS_redis_maxmemory_gib) * gib));
    if (!r.ok()) return r.status();
    redis = *std::move(r);
  }

  std::vector<Row> rows;
  uint32_t row_id = 0;
  for (int tokens : *page_tokens) {
    for (int clients : *client_counts) {
      Row row;
      row.page_tokens = tokens;
      row.clients = clients;
      // Llama-2-7B: 32 layers × (K + V) × tokens × 32 heads × 128 dims × 2 bytes (bf16).
      row.page_bytes = uint64_t{32} * 2 * tokens * 32 * 128 * 2;
      row.pages_per_client = std::max<int>(
          2, absl::GetFlag(FLAGS_gib_per_row) * gib / (double(clients) * row.page_bytes));
      ClientPayloads payloads;
      payloads.tensors = 64;
      for (int c = 0; c < clients; ++c) {
        payloads.base.push_back(MakePayload(row.page_bytes, row_id * 1000 + c + 1));
      }
      absl::FPrintF(stderr, "row %u: %d-token pages (%d MiB), %d clients, %d pages each\n",
                    row_id, tokens, row.page_bytes >> 20, clients, row.pages_per_client);
      if (run_slim) {
        if (auto s = RunSlimKV(*daemon, row_id, row, payloads); !s.ok()) return s;
        absl::FPrintF(stderr, "  slimkv put %.2f GB/s, get %.2f GB/s\n", row.slim_put.GBps(),
                      row.slim_get.GBps());
      }
      if (run_redis) {
        if (auto s = RunRedis(redis->port(), row_id, row, payloads); !s.ok()) return s;
        absl::FPrintF(stderr, "  redis  put %.2f GB/s, get %.2f GB/s\n", row.redis_put.GBps(),
                      row.redis_get.GBps());
      }
      rows.push_back(std::move(row));
      ++row_id;
    }
  }

  absl::PrintF(
      "| page | clients | pages/client | op | SlimKV GB/s | SlimKV p50 ms | SlimKV p99 ms | "
      "Redis GB/s | Redis p50 ms | Redis p99 ms | SlimKV/Redis |\n"
      "|---|---|---|---|---|---|---|---|---|---|---|\n");
  for (const Row& r : rows) {
    const std::string page =
        absl::StrFormat("%u tok (%u MiB)", r.page_tokens, uint32_t(r.page_bytes >> 20));
    absl::PrintF("| %s | %d | %d | put | %s | %s | %s |\n", page, r.clients, r.pages_per_client,
                 Side(r.slim_put), Side(r.redis_put), Ratio(r.slim_put, r.redis_put));
    absl::PrintF("| %s | %d | %d | get | %s | %s | %s |\n", page, r.clients, r.pages_per_client,
                 Side(r.slim_get), Side(r.redis_get), Ratio(r.slim_get, r.redis_get));
  }
  return absl::OkStatus();
}

}  // namespace
}  // namespace slimkv::bench

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  signal(SIGPIPE, SIG_IGN);  // a dead server shows as an error on the call, not a silent exit
  if (absl::Status s = slimkv::bench::Main(); !s.ok()) {
    absl::FPrintF(stderr, "service_bench: %s\n", s.ToString());
    return 1;
  }
  return 0;
}
