// slimkvd: the SlimKV cache daemon. Flags only here; everything else comes from the config.
#include <signal.h>

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

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage("slimkvd [--config FILE] [--listen HOST:PORT] ...");
  absl::ParseCommandLine(argc, argv);

  // Block the stop signals in every thread; one thread waits for them below.
  sigset_t stop;
  sigemptyset(&stop);
  sigaddset(&stop, SIGINT);
  sigaddset(&stop, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop, nullptr);

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
    int sig = 0;
    sigwait(&stop, &sig);
    slimkv::LogInfo("slimkvd: signal ", sig, ", shutting down");
    (*daemon)->Shutdown();
  });
  (*daemon)->Wait();
  waiter.join();
  return 0;
}
