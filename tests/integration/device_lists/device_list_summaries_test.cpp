// RedisDeviceListSummaries (the key-directory's write-through) and RedisDeviceDirectory (the
// message-queue's reader) on a real redis-server and a real 3-master Redis Cluster, flushed
// before each test. The ordering rules (a populate that read PostgreSQL before a change can never
// land after it; a ban or deletion wins over a racing populate) are the DeviceListSummaries
// contract, run here on Redis and in the unit test on the fake; this file adds what only Redis
// has: TTLs, the writer deadline, and the message-queue's reader.
#include <gtest/gtest.h>
#include <prometheus/registry.h>

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "services/common/device_lists/device_list_summary.h"
#include "services/common/redis/redis_client.h"
#include "services/key_directory/redis_adapters.h"
#include "services/message_queue/redis_device_directory.h"
#include "tests/harness/harness.h"
#include "tests/harness/redis_server.h"
#include "tests/fakes/device_list_summaries_contract.h"
#include "tests/fakes/message_queue_fakes.h"

namespace padlock {
namespace {

using device_lists::Summary;
using key_directory::RedisDeviceListSummaries;
using key_directory::testing::DeviceListSummariesContract;
using key_directory::testing::Listed;
using key_directory::testing::SummariesFactory;
using key_directory::testing::SummariesHandle;
using message_queue::FakeDeviceDirectory;
using message_queue::RedisDeviceDirectory;

// Servers live for the rest of the binary once started (on first use).
struct Backend {
  std::unique_ptr<testing::RedisServer> server;
  std::unique_ptr<testing::RedisCluster> nodes;
  std::unique_ptr<redis::RedisClient> client;

  static Backend* Get(bool cluster) {
    static std::unique_ptr<Backend> backends[2];
    std::unique_ptr<Backend>& b = backends[cluster ? 1 : 0];
    if (b == nullptr) {
      b = std::make_unique<Backend>();
      redis::RedisOptions options;
      if (cluster) {
        auto started = testing::RedisCluster::Start(3);
        EXPECT_TRUE(started.ok()) << started.status();
        if (!started.ok()) return nullptr;
        b->nodes = *std::move(started);
        options.addresses = b->nodes->addresses();
        options.mode = redis::RedisMode::kCluster;
      } else {
        auto started = testing::RedisServer::Start();
        EXPECT_TRUE(started.ok()) << started.status();
        if (!started.ok()) return nullptr;
        b->server = *std::move(started);
        options.addresses = {b->server->address()};
      }
      auto client = redis::RedisClient::Create(options);
      EXPECT_TRUE(client.ok()) << client.status();
      if (!client.ok()) return nullptr;
      b->client = *std::move(client);
    }
    return b.get();
  }
  absl::Status Flush() { return nodes != nullptr ? nodes->FlushAll() : server->FlushAll(); }
};


class DeviceListSummariesTest : public ::testing::TestWithParam<bool> {
 protected:
  void SetUp() override {
    backend_ = Backend::Get(GetParam());
    ASSERT_NE(backend_, nullptr);
    ASSERT_TRUE(backend_->Flush().ok());
    summaries_ = std::make_unique<RedisDeviceListSummaries>(redis(),
                                                            RedisDeviceListSummaries::Options{});
    directory_ = std::make_unique<RedisDeviceDirectory>(redis(), &key_directory_, &metrics_);
  }
  redis::RedisClient* redis() { return backend_->client.get(); }

