#include "services/common/runtime/logging.h"

#include <fcntl.h>
#include <unistd.h>

#include <fstream>
#include <mutex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include <google/protobuf/stubs/logging.h>
#include "services/common/runtime/config.h"
#include "services/common/runtime/log_rate_limiter.h"
#include "tests/harness/harness.h"
#include "tests/unit/runtime/runtime_test_util.h"

namespace padlock::runtime {
namespace {

using ::testing::HasSubstr;
using ::testing::MatchesRegex;
using ::testing::Not;

// The top-level members of a JSON object line (string values decoded); a failure when the line
// is not valid JSON.
std::map<std::string, std::string> ParseJson(std::string_view line) {
  auto parsed = testing::ParseJsonObject(line);
  EXPECT_TRUE(parsed.has_value()) << "not JSON: " << line;
  return parsed.value_or(std::map<std::string, std::string>{});
}

// Captures log lines for the scope of a test.
class CapturedLog {
 public:
  CapturedLog() {
    SetLogSinkForTesting([this](std::string_view line) {
      std::lock_guard<std::mutex> lock(mu_);
      lines_.emplace_back(line);
    });
  }
  ~CapturedLog() { SetLogSinkForTesting(nullptr); }
  std::vector<std::string> lines() {
    std::lock_guard<std::mutex> lock(mu_);
    return lines_;
  }

