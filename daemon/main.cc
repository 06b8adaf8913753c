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
#include "absl/flags/usage_config.h"
#include "absl/strings/match.h"
#include "cache/store/page_memory.h"
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

// Signals are turned into a byte on this pipe, read by one thread: a handler rather than a
// blocked mask, because libraries start threads before main (OpenBLAS's pool) and any thread
// may receive the signal. SIGINT and SIGTERM stop the daemon; SIGHUP reloads the config file.
int signal_pipe[2] = {-1, -1};

void OnSignal(int sig) {
  const char byte = static_cast<char>(sig);
  (void)!write(signal_pipe[1], &byte, 1);
}

// The config the daemon runs: --config's file (or the embedded defaults), then the flags that
// override it, checked together (--listen may move plaintext off loopback).
absl::StatusOr<slimkv::v1::DaemonConfig> LoadConfig() {
  absl::StatusOr<slimkv::v1::DaemonConfig> config =
      absl::GetFlag(FLAGS_config).empty()
          ? slimkv::daemon::Finalize(slimkv::daemon::DefaultConfig())
          : slimkv::daemon::LoadConfigFile(absl::GetFlag(FLAGS_config));
  if (!config.ok()) return config;
  if (!absl::GetFlag(FLAGS_listen).empty()) config->set_listen(absl::GetFlag(FLAGS_listen));
  if (!absl::GetFlag(FLAGS_metrics_listen).empty()) {
    config->set_metrics_listen(absl::GetFlag(FLAGS_metrics_listen));
  }
  if (!absl::GetFlag(FLAGS_data_dir).empty()) config->set_data_dir(absl::GetFlag(FLAGS_data_dir));
  return slimkv::daemon::Finalize(*std::move(config));
}

}  // namespace

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage("slimkvd [--config FILE] [--listen HOST:PORT] ...");
  // Abseil's --help lists the flags of files named after the program (slimkvd.cc); ours live
  // in daemon/main.cc, so say which files hold them, or --help prints "No flags matched".
  absl::FlagsUsageConfig usage;
  usage.contains_help_flags = [](absl::string_view file) {
    return absl::EndsWith(file, "daemon/main.cc");
  };
  usage.contains_helpshort_flags = usage.contains_help_flags;
  absl::SetFlagsUsageConfig(usage);
  absl::ParseCommandLine(argc, argv);
  slimkv::cache::KeepFreedPageMemory();

  if (pipe(signal_pipe) != 0) {
    slimkv::LogError("cannot create the signal pipe");
    return 1;
  }
  struct sigaction on_signal = {};
  on_signal.sa_handler = OnSignal;
  sigemptyset(&on_signal.sa_mask);
  on_signal.sa_flags = SA_RESTART;
  for (int sig : {SIGINT, SIGTERM, SIGHUP}) sigaction(sig, &on_signal, nullptr);

  const absl::StatusOr<slimkv::v1::DaemonConfig> config = LoadConfig();
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
    for (;;) {
      char sig = 0;
      const ssize_t n = read(signal_pipe[0], &sig, 1);
      if (n < 0 && errno == EINTR) continue;
      if (n == 1 && sig == SIGHUP) {
        if (absl::GetFlag(FLAGS_config).empty()) {
          slimkv::LogWarning("slimkvd: SIGHUP without --config: nothing to reload");
        } else {
          slimkv::LogInfo("slimkvd: SIGHUP, reloading ", absl::GetFlag(FLAGS_config));
          (void)(*daemon)->Reload(LoadConfig());  // logs and counts the outcome itself
        }
        continue;
      }
      slimkv::LogInfo("slimkvd: signal ", int{sig}, ", shutting down");
      (*daemon)->Shutdown();
      return;
    }
  });
  (*daemon)->Wait();
  waiter.join();
  return 0;
}
