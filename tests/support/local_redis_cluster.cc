#include "tests/support/local_redis_cluster.h"

#include <netinet/in.h>
#include <sys/socket.h>
#include <signal.h>
#include <unistd.h>

#include <cerrno>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

#ifndef SLIMKV_REDIS_CLUSTER_SH
#error "SLIMKV_REDIS_CLUSTER_SH must name ops/redis-cluster.sh"
#endif

namespace slimkv::remote::testing {
namespace {

bool PortFree(int port) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return false;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(static_cast<uint16_t>(port));
  const bool ok = bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0;
  close(fd);
  return ok;
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

constexpr char kDirPrefix[] = "slimkv-redis-cluster-";

// A zombie (killed, not yet reaped) counts as gone.
bool OwnerAlive(int pid) {
  if (kill(pid, 0) != 0 && errno == ESRCH) return false;
  const std::string stat = ReadFile(absl::StrCat("/proc/", pid, "/stat"));
  const size_t paren = stat.rfind(')');
  return paren == std::string::npos || paren + 2 >= stat.size() || stat[paren + 2] != 'Z';
}

// A test that crashed (abort, SIGKILL) never ran its destructor: its cluster still runs. Each
// dir records the pid of the process that owns it; stop and remove those whose owner is gone.
void ReapOrphans() {
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator(std::filesystem::temp_directory_path(), ec)) {
    const std::string name = entry.path().filename().string();
    if (name.rfind(kDirPrefix, 0) != 0) continue;
    int owner = 0;
    if (!absl::SimpleAtoi(absl::StripAsciiWhitespace(ReadFile(entry.path() / "owner.pid")), &owner)) continue;
    if (owner <= 0 || OwnerAlive(owner)) continue;
    const std::string cmd = absl::StrCat("bash '", SLIMKV_REDIS_CLUSTER_SH, "' stop '", entry.path().string(),
                                         "' >/dev/null 2>&1");
    if (std::system(cmd.c_str()) == 0) std::filesystem::remove_all(entry.path(), ec);
  }
}

}  // namespace

absl::StatusOr<std::unique_ptr<LocalCluster>> LocalCluster::Start(const std::string& maxmemory) {
  ReapOrphans();
  std::string tmpl = (std::filesystem::temp_directory_path() / absl::StrCat(kDirPrefix, "XXXXXX")).string();
  if (mkdtemp(tmpl.data()) == nullptr) return absl::UnavailableError("mkdtemp failed");
  std::ofstream(tmpl + "/owner.pid") << getpid() << "\n";
  std::mt19937 rng(std::random_device{}());
  std::uniform_int_distribution<int> pick(20000, 40000);
  for (int attempt = 0; attempt < 50; ++attempt) {
    const int base = pick(rng);
    bool free = true;
    for (int i = 0; i < kNodes && free; ++i) free = PortFree(base + i) && PortFree(base + i + 10000);
    if (!free) continue;
    std::unique_ptr<LocalCluster> cluster(new LocalCluster(tmpl, base));
    const std::string cmd = absl::StrCat("bash '", SLIMKV_REDIS_CLUSTER_SH, "' start '", tmpl, "' ", base, " ",
                                         maxmemory, " >'", tmpl, "/script.log' 2>&1");
    if (std::system(cmd.c_str()) != 0) {
      return absl::UnavailableError(absl::StrCat("redis-cluster.sh start failed: ", ReadFile(tmpl + "/script.log")));
    }
    return cluster;
  }
  std::filesystem::remove_all(tmpl);
  return absl::UnavailableError("no 6 free loopback port pairs found");
}

LocalCluster::~LocalCluster() {
  (void)Script("stop");
  std::error_code ignored;
  std::filesystem::remove_all(dir_, ignored);
}

absl::Status LocalCluster::Script(absl::string_view verb) const {
  const std::string cmd = absl::StrCat("bash '", SLIMKV_REDIS_CLUSTER_SH, "' ", verb, " '", dir_, "' >>'", dir_,
                                       "/script.log' 2>&1");
  if (std::system(cmd.c_str()) != 0) {
    return absl::UnavailableError(absl::StrCat("redis-cluster.sh ", verb, " failed: ", ReadFile(dir_ + "/script.log")));
  }
  return absl::OkStatus();
}