  // The summary field as stored ("" when absent).
  std::string Stored(const std::string& user) {
    auto reply = redis()->Execute(redis::Command::Keyed(
        {"HGET", device_lists::SummaryKey(user), device_lists::kSummaryField}, 1));
    EXPECT_TRUE(reply.ok()) << reply.status();
    return reply.ok() && reply->is_string() ? reply->str() : "";
  }
  int64_t TtlMs(const std::string& user) {
    auto reply =
        redis()->Execute(redis::Command::Keyed({"PTTL", device_lists::SummaryKey(user)}, 1));
    EXPECT_TRUE(reply.ok()) << reply.status();
    return reply.ok() ? reply->integer() : -3;
  }
  // One look-up's populate, split where a racing change may fall: the token (before PostgreSQL)
  // and the write (after).
  std::string Token(const std::string& user) {
    auto tokens = summaries_->PopulateTokens({user});
    EXPECT_TRUE(tokens.ok()) << tokens.status();
    return tokens.ok() ? (*tokens)[0] : "?";
  }
  int Populate(const std::string& user, const std::string& token, const Summary& summary) {
    auto stored = summaries_->Populate({user}, {token}, {summary});
    EXPECT_TRUE(stored.ok()) << stored.status();
    return stored.ok() ? *stored : -1;
  }
  std::string Begin(const std::string& user) {
    auto token = summaries_->BeginChange(user);
    EXPECT_TRUE(token.ok()) << token.status();
    return token.ok() ? *token : "?";
  }
  void End(const std::string& user, const std::string& token, std::optional<Summary> after) {
    EXPECT_TRUE(summaries_->EndChange(user, token, after).ok());
  }

