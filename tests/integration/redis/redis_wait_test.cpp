// RedisClient::ExecutePipelineAndWait against a real master with one real replica: WAIT on the
// connection that made the writes, and Unavailable when fewer replicas than asked confirm them.

#include <memory>
#include <string>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "services/common/redis/redis_client.h"
#include "tests/harness/harness.h"
#include "tests/harness/redis_server.h"

namespace padlock::redis {
namespace {

using padlock::testing::RedisServer;

class RedisWait : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    auto master = RedisServer::Start({"--repl-diskless-sync-delay", "0"});
    ASSERT_TRUE(master.ok()) << master.status();
    master_ = master->release();
    auto replica = master_->StartReplica();
    ASSERT_TRUE(replica.ok()) << replica.status();
    replica_ = replica->release();
    absl::Status online = master_->WaitForOnlineReplicas(1, absl::Seconds(20));
    ASSERT_TRUE(online.ok()) << online;
  }
  static void TearDownTestSuite() {
    delete replica_;
    delete master_;
    replica_ = nullptr;
    master_ = nullptr;
  }
  void SetUp() override {
    ASSERT_NE(master_, nullptr);
    ASSERT_NE(replica_, nullptr);
    RedisOptions options;
    options.addresses = {master_->address()};
    auto client = RedisClient::Create(options);
    ASSERT_TRUE(client.ok()) << client.status();
    client_ = *std::move(client);
  }
  std::string OnReplica(const std::string& key) {
    absl::StatusOr<std::string> out = replica_->Cli({"GET", key});
    if (!out.ok()) return "<" + std::string(out.status().message()) + ">";
    return std::string(absl::StripTrailingAsciiWhitespace(*out));
  }

  static RedisServer* master_;
  static RedisServer* replica_;
  std::unique_ptr<RedisClient> client_;
};

RedisServer* RedisWait::master_ = nullptr;
RedisServer* RedisWait::replica_ = nullptr;

TEST_F(RedisWait, ConfirmedWritesAreOnTheReplicaWhenTheCallReturns) {
  std::vector<Command> commands;
  for (int i = 0; i < 50; ++i) {
    commands.push_back(Command::Keyed({"SET", absl::StrCat("w:", i), absl::StrCat("v", i)}, 1));
  }
  std::vector<absl::StatusOr<RedisReply>> replies =
      client_->ExecutePipelineAndWait(commands, ReplicaWait{1, absl::Milliseconds(1500)});
  ASSERT_EQ(replies.size(), commands.size());
  for (const auto& reply : replies) {
    ASSERT_TRUE(reply.ok()) << reply.status();
    EXPECT_EQ(reply->str(), "OK");
  }
  // WAIT returned only after the replica acknowledged the writes' offset: no polling needed.
  EXPECT_EQ(OnReplica("w:0"), "v0");
  EXPECT_EQ(OnReplica("w:49"), "v49");
}

TEST_F(RedisWait, TooFewReplicasMakesWritesUnavailableButKeepsErrorReplies) {
  ASSERT_TRUE(client_->Execute(Command::Keyed({"SET", "text", "not-a-number"}, 1)).ok());
  // WAIT runs its full second (2 replicas never confirm), time enough for the one replica to.
  std::vector<Command> commands = {
      Command::Keyed({"SET", "x:1", "one"}, 1),
      Command::Keyed({"INCR", "text"}, 1),  // an error reply: nothing written
  };
  std::vector<absl::StatusOr<RedisReply>> replies =
      client_->ExecutePipelineAndWait(commands, ReplicaWait{2, absl::Milliseconds(1000)});
  ASSERT_EQ(replies.size(), 2u);
  ASSERT_FALSE(replies[0].ok());
  EXPECT_EQ(replies[0].status().code(), absl::StatusCode::kUnavailable);
  EXPECT_NE(replies[0].status().message().find("not confirmed by 2 replica(s)"),
            absl::string_view::npos)
      << replies[0].status();
  EXPECT_NE(replies[0].status().message().find("1 confirmed"), absl::string_view::npos)
      << replies[0].status();
  ASSERT_TRUE(replies[1].ok()) << replies[1].status();
  EXPECT_TRUE(replies[1]->is_error());
  // The write did happen on the master (and reached the one replica): the caller must treat the
  // outcome as unknown, not as "not written".
  auto value = client_->Execute(Command::Keyed({"GET", "x:1"}, 1));
  ASSERT_TRUE(value.ok());
  EXPECT_EQ(value->str(), "one");
}

TEST_F(RedisWait, PerElementCommandTurnsOnlyItsNonErrorElementsUnconfirmed) {
  // A script reporting three items: two written, one refused. 2 replicas never confirm.
  Command per_item = Command::Keyless(
      {"EVAL",
       "redis.call('SET', 'pe:1', 'x') return {1, redis.error_reply('FULL no room'), 'done'}",
       "0"});
  per_item.wait_per_element = true;
  Command whole = per_item;
  whole.wait_per_element = false;
  std::vector<absl::StatusOr<RedisReply>> replies =
      client_->ExecutePipelineAndWait({per_item, whole}, ReplicaWait{2, absl::Milliseconds(50)});
  ASSERT_EQ(replies.size(), 2u);
  ASSERT_TRUE(replies[0].ok()) << replies[0].status();
  ASSERT_EQ(replies[0]->elements().size(), 3u);
  const std::vector<RedisReply>& e = replies[0]->elements();
  EXPECT_EQ(e[0].error_code(), "UNCONFIRMED");
  EXPECT_EQ(e[0].ToStatus().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(e[1].error_code(), "FULL");
  EXPECT_EQ(e[2].error_code(), "UNCONFIRMED");
  EXPECT_EQ(replies[1].status().code(), absl::StatusCode::kUnavailable) << replies[1].status();
}

TEST_F(RedisWait, NoReplicasAskedIsAPlainPipeline) {
  std::vector<Command> commands = {Command::Keyed({"SET", "p:1", "x"}, 1),
                                   Command::Keyed({"GET", "p:1"}, 1)};
  std::vector<absl::StatusOr<RedisReply>> replies =
      client_->ExecutePipelineAndWait(commands, ReplicaWait{0, absl::Milliseconds(1)});
  ASSERT_EQ(replies.size(), 2u);
  ASSERT_TRUE(replies[1].ok());
  EXPECT_EQ(replies[1]->str(), "x");
}

TEST_F(RedisWait, StoppedReplicaMakesWritesUnavailableUntilItIsBack) {
  ASSERT_TRUE(replica_->Stop().ok());
  // The master notices the closed link at once; WAIT then confirms 0 within its timeout.
  std::vector<Command> commands = {Command::Keyed({"SET", "s:1", "x"}, 1)};
  std::vector<absl::StatusOr<RedisReply>> replies =
      client_->ExecutePipelineAndWait(commands, ReplicaWait{1, absl::Milliseconds(50)});
  ASSERT_FALSE(replies[0].ok());
  EXPECT_EQ(replies[0].status().code(), absl::StatusCode::kUnavailable);
  ASSERT_TRUE(replica_->StartAgain().ok());
  ASSERT_TRUE(master_->WaitForOnlineReplicas(1, absl::Seconds(20)).ok());
  replies = client_->ExecutePipelineAndWait(commands, ReplicaWait{1, absl::Milliseconds(1500)});
  ASSERT_TRUE(replies[0].ok()) << replies[0].status();
  EXPECT_EQ(OnReplica("s:1"), "x");
}

}  // namespace
}  // namespace padlock::redis
