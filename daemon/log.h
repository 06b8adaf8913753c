// The project's one logging header: timestamped lines on stderr. Debian 12's Abseil has no
// absl/log; when the project moves to one that does, only this file changes.
//
// Thread-safety: safe to call concurrently (one write(2) per line).
#pragma once

#include <string>

#include "absl/strings/str_cat.h"

namespace slimkv {

enum class LogLevel { kInfo, kWarning, kError };

void LogLine(LogLevel level, const std::string& message);

template <typename... Args>
void LogInfo(const Args&... args) { LogLine(LogLevel::kInfo, absl::StrCat(args...)); }
template <typename... Args>
void LogWarning(const Args&... args) { LogLine(LogLevel::kWarning, absl::StrCat(args...)); }
template <typename... Args>
void LogError(const Args&... args) { LogLine(LogLevel::kError, absl::StrCat(args...)); }

// A warning for failures that may repeat on every request (a broken GPU): logged unless a line
// of the same `key` was logged less than a minute ago, then dropped (the caller counts them in
// a metric).
void LogWarningOncePerMinute(const std::string& key, const std::string& message);

}  // namespace slimkv
