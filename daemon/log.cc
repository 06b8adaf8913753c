#include "daemon/log.h"

#include <unistd.h>

#include <mutex>

#include "absl/container/flat_hash_map.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace slimkv {

void LogLine(LogLevel level, const std::string& message) {
  const char* tag = level == LogLevel::kInfo ? "I" : level == LogLevel::kWarning ? "W" : "E";
  const std::string line = absl::StrCat(
      tag, absl::FormatTime(" %Y-%m-%dT%H:%M:%E3SZ ", absl::Now(), absl::UTCTimeZone()),
      message, "\n");
  [[maybe_unused]] ssize_t n = ::write(STDERR_FILENO, line.data(), line.size());
}

void LogWarningOncePerMinute(const std::string& key, const std::string& message) {
  static std::mutex mu;
  static absl::flat_hash_map<std::string, absl::Time>* last =
      new absl::flat_hash_map<std::string, absl::Time>();  // never destroyed: used at exit
  const absl::Time now = absl::Now();
  {
    std::lock_guard<std::mutex> lock(mu);
    auto [it, inserted] = last->try_emplace(key, now);
    if (!inserted) {
      if (now - it->second < absl::Minutes(1)) return;
      it->second = now;
    }
  }
  LogLine(LogLevel::kWarning, message);
}

}  // namespace slimkv
