// PresenceRegistry with the in-memory store, a recording publisher and a manual clock.
#include "services/presence/presence_registry.h"

#include <prometheus/registry.h>

#include <memory>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/fakes/manual_clock.h"
#include "tests/fakes/in_memory_presence_store.h"

namespace padlock::presence {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using testing::InMemoryPresenceStore;
using testing::RecordingPublisher;

constexpr int64_t kStart = 1'700'000'000'000;
constexpr int64_t kTtl = 60'000;

const DeviceKey kAlice1{"alice", 1};
const DeviceKey kAlice2{"alice", 2};
const DeviceKey kBob1{"bob", 1};
const DeviceKey kCarol1{"carol", 1};

class RegistryTest : public ::testing::Test {
 protected:
  static StoreTimings Timings() {
    StoreTimings t;
    t.entry_ttl_ms = kTtl;
    t.rate_burst = 3;
    t.rate_refill_ms = 1000;
    return t;
  }
  static PresenceOptions Options() {
    PresenceOptions o;
    o.max_subscriptions = 5;
    return o;
  }

  std::vector<PresenceView> Subscribe(const DeviceKey& who, std::vector<std::string> users) {
    absl::StatusOr<std::vector<PresenceView>> views = registry_.Subscribe(who, users);
    EXPECT_TRUE(views.ok()) << views.status();
    return views.ok() ? *views : std::vector<PresenceView>();
  }
  // Events received by `to`, in order.
  std::vector<PresenceView> EventsFor(const DeviceKey& to) {
    std::vector<PresenceView> out;
    for (const auto& e : publisher_.presence()) {
      if (e.to == to) out.push_back(e.view);
    }
    return out;
  }
  double Metric(const std::string& name) {
    for (const auto& family : metrics_.Collect()) {
      if (family.name != name || family.metric.empty()) continue;
      return family.type == prometheus::MetricType::Gauge ? family.metric[0].gauge.value
                                                          : family.metric[0].counter.value;
    }
    return -1;
  }

