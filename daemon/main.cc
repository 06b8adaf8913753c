// slimkvd: the SlimKV cache daemon. Flags only here; everything else comes from the config.
#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <fstream>
#include <iostream>
#include <thread>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "daemon/config.h"
#include "daemon/daemon.h"
#include "daemon/log.h"

ABSL_FLAG(std::string, config, "", "Text-format slimkv.v1.DaemonConfig file; none: defaults");
ABSL_FLAG(std::string, listen, "", "gRPC address; overrides the config's listen");
ABSL_FLAG(std::string, metrics_listen, "", "Metrics address; overrides the config's");
ABSL_FLAG(std::string, data_dir, "", "Data directory; overrides the config's data_dir");
ABSL_FLAG(std::string, ready_file, "",
          "Once serving, write 'PORT METRICS_PORT' to this file (for tests and supervisors)");

namespace {

// The stop signals are turned into a byte on this pipe, read by one thread: a handler rather than
// a blocked mask, because libraries start threads before main (OpenBLAS's pool) and any thread
// may receive the signal.
int stop_pipe[2] = {-1, -1};

void OnStopSignal(int sig) {
  const char byte = static_cast<char>(sig);
  (void)!write(stop_pipe[1], &byte, 1);
}

}  // namespace

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage("slimkvd [--config FILE] [--listen HOST:PORT] ...");
  absl::ParseCommandLine(argc, argv);

  if (pipe(stop_pipe) != 0) {
    slimkv::LogError("cannot create the signal pipe");
    return 1;
  }
  struct sigaction on_stop = {};
  on_stop.sa_handler = OnStopSignal;
  sigemptyset(&on_stop.sa_mask);
  on_stop.sa_flags = SA_RESTART;
  sigaction(SIGINT, &on_stop, nullptr);
  sigaction(SIGTERM, &on_stop, nullptr);

  absl::StatusOr<slimkv::v1::DaemonConfig> config =
      absl::GetFlag(FLAGS_config).empty()
          ? slimkv::daemon::Finalize(slimkv::daemon::DefaultConfig())
          : slimkv::daemon::LoadConfigFile(absl::GetFlag(FLAGS_config));
  if (!config.ok()) {
    slimkv::LogError(config.status().message());
    return 2;
  }
  if (!absl::GetFlag(FLAGS_listen).empty()) config->set_listen(absl::GetFlag(FLAGS_listen));
  if (!absl::GetFlag(FLAGS_metrics_listen).empty()) {
    config->set_metrics_listen(absl::GetFlag(FLAGS_metrics_listen));
  }
  if (!absl::GetFlag(FLAGS_data_dir).empty()) config->set_data_dir(absl::GetFlag(FLAGS_data_dir));
  // Checked again with the flags applied: --listen may have moved plaintext off loopback.
  config = slimkv::daemon::Finalize(*std::move(config));
  if (!config.ok()) {
    slimkv::LogError(config.status().message());
    return 2;
  }

  auto daemon = slimkv::daemon::Daemon::Start(*config);
  if (!daemon.ok()) {
    slimkv::LogError(daemon.status().ToString());
    return 1;
  }
  if (const std::string path = absl::GetFlag(FLAGS_ready_file); !path.empty()) {
    const std::string tmp = path + ".tmp";
    std::ofstream(tmp) << (*daemon)->port() << " " << (*daemon)->metrics_port() << "\n";
    std::rename(tmp.c_str(), path.c_str());
  }

  std::thread waiter([&] {
    char sig = 0;
    while (read(stop_pipe[0], &sig, 1) < 0 && errno == EINTR) {
    }
    slimkv::LogInfo("slimkvd: signal ", int{sig}, ", shutting down");
    (*daemon)->Shutdown();
  });
  (*daemon)->Wait();
  waiter.join();
  return 0;
}