 private:
  std::mutex mu_;
  std::vector<std::string> lines_;
};

TEST(Logging, FormatsOneJsonObjectPerLine) {
  const std::string line =
      FormatLogLine(absl::FromUnixMillis(1700000000123), LogLevel::kWarn, "gateway",
                    "redis call failed",
                    {{"op", "XADD"}, {"attempt", 3}, {"ok", false}, {"ratio", 0.5}});
  EXPECT_EQ(line,
            "{\"ts\":\"2023-11-14T22:13:20.123Z\",\"level\":\"warn\",\"service\":\"gateway\","
            "\"msg\":\"redis call failed\",\"op\":\"XADD\",\"attempt\":3,\"ok\":false,"
            "\"ratio\":0.5}\n");
  const auto parsed = ParseJson(line);
  EXPECT_EQ(parsed.at("attempt"), "3");
  EXPECT_EQ(parsed.at("ok"), "false");
  EXPECT_EQ(parsed.at("service"), "gateway");
}

// The escaping itself is tested in json_string_test.cpp; these check that lines use it.
TEST(Logging, EscapesQuotesBackslashesAndControlCharacters) {
  const std::string tricky = std::string("quote\" newline\n nul\0 end", 24);
  const std::string line =
      FormatLogLine(absl::UnixEpoch(), LogLevel::kInfo, "svc", tricky, {{"field\"key", tricky}});
  ASSERT_EQ(line.find('\n'), line.size() - 1) << "raw newline inside the line: " << line;
  const auto parsed = ParseJson(std::string_view(line).substr(0, line.size() - 1));
  EXPECT_EQ(parsed.at("msg"), tricky);
  EXPECT_EQ(parsed.at("field\"key"), tricky);
}

TEST(Logging, KeepsValidUtf8AndReplacesInvalidBytes) {
  const LogField field("k", "h\xC3\xA9llo \xFF");  // é, then a stray byte
  EXPECT_EQ(field.json_value(), "\"h\xC3\xA9llo \xEF\xBF\xBD\"");
  EXPECT_EQ(ParseJson(FormatLogLine(absl::UnixEpoch(), LogLevel::kInfo, "s", "\xFF\xFE", {})).at("msg"),
            "\xEF\xBF\xBD\xEF\xBF\xBD");
}

TEST(Logging, CutsVeryLongValues) {
  const LogField field("k", std::string(10000, 'x'));
  EXPECT_LT(field.json_value().size(), 4200u);
  EXPECT_THAT(field.json_value(), HasSubstr("(truncated)"));
  // A UTF-8 sequence cut at the limit becomes U+FFFD, so the line stays valid JSON.
  const std::string cut = std::string(4095, 'x') + "\xE2\x82\xAC";
  const std::string line = FormatLogLine(absl::UnixEpoch(), LogLevel::kInfo, "s", cut, {});
  EXPECT_EQ(ParseJson(line).at("msg"), std::string(4095, 'x') + "\xEF\xBF\xBD...(truncated)");
}

TEST(Logging, FormatsStatusDurationAndIntegerFields) {
  const std::string line = FormatLogLine(
      absl::UnixEpoch(), LogLevel::kError, "s", "m",
      {{"error", absl::UnavailableError("redis down")},
       {"ok", absl::OkStatus()},
       {"took", absl::Milliseconds(250)},
       {"u64", uint64_t{18446744073709551615u}},
       {"neg", int64_t{-7}},
       {"absl_view", absl::UnavailableError("why").message()}});
  EXPECT_THAT(line, HasSubstr("\"error\":\"UNAVAILABLE: redis down\""));
  EXPECT_THAT(line, HasSubstr("\"ok\":\"OK\""));
  EXPECT_THAT(line, HasSubstr("\"took\":0.25"));
  EXPECT_THAT(line, HasSubstr("\"u64\":18446744073709551615"));
  EXPECT_THAT(line, HasSubstr("\"neg\":-7"));
  EXPECT_THAT(line, HasSubstr("\"absl_view\":\"why\""));
}

TEST(Logging, DropsLinesBelowTheMinimumLevel) {
  CapturedLog log;
  InitLogging("unit", LogLevel::kWarn);
  LogDebug("debug line");
  LogInfo("info line");
  LogWarn("warn line", {{"k", "v"}});
  LogError("error line");
  InitLogging("unit", LogLevel::kInfo);
  const std::vector<std::string> lines = log.lines();
  ASSERT_EQ(lines.size(), 2u);
  EXPECT_THAT(lines[0], HasSubstr("\"level\":\"warn\",\"service\":\"unit\",\"msg\":\"warn line\""));
  EXPECT_THAT(lines[1], HasSubstr("\"level\":\"error\""));
  EXPECT_THAT(lines[0], MatchesRegex("\\{\"ts\":\"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:"
                                     "[0-9]{2}\\.[0-9]{3}Z\".*\\}\n"));
}

TEST(Logging, ReadsLevelFromConfig) {
  Config good({{"PADLOCK_LOG_LEVEL", "debug"}});
  EXPECT_EQ(LogLevelFromConfig(good), LogLevel::kDebug);
  Config bad({{"PADLOCK_LOG_LEVEL", "loud"}});
  EXPECT_EQ(LogLevelFromConfig(bad), LogLevel::kInfo);
  ASSERT_EQ(bad.errors().size(), 1u);
  EXPECT_EQ(bad.errors()[0].variable, "PADLOCK_LOG_LEVEL");
}

// Many threads writing to the real stderr: every line arrives whole.
TEST(Logging, ConcurrentLinesNeverInterleave) {
  padlock::testing::TempDir dir;
  const std::string path = dir.path() + "/stderr.log";
  const int file = ::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
  ASSERT_GE(file, 0);
  const int saved = ::dup(STDERR_FILENO);
  ASSERT_EQ(::dup2(file, STDERR_FILENO), STDERR_FILENO);
  constexpr int kThreads = 8;
  constexpr int kLines = 200;
  SetLogRateLimit(0);  // 1 600 lines of one message: the limiter would keep 10
  {
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t) {
      threads.emplace_back([t] {
        for (int i = 0; i < kLines; ++i) {
          LogInfo("concurrent", {{"thread", t}, {"i", i}, {"pad", std::string(300, 'p')}});
        }
      });
    }
    for (auto& thread : threads) thread.join();
  }
  ::dup2(saved, STDERR_FILENO);
  ::close(saved);
  ::close(file);
  SetLogRateLimit(10);