absl::Status LocalCluster::Stop() { return Script("stop"); }
absl::Status LocalCluster::Restart() { return Script("start"); }

std::vector<int> LocalCluster::ports() const {
  std::vector<int> p;
  for (int i = 0; i < kNodes; ++i) p.push_back(base_port_ + i);
  return p;
}

std::string LocalCluster::seed() const { return absl::StrCat("127.0.0.1:", base_port_); }

pid_t LocalCluster::Pid(int port) const {
  int pid = -1;
  std::string text = ReadFile(absl::StrCat(dir_, "/redis-", port, ".pid"));
  if (!absl::SimpleAtoi(absl::StripAsciiWhitespace(text), &pid)) return -1;
  return pid;
}

absl::StatusOr<ReplyPtr> LocalCluster::Command(int port, std::vector<std::string> argv) {
  timeval tv{2, 0};
  std::unique_ptr<redisContext, decltype(&redisFree)> c(redisConnectWithTimeout("127.0.0.1", port, tv), &redisFree);
  if (c == nullptr || c->err) return absl::UnavailableError(absl::StrCat("connect to ", port, " failed"));
  redisSetTimeout(c.get(), tv);
  std::vector<const char*> args;
  std::vector<size_t> lens;
  for (const std::string& a : argv) {
    args.push_back(a.data());
    lens.push_back(a.size());
  }
  ReplyPtr reply(
      static_cast<redisReply*>(redisCommandArgv(c.get(), static_cast<int>(args.size()), args.data(), lens.data())));
  if (reply == nullptr) return absl::UnavailableError(absl::StrCat("port ", port, ": ", c->errstr));
  if (reply->type == REDIS_REPLY_ERROR) {
    return absl::InternalError(absl::StrCat("port ", port, " ", argv[0], ": ", std::string(reply->str, reply->len)));
  }
  return reply;
}

absl::StatusOr<std::string> LocalCluster::CommandString(int port, std::vector<std::string> argv) {
  absl::StatusOr<ReplyPtr> reply = Command(port, std::move(argv));
  if (!reply.ok()) return reply.status();
  if ((*reply)->type == REDIS_REPLY_INTEGER) return absl::StrCat((*reply)->integer);
  if ((*reply)->type == REDIS_REPLY_STRING || (*reply)->type == REDIS_REPLY_STATUS) {
    return std::string((*reply)->str, (*reply)->len);
  }
  return absl::InternalError("unexpected reply type");
}

absl::StatusOr<std::vector<int>> LocalCluster::Masters(int via_port) const {
  absl::StatusOr<std::string> nodes = CommandString(via_port, {"CLUSTER", "NODES"});
  if (!nodes.ok()) return nodes.status();
  std::vector<int> masters;
  for (absl::string_view line : absl::StrSplit(*nodes, '\n', absl::SkipEmpty())) {
    std::vector<absl::string_view> f = absl::StrSplit(line, ' ', absl::SkipEmpty());
    if (f.size() < 9 || !absl::StrContains(f[2], "master") || absl::StrContains(f[2], "fail")) continue;
    absl::string_view addr = f[1].substr(0, f[1].find('@'));
    int port = 0;
    if (absl::SimpleAtoi(addr.substr(addr.rfind(':') + 1), &port)) masters.push_back(port);
  }
  return masters;
}

absl::StatusOr<int> LocalCluster::MasterOfSlot(int slot, int via_port) const {
  absl::StatusOr<ReplyPtr> reply = Command(via_port, {"CLUSTER", "SLOTS"});
  if (!reply.ok()) return reply.status();
  for (size_t i = 0; i < (*reply)->elements; ++i) {
    const redisReply* e = (*reply)->element[i];
    if (e->element[0]->integer <= slot && slot <= e->element[1]->integer) {
      return static_cast<int>(e->element[2]->element[1]->integer);
    }
  }
  return absl::NotFoundError(absl::StrCat("slot ", slot, " unowned"));
}

absl::StatusOr<std::string> LocalCluster::NodeId(int port) { return CommandString(port, {"CLUSTER", "MYID"}); }

}  // namespace slimkv::remote::testing
