// RedisClient and RedisSubscriber against one real redis-server.

#include <prometheus/registry.h>

#include <atomic>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "services/common/redis/redis_client.h"
#include "services/common/redis/redis_subscriber.h"
#include "services/common/redis/script.h"
#include "services/common/wiring/wiring.h"
#include "tests/harness/harness.h"
#include "tests/harness/redis_server.h"
#include "tests/integration/redis/subscriber_probe.h"

namespace padlock::redis {
namespace {

using padlock::testing::RedisServer;
using padlock::testing::WaitFor;

constexpr absl::Duration kWait = absl::Seconds(10);

double CounterValue(prometheus::Registry& registry, const std::string& family,
                    const std::string& label, const std::string& value) {
  for (const auto& f : registry.Collect()) {
    if (f.name != family) continue;
    for (const auto& metric : f.metric) {
      for (const auto& pair : metric.label) {
        if (pair.name == label && pair.value == value) return metric.counter.value;
      }
    }
  }
  return -1;
}

std::unique_ptr<RedisClient> MakeClient(const std::string& address,
                                        prometheus::Registry* registry = nullptr,
                                        int pool_size = 4, std::string password = "") {
  RedisOptions options;
  options.addresses = {address};
  options.pool_size = pool_size;
  options.metrics = registry;
  options.password = std::move(password);
  absl::StatusOr<std::unique_ptr<RedisClient>> client = RedisClient::Create(options);
  EXPECT_TRUE(client.ok()) << client.status();
  return client.ok() ? *std::move(client) : nullptr;
}

class RedisStandalone : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    absl::StatusOr<std::unique_ptr<RedisServer>> server = RedisServer::Start();
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = server->release();
  }
  static void TearDownTestSuite() {
    delete server_;
    server_ = nullptr;
  }
  void SetUp() override {
    ASSERT_NE(server_, nullptr);
    ASSERT_TRUE(server_->FlushAll().ok());
    client_ = MakeClient(server_->address(), &registry_);
    ASSERT_NE(client_, nullptr);
  }

  static RedisServer* server_;
  prometheus::Registry registry_;
  std::unique_ptr<RedisClient> client_;
};

RedisServer* RedisStandalone::server_ = nullptr;

TEST_F(RedisStandalone, ExecutesCommands) {
  absl::StatusOr<RedisReply> set = client_->Execute(Command::Keyed({"SET", "k", "v"}, 1));
  ASSERT_TRUE(set.ok()) << set.status();
  EXPECT_EQ(*set, RedisReply::Status("OK"));

  absl::StatusOr<RedisReply> get = client_->Execute(Command::Keyed({"GET", "k"}, 1));
  ASSERT_TRUE(get.ok()) << get.status();
  EXPECT_EQ(*get, RedisReply::String("v"));

  absl::StatusOr<RedisReply> missing = client_->Execute(Command::Keyed({"GET", "nope"}, 1));
  ASSERT_TRUE(missing.ok()) << missing.status();
  EXPECT_TRUE(missing->is_nil());

  absl::StatusOr<RedisReply> incr = client_->Execute(Command::Keyed({"INCRBY", "n", "41"}, 1));
  ASSERT_TRUE(incr.ok()) << incr.status();
  EXPECT_EQ(*incr, RedisReply::Integer(41));

  const std::string binary("\0\r\n\xff", 4);
  ASSERT_TRUE(client_->Execute(Command::Keyed({"SET", "bin", binary}, 1)).ok());
  EXPECT_EQ(*client_->Execute(Command::Keyed({"GET", "bin"}, 1)), RedisReply::String(binary));

  absl::StatusOr<RedisReply> ping = client_->Execute(Command::Keyless({"PING"}));
  ASSERT_TRUE(ping.ok()) << ping.status();
  EXPECT_EQ(*ping, RedisReply::Status("PONG"));
}

TEST_F(RedisStandalone, PipelineOfThousandCommandsKeepsOrder) {
  std::vector<Command> commands;
  for (int i = 0; i < 1000; ++i) {
    if (i % 2 == 0) {
      commands.push_back(Command::Keyed({"RPUSH", "list", absl::StrCat("e", i)}, 1));
    } else {
      commands.push_back(Command::Keyed({"INCR", absl::StrCat("counter:", i % 7)}, 1));
    }
  }
  std::vector<absl::StatusOr<RedisReply>> replies = client_->ExecutePipeline(commands);
  ASSERT_EQ(replies.size(), 1000u);
  int counters[7] = {};
  for (int i = 0; i < 1000; ++i) {
    ASSERT_TRUE(replies[i].ok()) << i << ": " << replies[i].status();
    if (i % 2 == 0) {
      EXPECT_EQ(*replies[i], RedisReply::Integer(i / 2 + 1)) << i;
    } else {
      EXPECT_EQ(*replies[i], RedisReply::Integer(++counters[i % 7])) << i;
    }
  }
  absl::StatusOr<RedisReply> range =
      client_->Execute(Command::Keyed({"LRANGE", "list", "0", "2"}, 1));
  ASSERT_TRUE(range.ok());
  EXPECT_EQ(*range, RedisReply::Array({RedisReply::String("e0"), RedisReply::String("e2"),
                                       RedisReply::String("e4")}));
  EXPECT_EQ(CounterValue(registry_, "padlock_redis_commands_total", "result", "ok"), 1001);
}

