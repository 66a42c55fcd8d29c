#include "services/common/runtime/config.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "services/common/runtime/server.h"

namespace padlock::runtime {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

TEST(Config, ParsesValidValues) {
  Config config({{"PADLOCK_S", "hello world"},
                 {"PADLOCK_PORT", "7400"},
                 {"PADLOCK_INT", "-42"},
                 {"PADLOCK_DUR", "500ms"},
                 {"PADLOCK_BOOL", "Yes"},
                 {"PADLOCK_ONE", "cluster"},
                 {"PADLOCK_ADDR", "[::1]:7400"}});
  EXPECT_EQ(config.String("PADLOCK_S", "x"), "hello world");
  EXPECT_EQ(config.Port("PADLOCK_PORT", 1), 7400);
  EXPECT_EQ(config.Int("PADLOCK_INT", 0, -100, 100), -42);
  EXPECT_EQ(config.Duration("PADLOCK_DUR", absl::Seconds(1)), absl::Milliseconds(500));
  EXPECT_TRUE(config.Bool("PADLOCK_BOOL", false));
  EXPECT_EQ(config.OneOf("PADLOCK_ONE", "standalone", {"standalone", "cluster"}), "cluster");
  EXPECT_EQ(config.HostPort("PADLOCK_ADDR", "0.0.0.0:1"), "[::1]:7400");
  EXPECT_TRUE(config.Validate().ok());
  EXPECT_TRUE(config.errors().empty());
}

TEST(Config, ParsesDurationsWithDaysAndCompoundUnits) {
  Config config({{"A", "30d"}, {"B", "720h"}, {"C", "1h30m"}, {"D", "0"}, {"E", "1.5d"}});
  EXPECT_EQ(config.Duration("A", absl::ZeroDuration()), absl::Hours(720));
  EXPECT_EQ(config.Duration("B", absl::ZeroDuration()), absl::Hours(720));
  EXPECT_EQ(config.Duration("C", absl::ZeroDuration()), absl::Minutes(90));
  EXPECT_EQ(config.Duration("D", absl::Seconds(3)), absl::ZeroDuration());
  EXPECT_EQ(config.Duration("E", absl::ZeroDuration()), absl::Hours(36));
  EXPECT_TRUE(config.Validate().ok()) << config.Validate();
}

TEST(Config, ParsesEveryBooleanSpelling) {
  Config config({{"T1", "true"}, {"T2", "1"}, {"T3", "YES"}, {"T4", "on"},
                 {"F1", "False"}, {"F2", "0"}, {"F3", "no"}, {"F4", "off"}});
  for (const char* name : {"T1", "T2", "T3", "T4"}) EXPECT_TRUE(config.Bool(name, false)) << name;
  for (const char* name : {"F1", "F2", "F3", "F4"}) EXPECT_FALSE(config.Bool(name, true)) << name;
  EXPECT_TRUE(config.Validate().ok());
}

TEST(Config, ReturnsDefaultsWhenUnsetOrEmpty) {
  Config config({{"PADLOCK_EMPTY", ""}});
  EXPECT_EQ(config.String("PADLOCK_EMPTY", "dflt"), "dflt");
  EXPECT_EQ(config.String("PADLOCK_UNSET", "dflt"), "dflt");
  EXPECT_EQ(config.Port("PADLOCK_UNSET", 9400), 9400);
  EXPECT_EQ(config.Int("PADLOCK_EMPTY", 5, 1, 10), 5);
  EXPECT_EQ(config.Duration("PADLOCK_UNSET", absl::Seconds(20)), absl::Seconds(20));
  EXPECT_TRUE(config.Bool("PADLOCK_UNSET", true));
  EXPECT_EQ(config.OneOf("PADLOCK_UNSET", "info", {"info", "debug"}), "info");
  EXPECT_EQ(config.HostPort("PADLOCK_UNSET", "0.0.0.0:7400"), "0.0.0.0:7400");
  EXPECT_FALSE(config.Has("PADLOCK_EMPTY"));
  EXPECT_TRUE(config.Validate().ok());
}

TEST(Config, CollectsEveryBadValueWithTheVariableName) {
  Config config({{"PADLOCK_GRPC_PORT", "abc"},
                 {"PADLOCK_METRICS_PORT", "70000"},
                 {"PADLOCK_INT", "12x"},
                 {"PADLOCK_RANGE", "500"},
                 {"PADLOCK_DUR", "30"},
                 {"PADLOCK_NEG", "-5s"},
                 {"PADLOCK_BOOL", "maybe"},
                 {"PADLOCK_LEVEL", "verbose"},
                 {"PADLOCK_ADDR", "7400"},
                 {"PADLOCK_SHORT", "50ms"}});
  EXPECT_EQ(config.Port("PADLOCK_GRPC_PORT", 7400), 7400);  // the default on error
  config.Port("PADLOCK_METRICS_PORT", 9400);
  config.Int("PADLOCK_INT", 1, 0, 10);
  config.Int("PADLOCK_RANGE", 1, 0, 100);
  config.Duration("PADLOCK_DUR", absl::Seconds(1));
  config.Duration("PADLOCK_NEG", absl::Seconds(1));
  EXPECT_TRUE(config.Bool("PADLOCK_BOOL", true));
  config.OneOf("PADLOCK_LEVEL", "info", {"debug", "info"});
  config.HostPort("PADLOCK_ADDR", "0.0.0.0:1");
  config.Duration("PADLOCK_SHORT", absl::Seconds(1), absl::Seconds(1), absl::Minutes(1));

  std::vector<std::string> described;
  for (const Config::Error& e : config.errors()) described.push_back(e.variable + ": " + e.message);
  EXPECT_THAT(
      described,
      ElementsAre("PADLOCK_GRPC_PORT: not a port number: 'abc'",
                  "PADLOCK_METRICS_PORT: not a port number: '70000'",
                  "PADLOCK_INT: not an integer: '12x'",
                  "PADLOCK_RANGE: out of range [0, 100]: '500'",
                  "PADLOCK_DUR: not a duration (e.g. 30s, 500ms, 720h, 30d): '30'",
                  "PADLOCK_NEG: not a duration (e.g. 30s, 500ms, 720h, 30d): '-5s'",
                  "PADLOCK_BOOL: not a boolean (true/false/1/0/yes/no): 'maybe'",
                  "PADLOCK_LEVEL: must be one of debug, info: 'verbose'",
                  "PADLOCK_ADDR: not host:port (e.g. 0.0.0.0:7400, [::]:7400): '7400'",
                  "PADLOCK_SHORT: out of range [1s, 1m]: '50ms'"));
  const absl::Status status = config.Validate();
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  for (const char* name : {"PADLOCK_GRPC_PORT", "PADLOCK_METRICS_PORT", "PADLOCK_INT",
                           "PADLOCK_RANGE", "PADLOCK_DUR", "PADLOCK_NEG", "PADLOCK_BOOL",
                           "PADLOCK_LEVEL", "PADLOCK_ADDR", "PADLOCK_SHORT"}) {
    EXPECT_THAT(std::string(status.message()), HasSubstr(name));
  }
}

TEST(Config, ReportsAVariableReadTwiceOnce) {
  Config config({{"PADLOCK_GRPC_PORT", "abc"}});
  config.Port("PADLOCK_GRPC_PORT", 1);
  config.Port("PADLOCK_GRPC_PORT", 1);
  EXPECT_EQ(config.errors().size(), 1u);
}

TEST(Config, TruncatesLongValuesInErrors) {
  Config config({{"PADLOCK_PORT", std::string(500, '9')}});
  config.Port("PADLOCK_PORT", 1);
  ASSERT_EQ(config.errors().size(), 1u);
  EXPECT_LT(config.errors()[0].message.size(), 100u);
  EXPECT_THAT(config.errors()[0].message, HasSubstr("...'"));
}

TEST(Config, ListsPadlockVariablesNobodyRead) {
  Config config({{"PADLOCK_GRPC_PORT", "1"}, {"PADLOCK_GPRC_PORT", "2"}, {"HOME", "/root"}});
  config.Port("PADLOCK_GRPC_PORT", 7400);
  EXPECT_THAT(config.UnusedVariables(), ElementsAre("PADLOCK_GPRC_PORT"));
}

TEST(Config, FromEnvironmentSnapshotsTheProcessEnvironment) {
  ::setenv("PADLOCK_CONFIG_TEST_VALUE", "17", 1);
  Config config = Config::FromEnvironment();
  ::unsetenv("PADLOCK_CONFIG_TEST_VALUE");
  EXPECT_EQ(config.Int("PADLOCK_CONFIG_TEST_VALUE", 0, 0, 100), 17);
}

TEST(ExitIfInvalid, ExitsWithStatusTwoAndNamesEachVariable) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  Config config({{"PADLOCK_GRPC_PORT", "abc"}, {"PADLOCK_LOG_LEVEL", "loud"}});
  config.Port("PADLOCK_GRPC_PORT", 7400);
  config.OneOf("PADLOCK_LOG_LEVEL", "info", {"info"});
  EXPECT_EXIT(ExitIfInvalid(config), ::testing::ExitedWithCode(2),
              "\\{.*\"level\":\"error\".*\"msg\":\"invalid configuration\",\"variable\":"
              "\"PADLOCK_GRPC_PORT\",\"error\":\"not a port number: 'abc'\"\\}\n"
              ".*\"variable\":\"PADLOCK_LOG_LEVEL\"");
}

