#pragma once
// Structured logs: one JSON object per line on stderr,
//   {"ts":"2024-05-01T12:00:00.123Z","level":"info","service":"gateway","msg":"...",...fields}
// Strings are JSON-escaped by json_string.h (quotes, backslashes, control characters; invalid
// UTF-8 becomes U+FFFD), each line is written with one write(2), so concurrent lines never
// interleave (lines up to PIPE_BUF bytes are atomic on pipes too; single values are cut at 4 KiB).
//
// What never goes into a log: ciphertext, keys, tokens, signatures; user ids only through
// HashUserId. All functions are thread-safe.

#include <concepts>
#include <cstdint>
#include <functional>
#include <initializer_list>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace padlock::runtime {

class Config;

enum class LogLevel { kDebug = 0, kInfo = 1, kWarn = 2, kError = 3 };

// "debug", "info", "warn", "error".
std::string_view LogLevelName(LogLevel level);

// One key/value pair of a log line. The value is formatted when the field is built; keys must be
// plain identifiers (they are escaped anyway). Build fields inline in the Log call:
//   LogWarn("redis call failed", {{"op", "XADD"}, {"attempt", 3}, {"error", status}});
class LogField {
 public:
  LogField(std::string_view key, std::string_view value);
  LogField(std::string_view key, const char* value);
  LogField(std::string_view key, const std::string& value);
#ifndef ABSL_USES_STD_STRING_VIEW
  // Debian's absl::string_view is its own type (see absl_compat.h), e.g. Status::message().
  LogField(std::string_view key, absl::string_view value);
#endif
  LogField(std::string_view key, bool value);
  LogField(std::string_view key, double value);
  template <std::integral T>
  LogField(std::string_view key, T value) : key_(key), json_value_(std::to_string(value)) {}
  // The status as "CODE: message" ("OK" when ok).
  LogField(std::string_view key, const absl::Status& status);
  // Seconds as a number, e.g. 0.25.
  LogField(std::string_view key, absl::Duration value);

  std::string_view key() const { return key_; }
  // The value as a JSON token (a quoted string, number or true/false).
  const std::string& json_value() const { return json_value_; }

 private:
  std::string_view key_;
  std::string json_value_;
};

// Sets the service name and the minimum level. Call once, early in main(); before it the service
// name is the program name and the level is info. Also routes gRPC's own log output (gpr_log)
// into this format, so stderr stays one JSON object per line.
void InitLogging(std::string service_name, LogLevel min_level);
// InitLogging with PADLOCK_LOG_LEVEL (debug|info|warn|error, default info) and
// PADLOCK_LOG_USER_ID_SALT (optional secret mixed into HashUserId; set the same value on every
// service so hashes correlate). Errors are recorded in `config`.
void InitLoggingFromConfig(Config& config, std::string service_name);
// Parses PADLOCK_LOG_LEVEL only.
LogLevel LogLevelFromConfig(Config& config);

void Log(LogLevel level, std::string_view msg, std::initializer_list<LogField> fields = {});
void LogDebug(std::string_view msg, std::initializer_list<LogField> fields = {});
void LogInfo(std::string_view msg, std::initializer_list<LogField> fields = {});
void LogWarn(std::string_view msg, std::initializer_list<LogField> fields = {});
void LogError(std::string_view msg, std::initializer_list<LogField> fields = {});
// True when a line at `level` would be written (to skip building expensive fields).
bool LogEnabled(LogLevel level);

// A short stable pseudonym for a user id: the first 16 hex digits of
// SHA-256("padlock-log-user-id-v1" 0x00 salt 0x00 user_id). The same on every service that shares
// the salt. Without a salt, a phone number can be recovered by trying all numbers: set one in
// production.
std::string HashUserId(std::string_view user_id);

// The complete line (with trailing '\n') that a Log call writes. Exposed for tests and tools.
std::string FormatLogLine(absl::Time time, LogLevel level, std::string_view service,
                          std::string_view msg, std::initializer_list<LogField> fields);

// Test hook: while set, lines go to `sink` instead of stderr. Pass nullptr to restore.
void SetLogSinkForTesting(std::function<void(std::string_view line)> sink);

}  // namespace padlock::runtime
