// DaemonProcess: a real slimkvd started by a test on 127.0.0.1 (free ports, its own temp data
// dir and config), stopped (SIGTERM, then SIGKILL after a bound) when the object goes away.
//
// Thread-safety: external synchronization required.
#pragma once

#include <sys/types.h>

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "clients/cpp/slimkv_client.h"

namespace slimkv::testing {

class DaemonProcess {
 public:
  // Starts slimkvd with `config_text` (text-format DaemonConfig; listen, metrics_listen and
  // data_dir are set by the harness) and waits, at most 20 s, until it serves.
  [[nodiscard]] static absl::StatusOr<std::unique_ptr<DaemonProcess>> Start(
      const std::string& config_text = "");
  ~DaemonProcess();

  int port() const { return port_; }
  int metrics_port() const { return metrics_port_; }
  std::string target() const { return "127.0.0.1:" + std::to_string(port_); }
  const std::string& dir() const { return dir_; }
  std::unique_ptr<client::Client> NewClient(client::ClientOptions options = {}) const;

  // Replaces the config file with `config_text`, the harness's listen, metrics_listen and
  // data_dir appended as at Start (the daemon reads it again on SIGHUP).
  [[nodiscard]] absl::Status WriteConfig(const std::string& config_text) const;
  // Sends `sig` to the daemon.
  void Signal(int sig) const;

  // SIGTERM and wait (bounded); returns the exit status, or -1 if it had to be killed.
  int Stop();
  // SIGKILL: a crash, nothing flushed.
  void Kill();
  // Starts slimkvd again on the same config and data dir (after Stop or Kill), waiting as Start
  // does. The ports change.
  [[nodiscard]] absl::Status Restart();
  // What slimkvd wrote to stderr since it was last started.
  std::string Log() const;

 private:
  DaemonProcess() = default;
  absl::Status Launch();

  pid_t pid_ = -1;
  int port_ = 0;
  int metrics_port_ = 0;
  std::string dir_;
};

// Lower-case hex SHA-256 of a bearer token, as the config holds it.
std::string TokenSha256(const std::string& token);

// A `tenants { ... }` config block for tenant `id`, whose token is TenantToken(id), with the
// text-format fields `extra` inside.
std::string TenantToken(const std::string& id);
std::string TenantBlock(const std::string& id, const std::string& extra = "");

// GET http://127.0.0.1:port/metrics, or the error.
[[nodiscard]] absl::StatusOr<std::string> ScrapeMetrics(int port);

// The value of the sample `series` (name with labels exactly as exposed), or -1 if absent.
double MetricValue(const std::string& scrape, const std::string& series);

}  // namespace slimkv::testing