TEST_F(RedisStandalone, EmptyPipelineReturnsNothing) {
  EXPECT_TRUE(client_->ExecutePipeline({}).empty());
}

TEST_F(RedisStandalone, ScriptReloadedAfterScriptFlush) {
  Script script("return redis.call('INCRBY', KEYS[1], ARGV[1])");
  absl::StatusOr<RedisReply> first = client_->Execute(script.Call({"n"}, {"2"}));
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_EQ(*first, RedisReply::Integer(2));

  ASSERT_TRUE(server_->Cli({"SCRIPT", "FLUSH"}).ok());
  absl::StatusOr<std::string> exists = server_->Cli({"SCRIPT", "EXISTS", script.sha1()});
  ASSERT_TRUE(exists.ok());
  EXPECT_EQ(*exists, "0\n");

  // The client still believes the script is loaded: EVALSHA → NOSCRIPT → SCRIPT LOAD → retry.
  absl::StatusOr<RedisReply> second = client_->Execute(script.Call({"n"}, {"3"}));
  ASSERT_TRUE(second.ok()) << second.status();
  EXPECT_EQ(*second, RedisReply::Integer(5));
  absl::StatusOr<std::string> stats = server_->Cli({"INFO", "commandstats"});
  ASSERT_TRUE(stats.ok());
  EXPECT_NE(stats->find("cmdstat_evalsha:calls=3,"), std::string::npos) << *stats;
  EXPECT_NE(stats->find("failed_calls=1"), std::string::npos) << *stats;

  // Same in a pipeline: every EVALSHA after the flush comes back with its own result, in order.
  ASSERT_TRUE(server_->Cli({"SCRIPT", "FLUSH"}).ok());
  std::vector<Command> commands;
  for (int i = 0; i < 50; ++i) commands.push_back(script.Call({"n"}, {"1"}));
  std::vector<absl::StatusOr<RedisReply>> replies = client_->ExecutePipeline(commands);
  for (int i = 0; i < 50; ++i) {
    ASSERT_TRUE(replies[i].ok()) << replies[i].status();
    EXPECT_EQ(*replies[i], RedisReply::Integer(6 + i));
  }
}

TEST_F(RedisStandalone, ErrorReplyIsThatCommandsOwnResult) {
  std::vector<Command> commands = {
      Command::Keyed({"SET", "k", "not a number"}, 1),
      Command::Keyed({"INCR", "k"}, 1),
      Command::Keyed({"GET", "k"}, 1),
      Command::Keyless({"NOSUCHCOMMAND"}),
  };
  std::vector<absl::StatusOr<RedisReply>> replies = client_->ExecutePipeline(commands);
  ASSERT_EQ(replies.size(), 4u);
  for (const auto& r : replies) ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(*replies[0], RedisReply::Status("OK"));
  EXPECT_EQ(*replies[1], RedisReply::Error("ERR value is not an integer or out of range"));
  EXPECT_EQ(replies[1]->ToStatus().code(), absl::StatusCode::kInternal);
  EXPECT_EQ(*replies[2], RedisReply::String("not a number"));
  EXPECT_TRUE(replies[3]->is_error());
  EXPECT_EQ(replies[3]->error_code(), "ERR");

  absl::StatusOr<RedisReply> wrong_type = client_->Execute(Command::Keyed({"LPUSH", "k", "x"}, 1));
  ASSERT_TRUE(wrong_type.ok()) << wrong_type.status();
  EXPECT_EQ(wrong_type->error_code(), "WRONGTYPE");
  EXPECT_EQ(wrong_type->ToStatus().code(), absl::StatusCode::kFailedPrecondition);

  // Redis 7 prefixes "ERR " to a script error without a space; with a message the first word
  // stays the code (docs/REDIS.md).
  Script failing("return redis.error_reply('INBOX_FULL inbox over its cap')");
  absl::StatusOr<RedisReply> script_error = client_->Execute(failing.Call({"k"}, {}));
  ASSERT_TRUE(script_error.ok()) << script_error.status();
  EXPECT_EQ(*script_error, RedisReply::Error("INBOX_FULL inbox over its cap"));
  EXPECT_EQ(script_error->error_code(), "INBOX_FULL");
  EXPECT_EQ(CounterValue(registry_, "padlock_redis_commands_total", "result", "error"), 4);
}

