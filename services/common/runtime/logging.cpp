#include "services/common/runtime/logging.h"

#include <errno.h>
#include <google/protobuf/stubs/logging.h>
#include <grpc/support/log.h>
#include <openssl/evp.h>
#include <unistd.h>

#include <atomic>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <mutex>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "services/common/runtime/config.h"
#include "services/common/runtime/json_string.h"
#include "services/common/runtime/log_rate_limiter.h"

namespace padlock::runtime {
namespace {

// A single value longer than this is cut, so that one line stays one write.
constexpr size_t kMaxValueBytes = 4096;

// std::mutex rather than absl::Mutex: see executor.h (TSan cannot see Debian's absl::Mutex).
struct LoggerState {
  std::mutex mu;
  std::string service ABSL_GUARDED_BY(mu) = program_invocation_short_name;
  std::string user_id_salt ABSL_GUARDED_BY(mu);
  std::function<void(std::string_view)> sink ABSL_GUARDED_BY(mu);
};

// Never destroyed: threads may log while static destructors run.
LoggerState& State() {
  static LoggerState* state = new LoggerState;
  return *state;
}

std::atomic<int> g_min_level{static_cast<int>(LogLevel::kInfo)};

constexpr int kDefaultLinesPerSecond = 10;
constexpr absl::Duration kWindow = absl::Seconds(1);

// Separate from LoggerState's lock: the sink may be slow, the limiter must not wait for it.
struct LimiterState {
  std::mutex mu;
  LogRateLimiter limiter ABSL_GUARDED_BY(mu){kDefaultLinesPerSecond};
};

LimiterState& Limiter() {
  static LimiterState* state = new LimiterState;  // never destroyed, as State()
  return *state;
}

// A log value as a quoted JSON string, cut at kMaxValueBytes (a UTF-8 sequence cut there becomes
// U+FFFD like any other invalid byte).
void AppendLogString(std::string& out, std::string_view value) {
  out.push_back('"');
  AppendJsonEscaped(out, value.substr(0, kMaxValueBytes));
  if (value.size() > kMaxValueBytes) out.append("...(truncated)");
  out.push_back('"');
}

std::string FormatTimestamp(absl::Time time) {
  // RFC 3339, UTC, milliseconds: 2024-05-01T12:00:00.123Z
  return absl::FormatTime("%Y-%m-%d%ET%H:%M:%E3SZ", time, absl::UTCTimeZone());
}

void WriteLine(std::string_view line) {
  {
    LoggerState& state = State();
    std::lock_guard<std::mutex> lock(state.mu);
    if (state.sink) {
      state.sink(line);
      return;
    }
  }
  // One write per line; loop only for the rare partial write (a full pipe, a signal).
  const char* data = line.data();
  size_t left = line.size();
  while (left > 0) {
    ssize_t n = ::write(STDERR_FILENO, data, left);
    if (n < 0) {
      if (errno == EINTR) continue;
      return;  // nowhere left to report a failing stderr
    }
    data += n;
    left -= static_cast<size_t>(n);
  }
}

std::string CurrentService() {
  LoggerState& state = State();
  std::lock_guard<std::mutex> lock(state.mu);
  return state.service;
}

void WriteSuppressedReports(absl::Time now, const std::string& service,
                            const std::vector<LogRateLimiter::Suppressed>& reports) {
  for (const LogRateLimiter::Suppressed& report : reports) {
    WriteLine(FormatLogLine(now, report.level, service, "suppressed similar lines",
                            {{"suppressed_msg", report.key},
                             {"suppressed_level", LogLevelName(report.level)},
                             {"suppressed", report.count},
                             {"window_seconds", absl::ToInt64Seconds(kWindow)}}));
  }
}

// Writes one line unless its key is over the rate limit; writes due reports first.
void Emit(LogLevel level, std::string_view key, std::string_view msg,
          std::initializer_list<LogField> fields) {
  const absl::Time now = absl::Now();
  std::vector<LogRateLimiter::Suppressed> reports;
  bool admitted;
  {
    LimiterState& limiter = Limiter();
    std::lock_guard<std::mutex> lock(limiter.mu);
    admitted = limiter.limiter.Admit(key, level, now, &reports);
  }
  const std::string service = CurrentService();
  WriteSuppressedReports(now, service, reports);
  if (admitted) WriteLine(FormatLogLine(now, level, service, msg, fields));
}

// gRPC's own log lines (filtered by GRPC_VERBOSITY, default ERROR) in our format, limited per
// source line (their text varies, e.g. with peer addresses).
void GprLogToJson(gpr_log_func_args* args) {
  LogLevel level = LogLevel::kError;
  if (args->severity == GPR_LOG_SEVERITY_DEBUG) level = LogLevel::kDebug;
  if (args->severity == GPR_LOG_SEVERITY_INFO) level = LogLevel::kInfo;
  if (!LogEnabled(level)) return;
  const char* file = args->file != nullptr ? args->file : "";
  Emit(level, absl::StrCat("grpc:", file, ":", args->line),
       args->message != nullptr ? args->message : "",
       {{"source", "grpc"}, {"file", file}, {"line", args->line}});
}

// protobuf's own log lines — e.g. "String field … contains invalid UTF-8 data when parsing a
// protocol buffer", one per bad request from any client — which protobuf would otherwise print
// as plain text on stderr.
void ProtobufLogToJson(google::protobuf::LogLevel pb_level, const char* filename, int line,
                       const std::string& message) {
  LogLevel level = LogLevel::kError;
  if (pb_level == google::protobuf::LOGLEVEL_INFO) level = LogLevel::kInfo;
  if (pb_level == google::protobuf::LOGLEVEL_WARNING) level = LogLevel::kWarn;
  if (!LogEnabled(level)) return;
  const char* file = filename != nullptr ? filename : "";
  Emit(level, absl::StrCat("protobuf:", file, ":", line), message,
       {{"source", "protobuf"}, {"file", file}, {"line", line}});
}

}  // namespace

std::string_view LogLevelName(LogLevel level) {
  switch (level) {
    case LogLevel::kDebug:
      return "debug";
    case LogLevel::kInfo:
      return "info";
    case LogLevel::kWarn:
      return "warn";
    case LogLevel::kError:
      return "error";
  }
  return "error";
}

LogField::LogField(std::string_view key, std::string_view value) : key_(key) {
  AppendLogString(json_value_, value);
}
LogField::LogField(std::string_view key, const char* value)
    : LogField(key, std::string_view(value != nullptr ? value : "")) {}
LogField::LogField(std::string_view key, const std::string& value)
    : LogField(key, std::string_view(value)) {}
#ifndef ABSL_USES_STD_STRING_VIEW
LogField::LogField(std::string_view key, absl::string_view value)
    : LogField(key, std::string_view(value.data(), value.size())) {}
#endif
LogField::LogField(std::string_view key, bool value)
    : key_(key), json_value_(value ? "true" : "false") {}
LogField::LogField(std::string_view key, double value) : key_(key) {
  if (std::isfinite(value)) {
    char buf[32];
    std::snprintf(buf, sizeof(buf), "%.17g", value);
    json_value_ = buf;
  } else {
    AppendLogString(json_value_, std::isnan(value) ? "NaN" : (value > 0 ? "+Inf" : "-Inf"));
  }
}
LogField::LogField(std::string_view key, const absl::Status& status)
    : LogField(key, status.ok() ? std::string("OK")
                                : absl::StrCat(absl::StatusCodeToString(status.code()), ": ",
                                               status.message())) {}
LogField::LogField(std::string_view key, absl::Duration value)
    : LogField(key, absl::ToDoubleSeconds(value)) {}

std::string FormatLogLine(absl::Time time, LogLevel level, std::string_view service,
                          std::string_view msg, std::initializer_list<LogField> fields) {
  std::string line;
  line.reserve(96 + msg.size());
  line.append("{\"ts\":\"");
  line.append(FormatTimestamp(time));
  line.append("\",\"level\":\"");
  line.append(LogLevelName(level));
  line.append("\",\"service\":");
  AppendLogString(line, service);
  line.append(",\"msg\":");
  AppendLogString(line, msg);
  for (const LogField& field : fields) {
    line.push_back(',');
    AppendLogString(line, field.key());
    line.push_back(':');
    line.append(field.json_value());
  }
  line.append("}\n");
  return line;
}

void InitLogging(std::string service_name, LogLevel min_level) {
  {
    LoggerState& state = State();
    std::lock_guard<std::mutex> lock(state.mu);
    state.service = std::move(service_name);
  }
  g_min_level.store(static_cast<int>(min_level), std::memory_order_relaxed);
  gpr_set_log_function(&GprLogToJson);
  google::protobuf::SetLogHandler(&ProtobufLogToJson);
}

void SetLogRateLimit(int lines_per_second) {
  LimiterState& limiter = Limiter();
  std::lock_guard<std::mutex> lock(limiter.mu);
  limiter.limiter = LogRateLimiter(lines_per_second);
}

void FlushSuppressedLogs() {
  std::vector<LogRateLimiter::Suppressed> reports;
  {
    LimiterState& limiter = Limiter();
    std::lock_guard<std::mutex> lock(limiter.mu);
    limiter.limiter.Flush(&reports);
  }
  WriteSuppressedReports(absl::Now(), CurrentService(), reports);
}

LogRateLimiter::LogRateLimiter(int lines_per_second, size_t max_keys)
    : lines_per_second_(lines_per_second), max_keys_(max_keys) {}

bool LogRateLimiter::Admit(std::string_view key, LogLevel level, absl::Time now,
                           std::vector<Suppressed>* reports) {
  if (lines_per_second_ <= 0) return true;
  CollectEnded(now, reports);
  auto it = windows_.find(key);
  if (it == windows_.end()) {
    // Bounded memory: beyond max_keys distinct messages, lines pass unlimited.
    if (windows_.size() >= max_keys_) return true;
    it = windows_.emplace(std::string(key), Window{now}).first;
  }
  Window& window = it->second;
  if (now - window.start >= kWindow) {
    if (window.suppressed > 0) reports->push_back({it->first, window.level, window.suppressed});
    window = Window{now};
  }
  window.level = level;
  if (window.written < lines_per_second_) {
    ++window.written;
    return true;
  }
  ++window.suppressed;
  return false;
}

void LogRateLimiter::CollectEnded(absl::Time now, std::vector<Suppressed>* reports) {
  // At most one scan per window: the map is small, but Log is called often.
  if (now < next_scan_) return;
  next_scan_ = now + kWindow;
  for (auto it = windows_.begin(); it != windows_.end();) {
    Window& window = it->second;
    const absl::Duration age = now - window.start;
    if (age >= kWindow && window.suppressed > 0) {
      reports->push_back({it->first, window.level, window.suppressed});
      window.suppressed = 0;
    }
    // Forget quiet messages, so that the map holds only recent ones.
    if (age >= 60 * kWindow && window.suppressed == 0) {
      it = windows_.erase(it);
    } else {
      ++it;
    }
  }
}

void LogRateLimiter::Flush(std::vector<Suppressed>* reports) {
  for (auto& [key, window] : windows_) {
    if (window.suppressed > 0) reports->push_back({key, window.level, window.suppressed});
    window.suppressed = 0;
  }
}

LogLevel LogLevelFromConfig(Config& config) {
  const std::string level =
      config.OneOf("PADLOCK_LOG_LEVEL", "info", {"debug", "info", "warn", "error"});
  if (level == "debug") return LogLevel::kDebug;
  if (level == "warn") return LogLevel::kWarn;
  if (level == "error") return LogLevel::kError;
  return LogLevel::kInfo;
}

void InitLoggingFromConfig(Config& config, std::string service_name) {
  const LogLevel level = LogLevelFromConfig(config);
  std::string salt = config.String("PADLOCK_LOG_USER_ID_SALT", "");
  {
    LoggerState& state = State();
    std::lock_guard<std::mutex> lock(state.mu);
    state.user_id_salt = std::move(salt);
  }
  SetLogRateLimit(static_cast<int>(
      config.Int("PADLOCK_LOG_RATE", kDefaultLinesPerSecond, 0, 1'000'000)));
  InitLogging(std::move(service_name), level);
}

bool LogEnabled(LogLevel level) {
  return static_cast<int>(level) >= g_min_level.load(std::memory_order_relaxed);
}

void Log(LogLevel level, std::string_view msg, std::initializer_list<LogField> fields) {
  if (!LogEnabled(level)) return;
  Emit(level, msg, msg, fields);
}

void LogDebug(std::string_view msg, std::initializer_list<LogField> fields) {
  Log(LogLevel::kDebug, msg, fields);
}
void LogInfo(std::string_view msg, std::initializer_list<LogField> fields) {
  Log(LogLevel::kInfo, msg, fields);
}
void LogWarn(std::string_view msg, std::initializer_list<LogField> fields) {
  Log(LogLevel::kWarn, msg, fields);
}
void LogError(std::string_view msg, std::initializer_list<LogField> fields) {
  Log(LogLevel::kError, msg, fields);
}

std::string HashUserId(std::string_view user_id) {
  std::string input = "padlock-log-user-id-v1";
  input.push_back('\0');
  {
    LoggerState& state = State();
    std::lock_guard<std::mutex> lock(state.mu);
    input.append(state.user_id_salt);
  }
  input.push_back('\0');
  input.append(user_id);
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int digest_len = 0;
  if (EVP_Digest(input.data(), input.size(), digest, &digest_len, EVP_sha256(), nullptr) != 1 ||
      digest_len < 8) {
    return "unhashable";  // OpenSSL without SHA-256 cannot happen on a supported system
  }
  return absl::BytesToHexString(
      absl::string_view(reinterpret_cast<const char*>(digest), 8));
}

void SetLogSinkForTesting(std::function<void(std::string_view line)> sink) {
  LoggerState& state = State();
  std::lock_guard<std::mutex> lock(state.mu);
  state.sink = std::move(sink);
}

}  // namespace padlock::runtime