  std::ifstream in(path);
  std::string line;
  int count = 0;
  while (std::getline(in, line)) {
    const auto parsed = ParseJson(line);
    EXPECT_EQ(parsed.at("msg"), "concurrent");
    ++count;
  }
  EXPECT_EQ(count, kThreads * kLines);
}

absl::Time At(int64_t millis) { return absl::FromUnixMillis(1'700'000'000'000 + millis); }

TEST(LogRateLimiter, WritesTheFirstLinesOfAWindowAndCountsTheRest) {
  LogRateLimiter limiter(3);
  std::vector<LogRateLimiter::Suppressed> reports;
  int written = 0;
  for (int i = 0; i < 100; ++i) {
    if (limiter.Admit("enqueue batch failed", LogLevel::kWarn, At(i), &reports)) ++written;
  }
  EXPECT_EQ(written, 3);
  EXPECT_TRUE(reports.empty());  // the window has not ended yet

  // The next window: the count of the last one is reported, and lines pass again.
  EXPECT_TRUE(limiter.Admit("enqueue batch failed", LogLevel::kWarn, At(1000), &reports));
  ASSERT_EQ(reports.size(), 1u);
  EXPECT_EQ(reports[0].key, "enqueue batch failed");
  EXPECT_EQ(reports[0].level, LogLevel::kWarn);
  EXPECT_EQ(reports[0].count, 97);
}

TEST(LogRateLimiter, LimitsEachMessageOnItsOwn) {
  LogRateLimiter limiter(1);
  std::vector<LogRateLimiter::Suppressed> reports;
  EXPECT_TRUE(limiter.Admit("a", LogLevel::kWarn, At(0), &reports));
  EXPECT_FALSE(limiter.Admit("a", LogLevel::kWarn, At(1), &reports));
  EXPECT_TRUE(limiter.Admit("b", LogLevel::kWarn, At(2), &reports));
  EXPECT_FALSE(limiter.Admit("b", LogLevel::kWarn, At(3), &reports));
}

TEST(LogRateLimiter, ReportsEndedWindowsOnAnyLaterLine) {
  LogRateLimiter limiter(1);
  std::vector<LogRateLimiter::Suppressed> reports;
  limiter.Admit("noisy", LogLevel::kError, At(0), &reports);
  limiter.Admit("noisy", LogLevel::kError, At(1), &reports);
  limiter.Admit("noisy", LogLevel::kError, At(2), &reports);
  // "noisy" falls silent; another message's line after the window carries its report.
  EXPECT_TRUE(limiter.Admit("other", LogLevel::kInfo, At(1500), &reports));
  ASSERT_EQ(reports.size(), 1u);
  EXPECT_EQ(reports[0].key, "noisy");
  EXPECT_EQ(reports[0].count, 2);
  reports.clear();
  // Reported once only: the next report is the one line of "other" cut at 1600.
  EXPECT_FALSE(limiter.Admit("other", LogLevel::kInfo, At(1600), &reports));
  EXPECT_TRUE(limiter.Admit("noisy", LogLevel::kError, At(2600), &reports));
  ASSERT_EQ(reports.size(), 1u);
  EXPECT_EQ(reports[0].key, "other");
  EXPECT_EQ(reports[0].count, 1);
}

TEST(LogRateLimiter, FlushReportsPendingCountsAtOnce) {
  LogRateLimiter limiter(2);
  std::vector<LogRateLimiter::Suppressed> reports;
  for (int i = 0; i < 5; ++i) limiter.Admit("x", LogLevel::kWarn, At(i), &reports);
  limiter.Flush(&reports);
  ASSERT_EQ(reports.size(), 1u);
  EXPECT_EQ(reports[0].count, 3);
  reports.clear();
  limiter.Flush(&reports);
  EXPECT_TRUE(reports.empty());
}

TEST(LogRateLimiter, ZeroMeansNoLimit) {
  LogRateLimiter limiter(0);
  std::vector<LogRateLimiter::Suppressed> reports;
  for (int i = 0; i < 1000; ++i) EXPECT_TRUE(limiter.Admit("x", LogLevel::kWarn, At(0), &reports));
}

TEST(LogRateLimiter, NeverSuppressesMessagesBeyondItsKeyBound) {
  LogRateLimiter limiter(1, /*max_keys=*/1);
  std::vector<LogRateLimiter::Suppressed> reports;
  EXPECT_TRUE(limiter.Admit("tracked", LogLevel::kWarn, At(0), &reports));
  EXPECT_FALSE(limiter.Admit("tracked", LogLevel::kWarn, At(0), &reports));
  EXPECT_TRUE(limiter.Admit("untracked", LogLevel::kWarn, At(0), &reports));
  EXPECT_TRUE(limiter.Admit("untracked", LogLevel::kWarn, At(0), &reports));
}

// Through Log: the lines over the limit are dropped and one JSON line reports how many.
TEST(Logging, RepeatedLinesAreCutAndCounted) {
  CapturedLog log;
  SetLogRateLimit(5);
  for (int i = 0; i < 50; ++i) LogWarn("enqueue batch failed", {{"i", i}});
  FlushSuppressedLogs();
  const std::vector<std::string> lines = log.lines();
  SetLogRateLimit(10);
  ASSERT_EQ(lines.size(), 6u);
  for (size_t i = 0; i < 5; ++i) EXPECT_EQ(ParseJson(lines[i]).at("msg"), "enqueue batch failed");
  const auto report = ParseJson(lines[5]);
  EXPECT_EQ(report.at("msg"), "suppressed similar lines");
  EXPECT_EQ(report.at("suppressed_msg"), "enqueue batch failed");
  EXPECT_EQ(report.at("suppressed_level"), "warn");
  EXPECT_EQ(report.at("suppressed"), "45");
  EXPECT_EQ(report.at("level"), "warn");
}

// protobuf's own complaint about a string field with invalid UTF-8 (one per bad request from
// any client) arrives as a JSON line, with the client's bytes escaped.
TEST(Logging, ProtobufsOwnLinesAreJson) {
  InitLogging(program_invocation_short_name, LogLevel::kInfo);  // installs protobuf's handler
  CapturedLog log;
  GOOGLE_LOG(ERROR) << "String field 'x' contains invalid UTF-8 data: \xff\xfe ÿþ";
  const std::vector<std::string> lines = log.lines();
  ASSERT_EQ(lines.size(), 1u);
  const auto parsed = ParseJson(lines[0]);
  EXPECT_EQ(parsed.at("source"), "protobuf");
  EXPECT_EQ(parsed.at("level"), "error");
  EXPECT_THAT(parsed.at("msg"), HasSubstr("\xEF\xBF\xBD"));
}

// The JSON checks above are only as good as the parser they use.
TEST(ParseJsonObject, AcceptsValidAndRejectsInvalidJson) {
  const auto ok = testing::ParseJsonObject(
      R"( {"a":"x\u00e9\ud83d\udd12\n","b":[1,-2.5e3,{"c":null}],"d":true} )");
  ASSERT_TRUE(ok.has_value());
  EXPECT_EQ(ok->at("a"), "x\xC3\xA9\xF0\x9F\x94\x92\n");
  EXPECT_EQ(ok->at("b"), R"([1,-2.5e3,{"c":null}])");
  for (const char* bad : {"{\"a\":\"raw\nnewline\"}", "{\"a\":\"unterminated}", "{\"a\":1} x",
                          "{\"a\":01}", "{\"a\":\"\\x\"}", "{\"a\" 1}", "[1]", "{\"a\":\"\\ud800\"}"}) {
    EXPECT_FALSE(testing::ParseJsonObject(bad).has_value()) << bad;
  }
}

TEST(HashUserId, IsShortStableHexAndHidesTheId) {
  const std::string a = HashUserId("+15551234567");
  EXPECT_THAT(a, MatchesRegex("[0-9a-f]{16}"));
  EXPECT_EQ(a, HashUserId("+15551234567"));
  EXPECT_NE(a, HashUserId("+15551234568"));
  EXPECT_THAT(a, Not(HasSubstr("5551234567")));
}

TEST(HashUserId, DependsOnTheConfiguredSalt) {
  const std::string unsalted = HashUserId("alice");
  Config config({{"PADLOCK_LOG_USER_ID_SALT", "s3cret"}});
  InitLoggingFromConfig(config, "unit");
  const std::string salted = HashUserId("alice");
  Config reset({});
  InitLoggingFromConfig(reset, "unit");
  EXPECT_NE(salted, unsalted);
  EXPECT_EQ(HashUserId("alice"), unsalted);
}

}  // namespace
}  // namespace padlock::runtime