// Readiness is PONG, not any answer: a Redis that answers PING with an error (LOADING while it
// reads its AOF; here NOAUTH, which a test can produce at will) is not ready.
TEST_F(RedisStandalone, ReadinessNeedsPongNotAnErrorReply) {
  absl::StatusOr<std::unique_ptr<RedisServer>> own =
      RedisServer::Start({"--requirepass", "secret"});
  ASSERT_TRUE(own.ok()) << own.status();
  std::unique_ptr<RedisClient> without = MakeClient((*own)->address());
  ASSERT_NE(without, nullptr);
  const absl::Status refused = wiring::CheckRedis(*without);
  EXPECT_EQ(refused.code(), absl::StatusCode::kUnavailable) << refused;
  EXPECT_NE(refused.message().find("NOAUTH"), std::string::npos) << refused;
  std::unique_ptr<RedisClient> with = MakeClient((*own)->address(), nullptr, 4, "secret");
  ASSERT_NE(with, nullptr);
  EXPECT_TRUE(wiring::CheckRedis(*with).ok());
}

TEST_F(RedisStandalone, ServerDownIsUnavailableAndRecovers) {
  absl::StatusOr<std::unique_ptr<RedisServer>> own = RedisServer::Start();
  ASSERT_TRUE(own.ok()) << own.status();
  prometheus::Registry registry;
  std::unique_ptr<RedisClient> client = MakeClient((*own)->address(), &registry);
  ASSERT_TRUE(client->Execute(Command::Keyed({"SET", "k", "v"}, 1)).ok());

  ASSERT_TRUE((*own)->Stop().ok());
  absl::StatusOr<RedisReply> down = client->Execute(Command::Keyed({"GET", "k"}, 1, true));
  EXPECT_EQ(down.status().code(), absl::StatusCode::kUnavailable) << down.status();
  EXPECT_NE(down.status().message().find((*own)->address()), std::string::npos)
      << down.status();
  std::vector<absl::StatusOr<RedisReply>> pipeline = client->ExecutePipeline(
      {Command::Keyed({"INCR", "a"}, 1), Command::Keyed({"INCR", "b"}, 1)});
  ASSERT_EQ(pipeline.size(), 2u);
  EXPECT_EQ(pipeline[0].status().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(pipeline[1].status().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(client->Publish("ch:{x}", "p").status().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(CounterValue(registry, "padlock_redis_commands_total", "result", "unavailable"), 4);

  // Back on the same port (empty: no persistence): the next call reconnects by itself.
  ASSERT_TRUE((*own)->StartAgain().ok());
  absl::StatusOr<RedisReply> incr = client->Execute(Command::Keyed({"INCR", "a"}, 1));
  ASSERT_TRUE(incr.ok()) << incr.status();
  EXPECT_EQ(*incr, RedisReply::Integer(1));
}

TEST_F(RedisStandalone, IdleConnectionsAreReplacedAfterARestart) {
  absl::StatusOr<std::unique_ptr<RedisServer>> own = RedisServer::Start();
  ASSERT_TRUE(own.ok()) << own.status();
  std::unique_ptr<RedisClient> client = MakeClient((*own)->address(), nullptr, /*pool_size=*/2);
  // Fill the pool with two connections.
  std::vector<Command> two = {Command::Keyed({"INCR", "a"}, 1), Command::Keyed({"INCR", "b"}, 1)};
  ASSERT_TRUE(client->Execute(two[0]).ok());
  ASSERT_TRUE((*own)->Restart().ok());
  // Non-idempotent INCRs: they must run exactly once each on the new server, not fail.
  absl::StatusOr<RedisReply> a = client->Execute(two[0]);
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_EQ(*a, RedisReply::Integer(1));
  std::vector<absl::StatusOr<RedisReply>> both = client->ExecutePipeline(two);
  ASSERT_TRUE(both[0].ok() && both[1].ok());
  EXPECT_EQ(*both[0], RedisReply::Integer(2));
  EXPECT_EQ(*both[1], RedisReply::Integer(1));
}

TEST_F(RedisStandalone, AuthenticatesWithPassword) {
  absl::StatusOr<std::unique_ptr<RedisServer>> own =
      RedisServer::Start({"--requirepass", "s3cret"});
  ASSERT_TRUE(own.ok()) << own.status();
  std::unique_ptr<RedisClient> good = MakeClient((*own)->address(), nullptr, 1, "s3cret");
  absl::StatusOr<RedisReply> ping = good->Execute(Command::Keyless({"PING"}));
  ASSERT_TRUE(ping.ok()) << ping.status();
  EXPECT_EQ(*ping, RedisReply::Status("PONG"));

  std::unique_ptr<RedisClient> bad = MakeClient((*own)->address(), nullptr, 1, "wrong");
  absl::StatusOr<RedisReply> refused = bad->Execute(Command::Keyless({"PING"}));
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_NE(refused.status().message().find("AUTH refused"), std::string::npos)
      << refused.status();
}

TEST_F(RedisStandalone, ManyThreadsShareASmallPool) {
  std::unique_ptr<RedisClient> client = MakeClient(server_->address(), nullptr, /*pool_size=*/2);
  constexpr int kThreads = 8;
  constexpr int kRounds = 50;
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&client, &failures, t] {
      for (int round = 0; round < kRounds; ++round) {
        std::vector<Command> commands;
        for (int i = 0; i < 20; ++i) {
          commands.push_back(Command::Keyed({"INCR", absl::StrCat("t", t)}, 1));
        }
        std::vector<absl::StatusOr<RedisReply>> replies = client->ExecutePipeline(commands);
        for (int i = 0; i < 20; ++i) {
          if (!replies[i].ok() || replies[i]->integer() != round * 20 + i + 1) ++failures;
        }
      }
    });
  }
  for (auto& thread : threads) thread.join();
  EXPECT_EQ(failures.load(), 0);
}