TEST(ExitIfInvalid, ReturnsWhenValid) {
  Config config({{"PADLOCK_GRPC_PORT", "1"}});
  config.Port("PADLOCK_GRPC_PORT", 7400);
  ExitIfInvalid(config);  // returns
  SUCCEED();
}

TEST(ServerOptionsFromConfig, UsesServiceDefaults) {
  Config config({});
  ServerOptions options = ServerOptionsFromConfig(config, "presence", 7410, 9410);
  EXPECT_EQ(options.service_name, "presence");
  EXPECT_EQ(options.listen_address, "0.0.0.0:7410");
  EXPECT_EQ(options.metrics_host, "0.0.0.0");
  EXPECT_EQ(options.metrics_port, 9410);
  EXPECT_EQ(options.grace_period, absl::Seconds(20));
  EXPECT_EQ(options.max_connection_age, absl::InfiniteDuration());
  EXPECT_EQ(options.readiness_poll_interval, absl::Milliseconds(100));
  EXPECT_EQ(options.readiness_check_timeout, absl::Milliseconds(150));
  EXPECT_TRUE(config.Validate().ok());
}

TEST(ServerOptionsFromConfig, ReadsEveryVariable) {
  Config config({{"PADLOCK_GRPC_PORT", "1234"},
                 {"PADLOCK_METRICS_HOST", "127.0.0.1"},
                 {"PADLOCK_METRICS_PORT", "0"},
                 {"PADLOCK_SHUTDOWN_GRACE", "5s"},
                 {"PADLOCK_MAX_CONNECTION_AGE", "5m"},
                 {"PADLOCK_READINESS_INTERVAL", "250ms"},
                 {"PADLOCK_READINESS_CHECK_TIMEOUT", "400ms"}});
  ServerOptions options = ServerOptionsFromConfig(config, "gateway", 7400, 9400);
  EXPECT_EQ(options.listen_address, "0.0.0.0:1234");
  EXPECT_EQ(options.metrics_host, "127.0.0.1");
  EXPECT_EQ(options.metrics_port, 0);
  EXPECT_EQ(options.grace_period, absl::Seconds(5));
  EXPECT_EQ(options.max_connection_age, absl::Minutes(5));
  EXPECT_EQ(options.readiness_poll_interval, absl::Milliseconds(250));
  EXPECT_EQ(options.readiness_check_timeout, absl::Milliseconds(400));
  EXPECT_TRUE(config.Validate().ok()) << config.Validate();
  EXPECT_TRUE(config.UnusedVariables().empty());
}

