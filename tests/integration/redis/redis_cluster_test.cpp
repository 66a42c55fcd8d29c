// RedisClient and RedisSubscriber against a real 3-master Redis Cluster.

#include <prometheus/registry.h>

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "services/common/redis/cluster_slots.h"
#include "services/common/redis/redis_client.h"
#include "services/common/redis/redis_subscriber.h"
#include "services/common/redis/script.h"
#include "tests/harness/harness.h"
#include "tests/harness/redis_server.h"
#include "tests/integration/redis/subscriber_probe.h"

namespace padlock::redis {
namespace {

using padlock::testing::WaitFor;

constexpr absl::Duration kWait = absl::Seconds(20);

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

// The enqueue shape of the message queue: append to the inbox, wake the device, one slot.
constexpr char kEnqueueLua[] = R"lua(
local id = redis.call('XADD', KEYS[1], '*', 'e', ARGV[1])
redis.call('SPUBLISH', KEYS[2], id)
return id
)lua";

class RedisCluster : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    absl::StatusOr<std::unique_ptr<padlock::testing::RedisCluster>> cluster =
        padlock::testing::RedisCluster::Start(3);
    ASSERT_TRUE(cluster.ok()) << cluster.status();
    cluster_ = cluster->release();
  }
  static void TearDownTestSuite() {
    delete cluster_;
    cluster_ = nullptr;
  }
  void SetUp() override {
    ASSERT_NE(cluster_, nullptr);
    ASSERT_TRUE(cluster_->WaitHealthy(absl::Seconds(30)).ok());
    ASSERT_TRUE(cluster_->FlushAll().ok());
    RedisOptions options;
    options.addresses = {cluster_->address(0)};  // one seed is enough: the rest is discovered
    options.mode = RedisMode::kCluster;
    options.metrics = &registry_;
    absl::StatusOr<std::unique_ptr<RedisClient>> client = RedisClient::Create(options);
    ASSERT_TRUE(client.ok()) << client.status();
    client_ = *std::move(client);
  }

  // A key "<prefix><n>" (n = 0, 1, ...) whose slot is owned by `node`.
  std::string KeyOnNode(const std::string& prefix, int node) {
    for (int n = 0;; ++n) {
      std::string key = absl::StrCat(prefix, n);
      absl::StatusOr<int> owner = cluster_->OwnerOfSlot(KeySlot(key));
      if (owner.ok() && *owner == node) return key;
    }
  }

  static padlock::testing::RedisCluster* cluster_;
  prometheus::Registry registry_;
  std::unique_ptr<RedisClient> client_;
};

padlock::testing::RedisCluster* RedisCluster::cluster_ = nullptr;

TEST_F(RedisCluster, KeySlotMatchesTheServer) {
  for (const std::string key : {"somekey", "foo", "bar", "{user1000}.following", "foo{}{bar}",
                                "foo{{bar}}zap", "q:{alice:1}", "ch:{alice:1}", "\xff\x01"}) {
    absl::StatusOr<int> slot = cluster_->KeySlot(key);
    ASSERT_TRUE(slot.ok()) << slot.status();
    EXPECT_EQ(KeySlot(key), *slot) << key;
  }
}