TEST_F(RedisStandalone, ShardedSubscriberReceivesPublish) {
  SubscriberProbe probe;
  absl::StatusOr<std::unique_ptr<RedisSubscriber>> subscriber =
      RedisSubscriber::Start(client_.get(), probe.Callbacks());
  ASSERT_TRUE(subscriber.ok()) << subscriber.status();
  const std::string channel = "ch:{alice:1}";
  (*subscriber)->Subscribe(channel);
  ASSERT_TRUE(WaitFor([&] { return probe.Subscribed(channel); }, kWait));
  EXPECT_TRUE((*subscriber)->IsActive(channel));

  const std::string payload("wake\0up", 7);
  absl::StatusOr<int64_t> receivers = client_->Publish(channel, payload);
  ASSERT_TRUE(receivers.ok()) << receivers.status();
  EXPECT_EQ(*receivers, 1);
  ASSERT_TRUE(WaitFor([&] { return probe.Received(channel, payload); }, kWait));

  // A plain PUBLISH is another namespace: sharded subscribers do not see it.
  absl::StatusOr<std::string> plain = server_->Cli({"PUBLISH", channel, "x"});
  ASSERT_TRUE(plain.ok());
  EXPECT_EQ(*plain, "0\n");

  (*subscriber)->Unsubscribe(channel);
  ASSERT_TRUE(WaitFor(
      [&] {
        absl::StatusOr<std::string> n = server_->Cli({"PUBSUB", "SHARDNUMSUB", channel});
        return n.ok() && *n == channel + "\n0\n";
      },
      kWait));
  EXPECT_FALSE((*subscriber)->IsActive(channel));
  absl::StatusOr<int64_t> late = client_->Publish(channel, "late");
  ASSERT_TRUE(late.ok()) << late.status();
  EXPECT_EQ(*late, 0);
  (*subscriber)->Stop();
  EXPECT_EQ(probe.messages().size(), 1u);
}

TEST_F(RedisStandalone, SubscriberResubscribesAfterServerRestart) {
  absl::StatusOr<std::unique_ptr<RedisServer>> own = RedisServer::Start();
  ASSERT_TRUE(own.ok()) << own.status();
  std::unique_ptr<RedisClient> client = MakeClient((*own)->address());
  SubscriberProbe probe;
  absl::StatusOr<std::unique_ptr<RedisSubscriber>> subscriber =
      RedisSubscriber::Start(client.get(), probe.Callbacks());
  ASSERT_TRUE(subscriber.ok()) << subscriber.status();
  (*subscriber)->Subscribe("ch:{bob:2}");
  (*subscriber)->Subscribe("ch:{bob:3}");
  ASSERT_TRUE(WaitFor(
      [&] { return probe.Subscribed("ch:{bob:2}") && probe.Subscribed("ch:{bob:3}"); }, kWait));
  EXPECT_TRUE(probe.resubscribed().empty());

  ASSERT_TRUE((*own)->Restart().ok());
  ASSERT_TRUE(WaitFor(
      [&] { return probe.Resubscribed("ch:{bob:2}") && probe.Resubscribed("ch:{bob:3}"); },
      kWait));
  absl::StatusOr<int64_t> receivers = client->Publish("ch:{bob:2}", "after restart");
  ASSERT_TRUE(receivers.ok()) << receivers.status();
  EXPECT_EQ(*receivers, 1);
  ASSERT_TRUE(WaitFor([&] { return probe.Received("ch:{bob:2}", "after restart"); }, kWait));
}

}  // namespace
}  // namespace padlock::redis