TEST(ServerOptionsFromConfig, AddressOverridesPortAndZeroAgeMeansNoLimit) {
  Config config({{"PADLOCK_GRPC_ADDRESS", "127.0.0.1:0"}, {"PADLOCK_MAX_CONNECTION_AGE", "0s"}});
  ServerOptions options =
      ServerOptionsFromConfig(config, "message-queue", 7420, 9420, absl::Minutes(5));
  EXPECT_EQ(options.listen_address, "127.0.0.1:0");
  EXPECT_EQ(options.max_connection_age, absl::InfiniteDuration());
  EXPECT_TRUE(config.Validate().ok());
}

TEST(ServerOptionsFromConfig, InternalDefaultConnectionAge) {
  Config config({});
  ServerOptions options =
      ServerOptionsFromConfig(config, "message-queue", 7420, 9420, absl::Minutes(5));
  EXPECT_EQ(options.max_connection_age, absl::Minutes(5));
}

TEST(ServerOptionsFromConfig, RejectsAddressAndPortTogether) {
  Config config({{"PADLOCK_GRPC_ADDRESS", "127.0.0.1:1"}, {"PADLOCK_GRPC_PORT", "2"}});
  ServerOptionsFromConfig(config, "gateway", 7400, 9400);
  ASSERT_EQ(config.errors().size(), 1u);
  EXPECT_EQ(config.errors()[0].variable, "PADLOCK_GRPC_ADDRESS");
}

TEST(ServerOptionsFromConfig, RejectsBadPortAndGrace) {
  Config config({{"PADLOCK_GRPC_PORT", "abc"}, {"PADLOCK_SHUTDOWN_GRACE", "2h"}});
  ServerOptionsFromConfig(config, "gateway", 7400, 9400);
  ASSERT_EQ(config.errors().size(), 2u);
  EXPECT_EQ(config.errors()[0].variable, "PADLOCK_GRPC_PORT");
  EXPECT_EQ(config.errors()[0].message, "not a port number: 'abc'");
  EXPECT_EQ(config.errors()[1].variable, "PADLOCK_SHUTDOWN_GRACE");
}

}  // namespace
}  // namespace padlock::runtime