TEST_F(RedisCluster, ScriptRunsOnTheNodeOwningItsSlot) {
  SubscriberProbe probe;
  absl::StatusOr<std::unique_ptr<RedisSubscriber>> subscriber =
      RedisSubscriber::Start(client_.get(), probe.Callbacks());
  ASSERT_TRUE(subscriber.ok()) << subscriber.status();
  (*subscriber)->Subscribe("ch:{alice:1}");
  ASSERT_TRUE(WaitFor([&] { return probe.Subscribed("ch:{alice:1}"); }, kWait));

  Script enqueue(kEnqueueLua);
  absl::StatusOr<RedisReply> id =
      client_->Execute(enqueue.Call({"q:{alice:1}", "ch:{alice:1}"}, {"ciphertext"}));
  ASSERT_TRUE(id.ok()) << id.status();
  ASSERT_TRUE(id->is_string()) << id->DebugString();
  ASSERT_TRUE(WaitFor([&] { return probe.Received("ch:{alice:1}", id->str()); }, kWait));

  absl::StatusOr<int> owner = cluster_->OwnerOfSlot(KeySlot("q:{alice:1}"));
  ASSERT_TRUE(owner.ok()) << owner.status();
  absl::StatusOr<std::string> address = client_->AddressForKey("q:{alice:1}");
  ASSERT_TRUE(address.ok());
  EXPECT_EQ(*address, cluster_->address(*owner));
  for (int node = 0; node < cluster_->size(); ++node) {
    absl::StatusOr<std::string> exists = cluster_->Cli(node, {"XLEN", "q:{alice:1}"});
    ASSERT_TRUE(exists.ok());
    if (node == *owner) {
      EXPECT_EQ(*exists, "1\n");
    } else {
      EXPECT_NE(exists->find("MOVED"), std::string::npos) << *exists;
    }
  }

  // Keys of two slots in one script: Redis refuses, and the caller sees it.
  absl::StatusOr<RedisReply> cross =
      client_->Execute(enqueue.Call({"q:{alice:1}", "ch:{bob:1}"}, {"x"}));
  ASSERT_TRUE(cross.ok()) << cross.status();
  EXPECT_EQ(cross->error_code(), "CROSSSLOT");
}

TEST_F(RedisCluster, PipelineSpanningAllNodesKeepsOrder) {
  std::vector<std::string> keys = {KeyOnNode("a", 0), KeyOnNode("b", 1), KeyOnNode("c", 2)};
  Script enqueue(kEnqueueLua);
  std::vector<Command> commands;
  for (int i = 0; i < 999; ++i) {
    const std::string& key = keys[i % 3];
    if (i % 5 == 4) {
      // Scripts mixed in: hash-tagged inbox + channel next to each plain key.
      commands.push_back(enqueue.Call(
          {absl::StrCat("q:{", key, "}"), absl::StrCat("ch:{", key, "}")}, {absl::StrCat(i)}));
    } else {
      commands.push_back(Command::Keyed({"RPUSH", key, absl::StrCat(i)}, 1));
    }
  }
  std::vector<absl::StatusOr<RedisReply>> replies = client_->ExecutePipeline(commands);
  ASSERT_EQ(replies.size(), commands.size());
  std::map<std::string, int> lengths;
  for (size_t i = 0; i < replies.size(); ++i) {
    ASSERT_TRUE(replies[i].ok()) << i << ": " << replies[i].status();
    if (i % 5 == 4) {
      EXPECT_TRUE(replies[i]->is_string()) << i << ": " << replies[i]->DebugString();
    } else {
      EXPECT_EQ(*replies[i], RedisReply::Integer(++lengths[keys[i % 3]])) << i;
    }
  }
  for (int node = 0; node < 3; ++node) {
    absl::StatusOr<RedisReply> first =
        client_->Execute(Command::Keyed({"LINDEX", keys[node], "0"}, 1));
    ASSERT_TRUE(first.ok());
    EXPECT_EQ(*first, RedisReply::String(absl::StrCat(node))) << keys[node];
  }
}

TEST_F(RedisCluster, FollowsMovedAfterSlotMigration) {
  const std::string key = "inbox:{carol:1}";
  const int slot = KeySlot(key);
  ASSERT_TRUE(client_->Execute(Command::Keyed({"SET", key, "v"}, 1)).ok());
  absl::StatusOr<int> from = cluster_->OwnerOfSlot(slot);
  ASSERT_TRUE(from.ok());
  const int to = (*from + 1) % 3;
  ASSERT_EQ(*client_->AddressForKey(key), cluster_->address(*from));

  // The client's map is now stale.
  ASSERT_TRUE(cluster_->MigrateSlot(slot, to).ok());
  absl::StatusOr<RedisReply> get = client_->Execute(Command::Keyed({"GET", key}, 1));
  ASSERT_TRUE(get.ok()) << get.status();
  EXPECT_EQ(*get, RedisReply::String("v"));
  EXPECT_EQ(*client_->AddressForKey(key), cluster_->address(to));
  EXPECT_EQ(CounterValue(registry_, "padlock_redis_redirects_total", "kind", "moved"), 1);

  // And back, inside a pipeline: the other slots stay where they are.
  ASSERT_TRUE(cluster_->MigrateSlot(slot, *from).ok());
  std::vector<absl::StatusOr<RedisReply>> replies = client_->ExecutePipeline(
      {Command::Keyed({"APPEND", key, "1"}, 1), Command::Keyed({"SET", "other", "x"}, 1),
       Command::Keyed({"APPEND", key, "2"}, 1)});
  ASSERT_TRUE(replies[0].ok() && replies[1].ok() && replies[2].ok());
  EXPECT_EQ(*replies[0], RedisReply::Integer(2));
  EXPECT_EQ(*replies[1], RedisReply::Status("OK"));
  EXPECT_EQ(*replies[2], RedisReply::Integer(3));
  EXPECT_EQ(*client_->AddressForKey(key), cluster_->address(*from));
}

