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
#include "services/common/runtime/config.h"
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

TEST(Logging, EscapesQuotesBackslashesAndControlCharacters) {
  std::string out;
  AppendJsonString(out, std::string("a\"b\\c\nd\re\tf\bg\fh\x01i\x1fj\x7fk", 21));
  EXPECT_EQ(out, "\"a\\\"b\\\\c\\nd\\re\\tf\\bg\\fh\\u0001i\\u001fj\\u007fk\"");

  const std::string tricky = std::string("quote\" newline\n nul\0 end", 24);
  const std::string line =
      FormatLogLine(absl::UnixEpoch(), LogLevel::kInfo, "svc", tricky, {{"field\"key", tricky}});
  ASSERT_EQ(line.find('\n'), line.size() - 1) << "raw newline inside the line: " << line;
  const auto parsed = ParseJson(std::string_view(line).substr(0, line.size() - 1));
  EXPECT_EQ(parsed.at("msg"), tricky);
  EXPECT_EQ(parsed.at("field\"key"), tricky);
}

TEST(Logging, KeepsValidUtf8AndReplacesInvalidBytes) {
  std::string out;
  AppendJsonString(out, "h\xC3\xA9llo \xE2\x82\xAC \xF0\x9F\x94\x92");  // é € 🔒
  EXPECT_EQ(out, "\"h\xC3\xA9llo \xE2\x82\xAC \xF0\x9F\x94\x92\"");
  out.clear();
  AppendJsonString(out, "a\xFF" "b\xC3" "c\xED\xA0\x80");  // stray, cut, surrogate
  EXPECT_EQ(out, "\"a\xEF\xBF\xBD" "b\xEF\xBF\xBD" "c\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD\"");
  EXPECT_EQ(ParseJson(FormatLogLine(absl::UnixEpoch(), LogLevel::kInfo, "s", "\xFF\xFE", {})).at("msg"),
            "\xEF\xBF\xBD\xEF\xBF\xBD");
}

TEST(Logging, CutsVeryLongValues) {
  std::string out;
  AppendJsonString(out, std::string(10000, 'x'));
  EXPECT_LT(out.size(), 4200u);
  EXPECT_THAT(out, HasSubstr("(truncated)"));
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
