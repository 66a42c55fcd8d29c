#include "services/common/redis/script.h"

#include <memory>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "services/common/redis/redis_client.h"

namespace padlock::redis {
namespace {

using ::testing::ElementsAre;

TEST(Script, Sha1IsWhatScriptLoadReturns) {
  // redis-cli SCRIPT LOAD "return 1" → e0e1f9fabfc9d4800c877a703b823ac0578ff8db
  Script script("return 1");
  EXPECT_EQ(script.sha1(), "e0e1f9fabfc9d4800c877a703b823ac0578ff8db");
  EXPECT_EQ(script.source(), "return 1");
}

TEST(Script, CallBuildsEvalShaRoutedByTheFirstKey) {
  Script script("return 1");
  Command command = script.Call({"q:{alice:1}", "ch:{alice:1}"}, {"payload", "7"});
  EXPECT_THAT(command.argv, ElementsAre("EVALSHA", script.sha1(), "2", "q:{alice:1}",
                                        "ch:{alice:1}", "payload", "7"));
  EXPECT_EQ(command.key_index, 3);
  EXPECT_EQ(command.script, &script);
  EXPECT_FALSE(command.idempotent);
}

TEST(Script, KeylessCallIsKeyless) {
  Script script("return ARGV[1]");
  Command command = script.Call({}, {"x"});
  EXPECT_THAT(command.argv, ElementsAre("EVALSHA", script.sha1(), "0", "x"));
  EXPECT_EQ(command.key_index, -1);
}

TEST(Command, KeyedAndKeylessSetRouting) {
  Command get = Command::Keyed({"GET", "k"}, 1, /*idempotent=*/true);
  EXPECT_EQ(get.key_index, 1);
  EXPECT_TRUE(get.idempotent);
  EXPECT_EQ(get.script, nullptr);
  Command ping = Command::Keyless({"PING"});
  EXPECT_EQ(ping.key_index, -1);
  EXPECT_FALSE(ping.idempotent);
}

TEST(RedisClient, CreateRejectsBadOptions) {
  RedisOptions none;
  EXPECT_EQ(RedisClient::Create(none).status().code(), absl::StatusCode::kInvalidArgument);

  RedisOptions malformed;
  malformed.addresses = {"localhost"};
  EXPECT_EQ(RedisClient::Create(malformed).status().code(), absl::StatusCode::kInvalidArgument);

  RedisOptions pool;
  pool.addresses = {"127.0.0.1:6379"};
  pool.pool_size = 0;
  EXPECT_EQ(RedisClient::Create(pool).status().code(), absl::StatusCode::kInvalidArgument);

  RedisOptions timeout;
  timeout.addresses = {"127.0.0.1:6379"};
  timeout.command_timeout = absl::ZeroDuration();
  EXPECT_EQ(RedisClient::Create(timeout).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(RedisClient, StandaloneCreateDoesNotConnect) {
  // Port 1 on loopback: nothing listens there, and Create must not try.
  RedisOptions options;
  options.addresses = {"127.0.0.1:1"};
  absl::StatusOr<std::unique_ptr<RedisClient>> client = RedisClient::Create(options);
  ASSERT_TRUE(client.ok()) << client.status();
  absl::StatusOr<std::string> address = (*client)->AddressForKey("anything");
  ASSERT_TRUE(address.ok()) << address.status();
  EXPECT_EQ(*address, "127.0.0.1:1");
}

}  // namespace
}  // namespace padlock::redis