TEST_F(RedisCluster, FollowsAskDuringSlotMigration) {
  const std::string moved_key = "{dave:1}:moved";
  const std::string staying_key = "{dave:1}:staying";
  const int slot = KeySlot(moved_key);
  ASSERT_TRUE(client_->Execute(Command::Keyed({"SET", moved_key, "m"}, 1)).ok());
  ASSERT_TRUE(client_->Execute(Command::Keyed({"SET", staying_key, "s"}, 1)).ok());
  absl::StatusOr<int> from = cluster_->OwnerOfSlot(slot);
  ASSERT_TRUE(from.ok());
  const int to = (*from + 2) % 3;

  ASSERT_TRUE(cluster_->BeginSlotMigration(slot, to, {moved_key}).ok());
  std::vector<absl::StatusOr<RedisReply>> replies =
      client_->ExecutePipeline({Command::Keyed({"GET", moved_key}, 1),
                                Command::Keyed({"GET", staying_key}, 1),
                                Command::Keyed({"SET", "{dave:1}:new", "n"}, 1)});
  ASSERT_TRUE(replies[0].ok()) << replies[0].status();
  EXPECT_EQ(*replies[0], RedisReply::String("m"));
  ASSERT_TRUE(replies[1].ok()) << replies[1].status();
  EXPECT_EQ(*replies[1], RedisReply::String("s"));
  ASSERT_TRUE(replies[2].ok()) << replies[2].status();
  EXPECT_EQ(*replies[2], RedisReply::Status("OK"));
  // Two ASKs (the moved key, and a new key, which goes to the importing node); the slot map
  // still names the old owner, as ASK is a one-off.
  EXPECT_EQ(CounterValue(registry_, "padlock_redis_redirects_total", "kind", "ask"), 2);
  EXPECT_EQ(*client_->AddressForKey(moved_key), cluster_->address(*from));
  absl::StatusOr<std::string> on_target =
      cluster_->Cli(to, {"CLUSTER", "COUNTKEYSINSLOT", absl::StrCat(slot)});
  ASSERT_TRUE(on_target.ok());
  EXPECT_EQ(*on_target, "2\n");

  ASSERT_TRUE(cluster_->FinishSlotMigration(slot, to).ok());
  absl::StatusOr<RedisReply> after = client_->Execute(Command::Keyed({"GET", staying_key}, 1));
  ASSERT_TRUE(after.ok());
  EXPECT_EQ(*after, RedisReply::String("s"));
  EXPECT_EQ(*client_->AddressForKey(moved_key), cluster_->address(to));
}