  padlock::testing::ManualClock clock_{kStart};
  InMemoryPresenceStore store_{Timings()};
  RecordingPublisher publisher_;
  prometheus::Registry metrics_;
  PresenceRegistry registry_{Options(), &store_, &publisher_, &clock_, &metrics_};
};

TEST_F(RegistryTest, EveryConnectGetsAStrictlyGreaterEpoch) {
  absl::StatusOr<uint64_t> first = registry_.Connect(kAlice1, "gw-a", Visibility::kEveryone);
  absl::StatusOr<uint64_t> second = registry_.Connect(kAlice1, "gw-b", Visibility::kUnspecified);
  absl::StatusOr<uint64_t> other = registry_.Connect(kAlice2, "gw-a", Visibility::kUnspecified);
  ASSERT_TRUE(first.ok() && second.ok() && other.ok());
  EXPECT_EQ(*first, 1u);
  EXPECT_EQ(*second, 2u);
  EXPECT_EQ(*other, 1u);  // epochs count per device
}

TEST_F(RegistryTest, ConnectTellsTheOlderConnectionItIsDisplaced) {
  ASSERT_TRUE(registry_.Connect(kAlice1, "gw-a", Visibility::kEveryone).ok());
  EXPECT_TRUE(publisher_.displaced().empty());
  absl::StatusOr<uint64_t> second = registry_.Connect(kAlice1, "gw-b", Visibility::kUnspecified);
  ASSERT_TRUE(second.ok());
  ASSERT_EQ(publisher_.displaced().size(), 1u);
  EXPECT_EQ(publisher_.displaced()[0].device, kAlice1);
  EXPECT_EQ(publisher_.displaced()[0].epoch, *second);
  EXPECT_EQ(Metric("padlock_presence_displacements_total"), 1);
  EXPECT_EQ(Metric("padlock_presence_connects_total"), 2);
}

TEST_F(RegistryTest, DisconnectWithStaleEpochChangesNothing) {
  uint64_t old_epoch = *registry_.Connect(kAlice1, "gw-a", Visibility::kEveryone);
  uint64_t new_epoch = *registry_.Connect(kAlice1, "gw-b", Visibility::kUnspecified);
  absl::StatusOr<bool> stale = registry_.Disconnect(kAlice1, old_epoch);
  ASSERT_TRUE(stale.ok());
  EXPECT_FALSE(*stale);
  absl::StatusOr<std::vector<Location>> where = registry_.Locate({kAlice1});
  ASSERT_TRUE(where.ok());
  ASSERT_EQ(where->size(), 1u);
  EXPECT_EQ((*where)[0].epoch, new_epoch);
  EXPECT_EQ((*where)[0].gateway_id, "gw-b");
  EXPECT_EQ(Metric("padlock_presence_disconnects_total"), 0);
  EXPECT_EQ(*registry_.Disconnect(kAlice1, new_epoch), true);
  EXPECT_TRUE(registry_.Locate({kAlice1})->empty());
}

TEST_F(RegistryTest, HeartbeatReturnsDisplacedUnknownAndForeignConnectionsAsStale) {
  uint64_t a1 = *registry_.Connect(kAlice1, "gw-a", Visibility::kEveryone);
  uint64_t b1 = *registry_.Connect(kBob1, "gw-a", Visibility::kEveryone);
  uint64_t a1_new = *registry_.Connect(kAlice1, "gw-b", Visibility::kUnspecified);
  absl::StatusOr<std::vector<Connection>> stale =
      registry_.Heartbeat("gw-a", {{kAlice1, a1}, {kBob1, b1}, {kCarol1, 7}});
  ASSERT_TRUE(stale.ok());
  ASSERT_EQ(stale->size(), 2u);
  EXPECT_EQ((*stale)[0].device, kAlice1);
  EXPECT_EQ((*stale)[0].epoch, a1);
  EXPECT_EQ((*stale)[1].device, kCarol1);
  // The current connection reported by another gateway is not that gateway's to keep alive.
  stale = registry_.Heartbeat("gw-a", {{kAlice1, a1_new}});
  ASSERT_TRUE(stale.ok());
  EXPECT_EQ(stale->size(), 1u);
}

TEST_F(RegistryTest, HeartbeatKeepsEntriesAliveAndSilenceExpiresThem) {
  uint64_t a1 = *registry_.Connect(kAlice1, "gw-a", Visibility::kEveryone);
  Subscribe(kBob1, {"alice"});
  clock_.Advance(absl::Milliseconds(kTtl - 1));
  ASSERT_TRUE(registry_.Heartbeat("gw-a", {{kAlice1, a1}})->empty());
  const int64_t last_heartbeat = clock_.NowMs();
  clock_.Advance(absl::Milliseconds(kTtl - 1));
  EXPECT_EQ(*registry_.Sweep(), 0);
  EXPECT_TRUE((*registry_.Query({"alice"}))[0].online);
  clock_.Advance(absl::Milliseconds(1));  // exactly TTL after the last heartbeat
  EXPECT_EQ(*registry_.Sweep(), 1);
  EXPECT_THAT(EventsFor(kBob1), ElementsAre(PresenceView{"alice", false, last_heartbeat}));
  EXPECT_THAT(*registry_.Query({"alice"}), ElementsAre(PresenceView{"alice", false,
                                                                    last_heartbeat}));
  EXPECT_EQ(Metric("padlock_presence_expired_total"), 1);
  EXPECT_EQ(Metric("padlock_presence_online_devices"), 0);
  // A heartbeat after expiry cannot revive it: the gateway must close and reconnect.
  EXPECT_EQ(registry_.Heartbeat("gw-a", {{kAlice1, a1}})->size(), 1u);
  EXPECT_EQ(*registry_.Sweep(), 0);  // reported once only
}

TEST_F(RegistryTest, SubscribersHearOnlineAndOfflineWithLastSeen) {
  ASSERT_TRUE(registry_.SetVisibility("alice", Visibility::kEveryone).ok());
  EXPECT_THAT(Subscribe(kBob1, {"alice"}), ElementsAre(PresenceView{"alice", false, 0}));
  uint64_t a1 = *registry_.Connect(kAlice1, "gw-a", Visibility::kUnspecified);
  uint64_t a2 = *registry_.Connect(kAlice2, "gw-a", Visibility::kUnspecified);
  clock_.Advance(absl::Milliseconds(5000));
  EXPECT_TRUE(*registry_.Disconnect(kAlice1, a1));  // alice:2 still online: no event
  clock_.Advance(absl::Milliseconds(5000));
  EXPECT_TRUE(*registry_.Disconnect(kAlice2, a2));
  EXPECT_THAT(EventsFor(kBob1), ElementsAre(PresenceView{"alice", true, 0},
                                            PresenceView{"alice", false, kStart + 10'000}));
  EXPECT_EQ(Metric("padlock_presence_events_published_total"), 2);
}

TEST_F(RegistryTest, NobodyUserIsNeverRevealed) {
  Subscribe(kBob1, {"alice"});
  uint64_t a1 = *registry_.Connect(kAlice1, "gw-a", Visibility::kNobody);
  EXPECT_THAT(Subscribe(kBob1, {"alice"}), ElementsAre(PresenceView{"alice", false, 0}));
  EXPECT_THAT(*registry_.Query({"alice"}), ElementsAre(PresenceView{"alice", false, 0}));
  clock_.Advance(absl::Milliseconds(1000));
  ASSERT_TRUE(*registry_.Disconnect(kAlice1, a1));
  EXPECT_THAT(*registry_.Query({"alice"}), ElementsAre(PresenceView{"alice", false, 0}));
  EXPECT_TRUE(EventsFor(kBob1).empty());
}

TEST_F(RegistryTest, UnknownVisibilityFailsClosed) {
  // Never set: connects with UNSPECIFIED keep the stored value, which is absent = nobody.
  Subscribe(kBob1, {"alice"});
  ASSERT_TRUE(registry_.Connect(kAlice1, "gw-a", Visibility::kUnspecified).ok());
  EXPECT_THAT(*registry_.Query({"alice"}), ElementsAre(PresenceView{"alice", false, 0}));
  EXPECT_TRUE(EventsFor(kBob1).empty());
  // SetVisibility(UNSPECIFIED) stores nobody.
  ASSERT_TRUE(registry_.SetVisibility("alice", Visibility::kEveryone).ok());
  EXPECT_TRUE((*registry_.Query({"alice"}))[0].online);
  ASSERT_TRUE(registry_.SetVisibility("alice", Visibility::kUnspecified).ok());
  EXPECT_THAT(*registry_.Query({"alice"}), ElementsAre(PresenceView{"alice", false, 0}));
  EXPECT_EQ(PresenceRegistry::ViewOf(UserState{"x", true, 5, Visibility::kUnspecified}),
            (PresenceView{"x", false, 0}));
}

TEST_F(RegistryTest, SwitchingToNobodyTellsSubscribersOfflineWithoutLastSeen) {
  ASSERT_TRUE(registry_.Connect(kAlice1, "gw-a", Visibility::kEveryone).ok());
  Subscribe(kBob1, {"alice"});
  ASSERT_TRUE(registry_.SetVisibility("alice", Visibility::kNobody).ok());
  EXPECT_THAT(EventsFor(kBob1), ElementsAre(PresenceView{"alice", false, 0}));
}

TEST_F(RegistryTest, SubscribeReplacesTheWatchedSet) {
  ASSERT_TRUE(registry_.SetVisibility("alice", Visibility::kEveryone).ok());
  ASSERT_TRUE(registry_.SetVisibility("carol", Visibility::kEveryone).ok());
  Subscribe(kBob1, {"alice"});
  Subscribe(kBob1, {"carol"});
  ASSERT_TRUE(registry_.Connect(kAlice1, "gw-a", Visibility::kUnspecified).ok());
  ASSERT_TRUE(registry_.Connect(kCarol1, "gw-a", Visibility::kUnspecified).ok());
  EXPECT_THAT(EventsFor(kBob1), ElementsAre(PresenceView{"carol", true, 0}));
}

TEST_F(RegistryTest, SubscriptionsExpireAfterTheirTtl) {
  ASSERT_TRUE(registry_.SetVisibility("alice", Visibility::kEveryone).ok());
  Subscribe(kBob1, {"alice"});
  clock_.Advance(absl::Milliseconds(Timings().subscription_ttl_ms));
  ASSERT_TRUE(registry_.Connect(kAlice1, "gw-a", Visibility::kUnspecified).ok());
  EXPECT_TRUE(EventsFor(kBob1).empty());
}

TEST_F(RegistryTest, SubscribeOverTheLimitIsResourceExhausted) {
  absl::StatusOr<std::vector<PresenceView>> over =
      registry_.Subscribe(kBob1, {"u01", "u02", "u03", "u04", "u05", "u06"});
  EXPECT_EQ(over.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(over.status().message(), HasSubstr("at most 5"));
  // Duplicates count once.
  EXPECT_EQ(Subscribe(kBob1, {"u01", "u02", "u03", "u04", "u05", "u01"}).size(), 5u);
}

TEST_F(RegistryTest, SubscriptionChangesAreRateLimitedPerDevice) {
  for (int i = 0; i < 3; ++i) Subscribe(kBob1, {"alice"});
  absl::StatusOr<std::vector<PresenceView>> refused = registry_.Subscribe(kBob1, {"alice"});
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(refused.status().message(), HasSubstr("retry after 1000 ms"));
  EXPECT_EQ(refused.status().GetPayload(kRetryAfterPayload), absl::Cord("1000"));
  Subscribe(kCarol1, {"alice"});  // another device has its own bucket
  clock_.Advance(absl::Milliseconds(400));
  refused = registry_.Subscribe(kBob1, {"alice"});
  EXPECT_EQ(refused.status().GetPayload(kRetryAfterPayload), absl::Cord("600"));
  clock_.Advance(absl::Milliseconds(600));
  Subscribe(kBob1, {"alice"});
}

TEST_F(RegistryTest, SecondDeviceKeepsTheUserOnline) {
  ASSERT_TRUE(registry_.SetVisibility("alice", Visibility::kEveryone).ok());
  Subscribe(kBob1, {"alice"});
  uint64_t a1 = *registry_.Connect(kAlice1, "gw-a", Visibility::kUnspecified);
  ASSERT_TRUE(registry_.Connect(kAlice2, "gw-b", Visibility::kUnspecified).ok());
  ASSERT_TRUE(*registry_.Disconnect(kAlice1, a1));
  EXPECT_TRUE((*registry_.Query({"alice"}))[0].online);
  EXPECT_THAT(EventsFor(kBob1), ElementsAre(PresenceView{"alice", true, 0}));
}

TEST_F(RegistryTest, StoreFailuresSurfaceAsUnavailable) {
  store_.SetUnavailable(true);
  EXPECT_EQ(registry_.Connect(kAlice1, "gw-a", Visibility::kEveryone).status().code(),
            absl::StatusCode::kUnavailable);
  EXPECT_EQ(registry_.Query({"alice"}).status().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(registry_.Sweep().status().code(), absl::StatusCode::kUnavailable);
}

}  // namespace
}  // namespace padlock::presence
