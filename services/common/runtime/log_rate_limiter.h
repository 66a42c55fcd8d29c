#pragma once
// The rate limit on repeated log lines; logging.cpp writes every line through it. Kept out of
// logging.h, which nearly every file includes.

#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "absl/time/time.h"
#include "services/common/runtime/logging.h"

namespace padlock::runtime {

// Repeated lines are rate-limited: per message (gRPC's and protobuf's own lines: per source file
// and line), at most `lines_per_second` lines in each one-second window are written; the rest are
// counted, and when the window has passed one line reports them:
//   {"level":"warn",…,"msg":"suppressed similar lines","suppressed_msg":"enqueue batch failed",
//    "suppressed_level":"warn","suppressed":5210,"window_seconds":1}
// The report is written before the next line of any message once the window ended, and by
// FlushSuppressedLogs (which the runner calls at shutdown). 0 = no limit. Default 10.
void SetLogRateLimit(int lines_per_second);
// Writes the pending "suppressed similar lines" reports now.
void FlushSuppressedLogs();

// The rate limiter behind Log, with the time passed in (so that tests need no clock). Not
// thread-safe: the logger calls it under its lock.
class LogRateLimiter {
 public:
  struct Suppressed {
    std::string key;
    LogLevel level;
    int64_t count;
  };
  // At most `max_keys` messages are tracked; lines of further messages are never suppressed.
  explicit LogRateLimiter(int lines_per_second, size_t max_keys = 4096);
  // Whether a line with this key may be written at `now`. Appends to `reports` every key whose
  // window ended with lines suppressed (write those reports first).
  bool Admit(std::string_view key, LogLevel level, absl::Time now,
             std::vector<Suppressed>* reports);
  // Appends every pending count (windows ended or not) and clears them.
  void Flush(std::vector<Suppressed>* reports);

 private:
  struct Window {
    absl::Time start;
    int written = 0;
    int64_t suppressed = 0;
    LogLevel level = LogLevel::kInfo;
  };
  void CollectEnded(absl::Time now, std::vector<Suppressed>* reports);

  int lines_per_second_;
  size_t max_keys_;
  absl::Time next_scan_ = absl::InfinitePast();
  std::map<std::string, Window, std::less<>> windows_;
};

}  // namespace padlock::runtime
