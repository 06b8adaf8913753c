#include "tests/daemon_process.h"

#include <arpa/inet.h>
#include <openssl/sha.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/match.h"
#include "absl/strings/str_split.h"

#ifndef SLIMKVD_PATH
#error "SLIMKVD_PATH must name the slimkvd binary under test"
#endif

namespace slimkv::testing {

namespace fs = std::filesystem;

absl::StatusOr<std::unique_ptr<DaemonProcess>> DaemonProcess::Start(
    const std::string& config_text) {
  std::unique_ptr<DaemonProcess> d(new DaemonProcess());
  std::string tmpl = (fs::temp_directory_path() / "slimkvd-test-XXXXXX").string();
  if (mkdtemp(tmpl.data()) == nullptr) return absl::InternalError("mkdtemp failed");
  d->dir_ = tmpl;
  if (absl::Status s = d->WriteConfig(config_text); !s.ok()) return s;
  if (absl::Status s = d->Launch(); !s.ok()) return s;
  return d;
}

absl::Status DaemonProcess::WriteConfig(const std::string& config_text) const {
  // Written beside and renamed over, so that a reload never reads half a file.
  const std::string config = dir_ + "/slimkvd.conf";
  {
    std::ofstream out(config + ".tmp");
    out << config_text << "\nlisten: \"127.0.0.1:0\"\n"
        << "metrics_listen: \"127.0.0.1:0\"\n"
        << "data_dir: \"" << dir_ << "/data\"\n";
    if (!out.flush()) return absl::InternalError("cannot write " + config + ".tmp");
  }
  std::error_code ec;
  fs::rename(config + ".tmp", config, ec);
  if (ec) return absl::InternalError(absl::StrCat("cannot replace ", config, ": ", ec.message()));
  return absl::OkStatus();
}

void DaemonProcess::Signal(int sig) const {
  if (pid_ > 0) kill(pid_, sig);
}

absl::Status DaemonProcess::Restart() {
  if (pid_ >= 0) return absl::FailedPreconditionError("slimkvd is still running");
  return Launch();
}

absl::Status DaemonProcess::Launch() {
  const std::string config = dir_ + "/slimkvd.conf";
  const std::string ready = dir_ + "/ready";
  const std::string log = dir_ + "/slimkvd.log";
  fs::remove(ready);
  port_ = metrics_port_ = 0;

  pid_ = fork();
  if (pid_ < 0) return absl::InternalError("fork failed");
  if (pid_ == 0) {
    std::freopen(log.c_str(), "w", stderr);
    execl(SLIMKVD_PATH, "slimkvd", ("--config=" + config).c_str(),
          ("--ready_file=" + ready).c_str(), static_cast<char*>(nullptr));
    _exit(127);
  }
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (std::chrono::steady_clock::now() < deadline) {
    if (std::ifstream in(ready); in >> port_ >> metrics_port_) return absl::OkStatus();
    int status;
    if (waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;
      return absl::InternalError(absl::StrCat("slimkvd exited at start-up: ", Log()));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));  // polling a file, not syncing
  }
  return absl::DeadlineExceededError("slimkvd did not become ready within 20 s");
}

std::string DaemonProcess::Log() const {
  std::ifstream in(dir_ + "/slimkvd.log");
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

void DaemonProcess::Kill() {
  if (pid_ < 0) return;
  kill(pid_, SIGKILL);
  int status = 0;
  waitpid(pid_, &status, 0);
  pid_ = -1;
}

DaemonProcess::~DaemonProcess() {
  Stop();
  std::error_code ec;
  fs::remove_all(dir_, ec);
}

int DaemonProcess::Stop() {
  if (pid_ < 0) return 0;
  kill(pid_, SIGTERM);
  int status = 0;
  for (int i = 0; i < 500; ++i) {  // 10 s
    if (waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;
      return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  Kill();
  return -1;
}

std::unique_ptr<client::Client> DaemonProcess::NewClient(client::ClientOptions options) const {
  return client::Client::Connect(target(), options);
}

std::string TokenSha256(const std::string& token) {
  unsigned char d[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(token.data()), token.size(), d);
  return absl::BytesToHexString(absl::string_view(reinterpret_cast<char*>(d), sizeof(d)));
}

std::string TenantToken(const std::string& id) { return id + "-secret"; }

std::string TenantBlock(const std::string& id, const std::string& extra) {
  return absl::StrCat("tenants { id: \"", id, "\" token_sha256: \"", TokenSha256(TenantToken(id)),
                      "\" ", extra, " }\n");
}

absl::StatusOr<std::string> ScrapeMetrics(int port) {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    close(fd);
    return absl::UnavailableError("metrics: connect failed");
  }
  const std::string req = "GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n";
  if (write(fd, req.data(), req.size()) != ssize_t(req.size())) {
    close(fd);
    return absl::UnavailableError("metrics: write failed");
  }
  std::string body;
  char buf[65536];
  for (ssize_t n; (n = read(fd, buf, sizeof(buf))) > 0;) body.append(buf, n);
  close(fd);
  const size_t header_end = body.find("\r\n\r\n");
  if (header_end == std::string::npos) return absl::UnavailableError("metrics: no HTTP body");
  return body.substr(header_end + 4);
}

double MetricValue(const std::string& scrape, const std::string& series) {
  for (absl::string_view line : absl::StrSplit(scrape, '\n')) {
    if (absl::StartsWith(line, series) && line.size() > series.size() && line[series.size()] == ' ') {
      return std::stod(std::string(line.substr(series.size() + 1)));
    }
  }
  return -1;
}

}  // namespace slimkv::testing
