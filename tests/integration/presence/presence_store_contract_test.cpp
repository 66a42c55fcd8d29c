// One typed suite for the PresenceStore contract, run on the in-memory fake and on
// RedisPresenceStore (standalone redis-server), so that the fake the unit tests use stays honest.
// Time is passed explicitly (a virtual clock near the real one, so Redis key TTLs never fire).
#include <memory>
#include <string>
#include <vector>

#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "services/common/redis/redis_client.h"
#include "services/presence/redis_presence_store.h"
#include "tests/harness/redis_server.h"
#include "tests/fakes/in_memory_presence_store.h"

namespace padlock::presence {
namespace {

constexpr int64_t kTtl = 1000;

StoreTimings Timings() {
  StoreTimings t;
  t.entry_ttl_ms = kTtl;
  t.subscription_ttl_ms = 10'000;
  t.rate_burst = 2;
  t.rate_refill_ms = 500;
  return t;
}

struct FakeFactory {
  std::unique_ptr<PresenceStore> Make() {
    return std::make_unique<testing::InMemoryPresenceStore>(Timings());
  }
};

struct RedisFactory {
  std::unique_ptr<redis::RedisClient> client;
  std::unique_ptr<PresenceStore> Make() {
    // One server for the whole binary, stopped at exit; each test starts from FLUSHALL.
    static std::unique_ptr<padlock::testing::RedisServer> server =
        *padlock::testing::RedisServer::Start();
    EXPECT_TRUE(server->FlushAll().ok());
    redis::RedisOptions options;
    options.addresses = {server->address()};
    client = *redis::RedisClient::Create(options);
    return std::make_unique<RedisPresenceStore>(client.get(), Timings());
  }
};

template <typename Factory>
class StoreContractTest : public ::testing::Test {
 protected:
  void SetUp() override { store_ = factory_.Make(); }
  Factory factory_;
  std::unique_ptr<PresenceStore> store_;
  const int64_t t0_ = absl::ToUnixMillis(absl::Now());
};

using Factories = ::testing::Types<FakeFactory, RedisFactory>;
TYPED_TEST_SUITE(StoreContractTest, Factories);

const DeviceKey kA1{"alice", 1};
const DeviceKey kA2{"alice", 2};
const DeviceKey kB1{"bob", 1};

TYPED_TEST(StoreContractTest, ConnectAssignsEpochsAndReportsTheDisplaced) {
  auto first = this->store_->Connect(kA1, "gw-a", Visibility::kEveryone, this->t0_);
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_EQ(first->epoch, 1u);
  EXPECT_EQ(first->displaced_epoch, 0u);
  EXPECT_TRUE(first->came_online);
  EXPECT_EQ(first->previous_visibility, Visibility::kNobody);
  EXPECT_EQ(first->user.visibility, Visibility::kEveryone);
  auto second = this->store_->Connect(kA1, "gw-b", Visibility::kUnspecified, this->t0_ + 1);
  ASSERT_TRUE(second.ok());
  EXPECT_EQ(second->epoch, 2u);
  EXPECT_EQ(second->displaced_epoch, 1u);
  EXPECT_FALSE(second->came_online);
  EXPECT_EQ(second->user.visibility, Visibility::kEveryone);
  // An expired entry is not "displaced".
  auto third = this->store_->Connect(kA1, "gw-c", Visibility::kUnspecified, this->t0_ + 5000);
  EXPECT_EQ(third->displaced_epoch, 0u);
  EXPECT_TRUE(third->came_online);
}

TYPED_TEST(StoreContractTest, DisconnectOnlyEndsTheCurrentEpoch) {
  this->store_->Connect(kA1, "gw-a", Visibility::kEveryone, this->t0_).IgnoreError();
  this->store_->Connect(kA1, "gw-a", Visibility::kUnspecified, this->t0_).IgnoreError();
  this->store_->Connect(kA2, "gw-a", Visibility::kUnspecified, this->t0_).IgnoreError();
  auto stale = this->store_->Disconnect(kA1, 1, this->t0_ + 10);
  ASSERT_TRUE(stale.ok());
  EXPECT_FALSE(stale->was_current);
  auto current = this->store_->Disconnect(kA1, 2, this->t0_ + 20);
  EXPECT_TRUE(current->was_current);
  EXPECT_FALSE(current->went_offline);
  auto last = this->store_->Disconnect(kA2, 1, this->t0_ + 30);
  EXPECT_TRUE(last->went_offline);
  EXPECT_EQ(last->user.last_seen_ms, this->t0_ + 30);
  EXPECT_FALSE(last->user.online);
}

TYPED_TEST(StoreContractTest, HeartbeatExtendsCurrentEntriesOnly) {
  auto a = this->store_->Connect(kA1, "gw-a", Visibility::kEveryone, this->t0_);
  auto b = this->store_->Connect(kB1, "gw-a", Visibility::kEveryone, this->t0_);
  std::vector<Connection> conns = {{kA1, a->epoch}, {kB1, b->epoch + 1}, {kA2, 1}};
  auto stale = this->store_->Heartbeat("gw-a", conns, this->t0_ + 900);
  ASSERT_TRUE(stale.ok()) << stale.status();
  ASSERT_EQ(stale->size(), 2u);
  EXPECT_EQ((*stale)[0].device, kB1);
  EXPECT_EQ((*stale)[1].device, kA2);
  EXPECT_EQ(this->store_->Heartbeat("gw-other", {{kA1, a->epoch}}, this->t0_ + 900)->size(), 1u);
  auto users = this->store_->Read({"alice", "bob"}, this->t0_ + 1500);
  EXPECT_TRUE((*users)[0].online);   // extended to t0 + 1900
  EXPECT_FALSE((*users)[1].online);  // expired at t0 + 1000
  EXPECT_EQ(this->store_->Heartbeat("gw-a", {{kB1, b->epoch}}, this->t0_ + 1500)->size(), 1u);
  auto where = this->store_->Locate({kA1, kB1}, this->t0_ + 1500);
  ASSERT_EQ(where->size(), 1u);
  EXPECT_EQ((*where)[0].gateway_id, "gw-a");
  EXPECT_EQ((*where)[0].connected_at_ms, this->t0_);
}

TYPED_TEST(StoreContractTest, SweepReportsEachExpiryOnce) {
  auto a = this->store_->Connect(kA1, "gw-a", Visibility::kEveryone, this->t0_);
  this->store_->Connect(kA2, "gw-a", Visibility::kEveryone, this->t0_).IgnoreError();
  this->store_->Heartbeat("gw-a", {{kA1, a->epoch}}, this->t0_ + 500).IgnoreError();
  auto first = this->store_->SweepExpired("r1", this->t0_ + 1200, 100);
  ASSERT_TRUE(first.ok()) << first.status();
  ASSERT_EQ(first->size(), 1u);  // alice:2 expired, alice:1 still live
  EXPECT_FALSE((*first)[0].went_offline);
  EXPECT_EQ((*first)[0].devices, 1);
  auto second = this->store_->SweepExpired("r2", this->t0_ + 1600, 100);
  ASSERT_EQ(second->size(), 1u);
  EXPECT_TRUE((*second)[0].went_offline);
  EXPECT_EQ((*second)[0].user.last_seen_ms, this->t0_ + 500);  // the last heartbeat
  EXPECT_TRUE(this->store_->SweepExpired("r1", this->t0_ + 1700, 100)->empty());
  EXPECT_EQ(*this->store_->CountEntries(), 0);
}

TYPED_TEST(StoreContractTest, VisibilityIsNobodyUntilSet) {
  auto users = this->store_->Read({"alice"}, this->t0_);
  EXPECT_EQ((*users)[0].visibility, Visibility::kNobody);
  EXPECT_EQ((*users)[0].last_seen_ms, 0);
  auto set = this->store_->SetVisibility("alice", Visibility::kEveryone, this->t0_);
  EXPECT_EQ(set->visibility, Visibility::kEveryone);
  EXPECT_EQ((*this->store_->Read({"alice"}, this->t0_))[0].visibility, Visibility::kEveryone);
}

TYPED_TEST(StoreContractTest, LastSeenIsNotStoredWhileVisibilityIsNobody) {
  // Nobody (the default): going offline, by disconnect or by expiry, stores no last seen.
  auto a = this->store_->Connect(kA1, "gw-a", Visibility::kUnspecified, this->t0_);
  auto gone = this->store_->Disconnect(kA1, a->epoch, this->t0_ + 10);
  ASSERT_TRUE(gone.ok()) << gone.status();
  EXPECT_TRUE(gone->went_offline);
  EXPECT_EQ(gone->user.last_seen_ms, 0);
  this->store_->Connect(kB1, "gw-a", Visibility::kNobody, this->t0_).IgnoreError();
  auto swept = this->store_->SweepExpired("r1", this->t0_ + 1500, 100);
  ASSERT_TRUE(swept.ok()) << swept.status();
  ASSERT_EQ(swept->size(), 1u);
  EXPECT_TRUE((*swept)[0].went_offline);
  EXPECT_EQ((*swept)[0].user.last_seen_ms, 0);
  // Switching to everyone later reveals nothing from the nobody period.
  auto now_everyone = this->store_->SetVisibility("alice", Visibility::kEveryone, this->t0_ + 20);
  EXPECT_EQ(now_everyone->last_seen_ms, 0);
  auto users = this->store_->Read({"alice", "bob"}, this->t0_ + 1600);
  EXPECT_EQ((*users)[0].last_seen_ms, 0);
  EXPECT_EQ((*users)[1].last_seen_ms, 0);
}

TYPED_TEST(StoreContractTest, SwitchingToNobodyDeletesLastSeen) {
  auto a = this->store_->Connect(kA1, "gw-a", Visibility::kEveryone, this->t0_);
  auto gone = this->store_->Disconnect(kA1, a->epoch, this->t0_ + 10);
  EXPECT_EQ(gone->user.last_seen_ms, this->t0_ + 10);  // everyone: kept
  auto nobody = this->store_->SetVisibility("alice", Visibility::kNobody, this->t0_ + 20);
  ASSERT_TRUE(nobody.ok()) << nobody.status();
  EXPECT_EQ(nobody->last_seen_ms, 0);
  // Deleted, not hidden: switching back finds nothing.
  auto back = this->store_->SetVisibility("alice", Visibility::kEveryone, this->t0_ + 30);
  EXPECT_EQ(back->last_seen_ms, 0);
  // A switch carried by a connect deletes it too.
  auto b = this->store_->Connect(kB1, "gw-a", Visibility::kEveryone, this->t0_);
  this->store_->Disconnect(kB1, b->epoch, this->t0_ + 10).IgnoreError();
  auto again = this->store_->Connect(kB1, "gw-a", Visibility::kNobody, this->t0_ + 40);
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(again->user.last_seen_ms, 0);
  auto users = this->store_->Read({"bob"}, this->t0_ + 50);
  EXPECT_EQ((*users)[0].last_seen_ms, 0);
}

TYPED_TEST(StoreContractTest, TokenBucketRefillsInIntegerMilliseconds) {
  EXPECT_TRUE(this->store_->TakeSubscribeToken(kB1, this->t0_)->allowed);
  EXPECT_TRUE(this->store_->TakeSubscribeToken(kB1, this->t0_)->allowed);
  auto refused = this->store_->TakeSubscribeToken(kB1, this->t0_ + 100);
  EXPECT_FALSE(refused->allowed);
  EXPECT_EQ(refused->retry_after_ms, 400);
  EXPECT_TRUE(this->store_->TakeSubscribeToken(kB1, this->t0_ + 500)->allowed);
}

TYPED_TEST(StoreContractTest, SubscriptionsReplaceAndExpire) {
  this->store_->ReplaceSubscriptions(kB1, {"alice", "carol"}, this->t0_).IgnoreError();
  this->store_->ReplaceSubscriptions(kB1, {"carol"}, this->t0_ + 1).IgnoreError();
  EXPECT_TRUE(this->store_->Subscribers("alice", this->t0_ + 2)->empty());
  auto carol = this->store_->Subscribers("carol", this->t0_ + 2);
  ASSERT_EQ(carol->size(), 1u);
  EXPECT_EQ((*carol)[0], kB1);
  EXPECT_TRUE(this->store_->Subscribers("carol", this->t0_ + 10'001)->empty());
}

}  // namespace
}  // namespace padlock::presence