  Backend* backend_ = nullptr;
  std::unique_ptr<RedisDeviceListSummaries> summaries_;
  FakeDeviceDirectory key_directory_;
  prometheus::Registry metrics_;
  std::unique_ptr<RedisDeviceDirectory> directory_;
};

TEST_P(DeviceListSummariesTest, EveryKeyHasATtlByWhatItHolds) {
  EXPECT_EQ(Populate("alice", Token("alice"), Listed(3, {{1, 101}, {2, 102}})), 1);
  EXPECT_GT(TtlMs("alice"), 24 * 3600 * 1000LL);  // listed: days
  EXPECT_EQ(Populate("nobody", Token("nobody"), Summary{}), 1);
  EXPECT_GT(TtlMs("nobody"), 0);
  EXPECT_LE(TtlMs("nobody"), 3600 * 1000LL);  // not listed: an hour at most
  const std::string change = Begin("alice");  // a change in flight: no summary, an hour at most
  EXPECT_GT(TtlMs("alice"), 0);
  EXPECT_LE(TtlMs("alice"), 3600 * 1000LL);
  End("alice", change, Listed(4, {{1, 101}}));
  EXPECT_GT(TtlMs("alice"), 24 * 3600 * 1000LL);
  End("nobody", Begin("nobody"), std::nullopt);
  EXPECT_GT(TtlMs("nobody"), 0);
}

TEST_P(DeviceListSummariesTest, AChangeThatNeverEndsBlocksPopulatesOnlyUntilItsDeadline) {
  RedisDeviceListSummaries quick(redis(), {.writer_deadline = absl::Seconds(1)});
  ASSERT_TRUE(quick.BeginChange("alice").ok());  // its writer died: no EndChange
  auto refused = quick.Populate({"alice"}, {Token("alice")}, {Listed(4, {{1, 101}})});
  ASSERT_TRUE(refused.ok());
  EXPECT_EQ(*refused, 0);
  EXPECT_TRUE(testing::WaitFor(
      [&] {
        auto stored = quick.Populate({"alice"}, {Token("alice")}, {Listed(4, {{1, 101}})});
        return stored.ok() && *stored == 1;
      },
      absl::Seconds(10)));
  EXPECT_EQ(Stored("alice"), "a 4 1:101");
  // A later change is bracketed as usual (the dead writer is forgotten).
  const std::string change = quick.BeginChange("alice").value();
  ASSERT_TRUE(quick.EndChange("alice", change, Listed(5, {{1, 101}, {2, 102}})).ok());
  EXPECT_EQ(Stored("alice"), "a 5 1:101 2:102");
}

double Lookups(prometheus::Registry& registry, const std::string& source) {
  for (const auto& family : registry.Collect()) {
    if (family.name != "padlock_device_list_lookups_total") continue;
    for (const auto& metric : family.metric) {
      for (const auto& label : metric.label) {
        if (label.name == "source" && label.value == source) return metric.counter.value;
      }
    }
  }
  return -1;
}

TEST_P(DeviceListSummariesTest, TheDirectoryServesSummariesAndAsksOnlyForMisses) {
  // Users spread over the cluster's slots; one pipelined read for all of them.
  std::vector<std::string> users;
  for (int i = 0; i < 20; ++i) {
    const std::string user = "user" + std::to_string(i);
    users.push_back(user);
    ASSERT_EQ(Populate(user, Token(user), Listed(i + 1, {{1, 100u + i}})), 1);
  }
  ASSERT_EQ(Populate("gone", Token("gone"), Summary{}), 1);
  users.push_back("gone");
  auto lists = directory_->GetDeviceLists(users);
  ASSERT_TRUE(lists.ok()) << lists.status();
  EXPECT_EQ(lists->size(), 20u);  // "gone" is authoritative: no list, no question asked
  EXPECT_EQ(lists->at("user7").version, 8u);
  EXPECT_EQ(lists->at("user7").devices[0].registration_id, 107u);
  EXPECT_EQ(key_directory_.calls(), 0);
  EXPECT_EQ(Lookups(metrics_, "redis"), 21);

  // Misses (never written, deleted by a change in flight, unreadable) go to the key-directory,
  // in one call naming only them.
  key_directory_.Set("fresh", 2, {{1, 301}, {4, 304}});
  key_directory_.Set("user3", 5, {{1, 103}, {2, 203}});
  const std::string change = Begin("user3");
  ASSERT_TRUE(redis()
                  ->Execute(redis::Command::Keyed(
                      {"HSET", device_lists::SummaryKey("user5"), "s", "garbage"}, 1))
                  .ok());
  std::vector<std::string> some = {"user1", "fresh", "user3", "user5"};
  lists = directory_->GetDeviceLists(some);
  ASSERT_TRUE(lists.ok()) << lists.status();
  EXPECT_EQ(key_directory_.calls(), 1);
  EXPECT_EQ(key_directory_.users_asked(), 3);
  EXPECT_EQ(lists->at("fresh").devices.size(), 2u);
  EXPECT_EQ(lists->at("user3").version, 5u);
  EXPECT_FALSE(lists->contains("user5"));  // the fake knows no user5
  EXPECT_EQ(lists->at("user1").version, 2u);
  EXPECT_EQ(Lookups(metrics_, "key_directory"), 3);
  End("user3", change, Listed(5, {{1, 103}, {2, 203}}));
}

TEST_P(DeviceListSummariesTest, RedisDownIsUnavailableWithoutAskingTheKeyDirectory) {
  redis::RedisOptions options;
  options.addresses = {"127.0.0.1:1"};
  auto dead = redis::RedisClient::Create(options);
  ASSERT_TRUE(dead.ok()) << dead.status();
  RedisDeviceDirectory directory(dead->get(), &key_directory_, nullptr);
  std::vector<std::string> users = {"alice"};
  EXPECT_TRUE(absl::IsUnavailable(directory.GetDeviceLists(users).status()));
  EXPECT_EQ(key_directory_.calls(), 0);
  RedisDeviceListSummaries summaries(dead->get(), {});
  EXPECT_TRUE(absl::IsUnavailable(summaries.BeginChange("alice").status()));
}

SummariesHandle RedisHandle(bool cluster) {
  Backend* backend = Backend::Get(cluster);
  if (backend == nullptr) return {};
  absl::Status flushed = backend->Flush();
  EXPECT_TRUE(flushed.ok()) << flushed;
  redis::RedisClient* client = backend->client.get();
  return SummariesHandle{
      std::make_unique<RedisDeviceListSummaries>(client, RedisDeviceListSummaries::Options{}),
      [client](const std::string& user) {
        auto reply = client->Execute(redis::Command::Keyed(
            {"HGET", device_lists::SummaryKey(user), device_lists::kSummaryField}, 1));
        return reply.ok() && reply->is_string() ? reply->str() : std::string();
      }};
}

INSTANTIATE_TEST_SUITE_P(
    Redis, DeviceListSummariesContract,
    ::testing::Values(SummariesFactory{"Standalone", [] { return RedisHandle(false); }},
                      SummariesFactory{"Cluster", [] { return RedisHandle(true); }}),
    [](const ::testing::TestParamInfo<SummariesFactory>& info) { return info.param.name; });

INSTANTIATE_TEST_SUITE_P(Redis, DeviceListSummariesTest, ::testing::Values(false, true),
                         [](const ::testing::TestParamInfo<bool>& info) {
                           return info.param ? "Cluster" : "Standalone";
                         });

}  // namespace
}  // namespace padlock
