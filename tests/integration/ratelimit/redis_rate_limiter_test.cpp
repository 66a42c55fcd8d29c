// RedisRateLimiter (Take and TakeEach) against one real redis-server and a real 3-master Redis
// Cluster: the same tests on both (TEST_P over the mode). Servers start once per binary; every
// test starts from flushed servers and a fresh client.

#include <prometheus/registry.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "services/common/ratelimit/redis_rate_limiter.h"
#include "services/common/redis/cluster_slots.h"
#include "services/common/redis/redis_client.h"
#include "tests/harness/redis_modes.h"

namespace padlock::ratelimit {
namespace {

using padlock::testing::RedisServer;

// Client calls of one kind ("command" or "pipeline") observed by the client's metrics.
uint64_t ClientCalls(prometheus::Registry& registry, const std::string& call) {
  for (const auto& family : registry.Collect()) {
    if (family.name != "padlock_redis_call_seconds") continue;
    for (const auto& metric : family.metric) {
      for (const auto& label : metric.label) {
        if (label.name == "call" && label.value == call) return metric.histogram.sample_count;
      }
    }
  }
  return 0;
}

class RedisRateLimiterTest : public padlock::testing::RedisModeTest {
 protected:
  void SetUp() override {
    if (cluster_mode() && cluster() != nullptr) {
      ASSERT_TRUE(cluster()->WaitHealthy(absl::Seconds(30)).ok());
    }
    RedisModeTest::SetUp();
    if (HasFatalFailure()) return;
    redis::RedisOptions options = redis_options_;
    if (cluster_mode()) options.addresses = {cluster()->address(0)};  // one seed
    options.metrics = &registry_;
    auto client = redis::RedisClient::Create(options);
    ASSERT_TRUE(client.ok()) << client.status();
    client_ = *std::move(client);
    limiter_ = std::make_unique<RedisRateLimiter>(client_.get());
  }

  // The claim buckets of `requester` → `target`. On the cluster, users are picked so that the
  // two buckets are owned by different masters: the pipeline then spans two nodes.
  std::pair<std::string, std::string> Buckets() {
    for (int n = 0; n < 1000; ++n) {
      std::string from = absl::StrCat("rl:claim:from:bob", n);
      std::string to = absl::StrCat("rl:claim:to:alice", n);
      if (!cluster_mode()) return {from, to};
      auto from_owner = cluster()->OwnerOfSlot(redis::KeySlot(from));
      auto to_owner = cluster()->OwnerOfSlot(redis::KeySlot(to));
      if (from_owner.ok() && to_owner.ok() && *from_owner != *to_owner) return {from, to};
    }
    ADD_FAILURE() << "no pair of buckets on two masters";
    return {};
  }

  prometheus::Registry registry_;
  std::unique_ptr<redis::RedisClient> client_;
  std::unique_ptr<RedisRateLimiter> limiter_;
};

INSTANTIATE_TEST_SUITE_P(Modes, RedisRateLimiterTest,
                         padlock::testing::AllRedisModes(), padlock::testing::RedisModeName);

TEST_P(RedisRateLimiterTest, TakeEachChargesEveryBucketInOnePipeline) {
  const auto [from, to] = Buckets();
  const RateLimit limit{.burst = 5, .per_second = 1};
  const uint64_t commands = ClientCalls(registry_, "command");
  const uint64_t pipelines = ClientCalls(registry_, "pipeline");
  auto waits = limiter_->TakeEach({{from, limit}, {to, limit}});
  ASSERT_TRUE(waits.ok()) << waits.status();
  EXPECT_EQ(*waits, (std::vector<absl::Duration>{absl::ZeroDuration(), absl::ZeroDuration()}));
  EXPECT_EQ(ClientCalls(registry_, "pipeline") - pipelines, 1u);
  EXPECT_EQ(ClientCalls(registry_, "command") - commands, 0u);
  // Both buckets hold 4 tokens now: the same buckets Take sees.
  for (const std::string& bucket : {from, to}) {
    auto hget = client_->Execute(redis::Command::Keyed({"HGET", bucket, "t"}, 1));
    ASSERT_TRUE(hget.ok()) << hget.status();
    ASSERT_TRUE(hget->is_string()) << bucket;
    EXPECT_NEAR(std::stod(hget->str()), 4.0, 0.01) << bucket;
  }
}

// A bucket with a token gives it even when another bucket of the same call has none: a refused
// claim still costs the requester.
TEST_P(RedisRateLimiterTest, EachBucketDecidesOnItsOwn) {
  const auto [from, to] = Buckets();
  const RateLimit requester{.burst = 2, .per_second = 0.001};
  const RateLimit target{.burst = 1, .per_second = 0.001};
  auto first = limiter_->TakeEach({{from, requester}, {to, target}});
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_EQ((*first)[0], absl::ZeroDuration());
  EXPECT_EQ((*first)[1], absl::ZeroDuration());
  auto second = limiter_->TakeEach({{from, requester}, {to, target}});
  ASSERT_TRUE(second.ok()) << second.status();
  EXPECT_EQ((*second)[0], absl::ZeroDuration());  // the requester's second token
  EXPECT_GT((*second)[1], absl::Seconds(990));    // one token per 1000 s, none left
  EXPECT_LE((*second)[1], absl::Seconds(1000));
  // The requester's bucket gave both its tokens.
  auto third = limiter_->Take(from, requester);
  ASSERT_TRUE(third.ok()) << third.status();
  EXPECT_GT(*third, absl::Seconds(990));
}

TEST_P(RedisRateLimiterTest, WaitsAreReportedPerBucketInOrder) {
  const auto [from, to] = Buckets();
  const RateLimit fast{.burst = 1, .per_second = 1};
  const RateLimit slow{.burst = 1, .per_second = 0.001};
  ASSERT_TRUE(limiter_->TakeEach({{from, fast}, {to, slow}}).ok());
  auto waits = limiter_->TakeEach({{from, fast}, {to, slow}});
  ASSERT_TRUE(waits.ok()) << waits.status();
  ASSERT_EQ(waits->size(), 2u);
  EXPECT_GT((*waits)[0], absl::ZeroDuration());
  EXPECT_LE((*waits)[0], absl::Seconds(1));
  EXPECT_GT((*waits)[1], absl::Seconds(990));
}

TEST_P(RedisRateLimiterTest, NoBucketsIsNoRoundTrip) {
  const uint64_t pipelines = ClientCalls(registry_, "pipeline");
  auto waits = limiter_->TakeEach({});
  ASSERT_TRUE(waits.ok()) << waits.status();
  EXPECT_TRUE(waits->empty());
  EXPECT_EQ(ClientCalls(registry_, "pipeline"), pipelines);
}

TEST(RedisRateLimiterDown, TakeEachIsUnavailableWhenRedisIsDown) {
  auto server = RedisServer::Start();
  ASSERT_TRUE(server.ok()) << server.status();
  redis::RedisOptions options;
  options.addresses = {(*server)->address()};
  auto client = redis::RedisClient::Create(options);
  ASSERT_TRUE(client.ok()) << client.status();
  RedisRateLimiter limiter(client->get());
  const RateLimit limit{.burst = 5, .per_second = 1};
  ASSERT_TRUE(limiter.TakeEach({{"rl:a", limit}, {"rl:b", limit}}).ok());
  ASSERT_TRUE((*server)->Stop().ok());
  auto waits = limiter.TakeEach({{"rl:a", limit}, {"rl:b", limit}});
  EXPECT_TRUE(absl::IsUnavailable(waits.status())) << waits.status();
}

}  // namespace
}  // namespace padlock::ratelimit