TEST_F(RedisCluster, ShardedSubscriptionsOnEveryNodeReceivePublishes) {
  SubscriberProbe probe;
  absl::StatusOr<std::unique_ptr<RedisSubscriber>> subscriber =
      RedisSubscriber::Start(client_.get(), probe.Callbacks());
  ASSERT_TRUE(subscriber.ok()) << subscriber.status();
  std::vector<std::string> channels;
  for (int node = 0; node < 3; ++node) {
    channels.push_back(absl::StrCat("ch:{", KeyOnNode("dev", node), "}"));
    (*subscriber)->Subscribe(channels.back());
  }
  for (const std::string& channel : channels) {
    ASSERT_TRUE(WaitFor([&] { return probe.Subscribed(channel); }, kWait)) << channel;
  }
  for (const std::string& channel : channels) {
    absl::StatusOr<int64_t> receivers = client_->Publish(channel, "hello " + channel);
    ASSERT_TRUE(receivers.ok()) << receivers.status();
    EXPECT_EQ(*receivers, 1) << channel;
  }
  for (const std::string& channel : channels) {
    ASSERT_TRUE(WaitFor([&] { return probe.Received(channel, "hello " + channel); }, kWait));
  }
  EXPECT_EQ(probe.messages().size(), 3u);
}

TEST_F(RedisCluster, SubscriberSurvivesARestartOfItsNode) {
  const int node = 1;
  const std::string channel = absl::StrCat("ch:{", KeyOnNode("eve", node), "}");
  const std::string elsewhere = absl::StrCat("ch:{", KeyOnNode("eve", 2), "}");
  SubscriberProbe probe;
  absl::StatusOr<std::unique_ptr<RedisSubscriber>> subscriber =
      RedisSubscriber::Start(client_.get(), probe.Callbacks());
  ASSERT_TRUE(subscriber.ok()) << subscriber.status();
  (*subscriber)->Subscribe(channel);
  (*subscriber)->Subscribe(elsewhere);
  ASSERT_TRUE(WaitFor([&] { return probe.Subscribed(channel) && probe.Subscribed(elsewhere); },
                      kWait));
  ASSERT_EQ(*client_->Publish(channel, "before"), 1);
  ASSERT_TRUE(WaitFor([&] { return probe.Received(channel, "before"); }, kWait));

  // Same port, same nodes.conf: the node comes back as the owner of its slots.
  ASSERT_TRUE(cluster_->RestartNode(node).ok());
  ASSERT_TRUE(WaitFor([&] { return probe.Resubscribed(channel); }, kWait));
  EXPECT_FALSE(probe.Resubscribed(elsewhere));  // its node never went away
  EXPECT_TRUE((*subscriber)->IsActive(channel));

  absl::StatusOr<int64_t> receivers = client_->Publish(channel, "after");
  ASSERT_TRUE(receivers.ok()) << receivers.status();
  EXPECT_EQ(*receivers, 1);
  ASSERT_TRUE(WaitFor([&] { return probe.Received(channel, "after"); }, kWait));
}

TEST_F(RedisCluster, SubscriberFollowsItsChannelToAnotherNode) {
  const std::string channel = "ch:{frank:1}";
  const int slot = KeySlot(channel);
  SubscriberProbe probe;
  absl::StatusOr<std::unique_ptr<RedisSubscriber>> subscriber =
      RedisSubscriber::Start(client_.get(), probe.Callbacks());
  ASSERT_TRUE(subscriber.ok()) << subscriber.status();
  (*subscriber)->Subscribe(channel);
  ASSERT_TRUE(WaitFor([&] { return probe.Subscribed(channel); }, kWait));
  absl::StatusOr<int> from = cluster_->OwnerOfSlot(slot);
  ASSERT_TRUE(from.ok());
  const int to = (*from + 1) % 3;

  // The old owner pushes `sunsubscribe` when the slot leaves it.
  ASSERT_TRUE(cluster_->MigrateSlot(slot, to).ok());
  ASSERT_TRUE(WaitFor([&] { return probe.Resubscribed(channel); }, kWait));
  absl::StatusOr<int64_t> receivers = client_->Publish(channel, "moved");
  ASSERT_TRUE(receivers.ok()) << receivers.status();
  EXPECT_EQ(*receivers, 1);
  ASSERT_TRUE(WaitFor([&] { return probe.Received(channel, "moved"); }, kWait));
  absl::StatusOr<std::string> numsub = cluster_->Cli(to, {"PUBSUB", "SHARDNUMSUB", channel});
  ASSERT_TRUE(numsub.ok());
  EXPECT_EQ(*numsub, channel + "\n1\n");
}

}  // namespace
}  // namespace padlock::redis
