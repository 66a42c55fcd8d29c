// Presence end to end on real Redis — a standalone server and a 3-master Redis Cluster
// (parameterised) — through real gRPC: two in-process presence replicas (ServiceRunner on port
// 0) serve the same Redis, as two pods would. A RedisSubscriber on a subscriber's device channel
// plays the gateway and collects DeviceChannelEvents.
#include <grpcpp/grpcpp.h>

#include <atomic>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "padlock/v1/presence.grpc.pb.h"
#include "services/common/channels/device_channel.h"
#include "services/common/redis/redis_client.h"
#include "services/common/redis/redis_subscriber.h"
#include "services/common/runtime/executor.h"
#include "services/common/runtime/server.h"
#include "services/presence/presence_registry.h"
#include "services/presence/presence_service.h"
#include "services/presence/presence_sweeper.h"
#include "services/presence/redis_event_publisher.h"
#include "services/presence/redis_presence_store.h"
#include "tests/harness/harness.h"
#include "tests/harness/redis_modes.h"
#include "tests/harness/redis_server.h"

namespace padlock::presence {
namespace {

namespace v1 = padlock::v1;
using ::testing::HasSubstr;
using padlock::testing::WaitFor;

// Ten heartbeat periods (200 ms): a loaded machine can delay a heartbeat by seconds without a
// live connection expiring.
constexpr int64_t kEntryTtlMs = 2000;
constexpr int kMaxSubscriptions = 5;
constexpr int kRateBurst = 4;

using Mode = padlock::testing::RedisTestMode;

// One presence replica: its own Redis client, logic, executor, sweeper and gRPC server.
class Replica {
 public:
  Replica(const redis::RedisOptions& redis_options, const std::string& id) {
    redis_ = *redis::RedisClient::Create(redis_options);
    StoreTimings timings;
    timings.entry_ttl_ms = kEntryTtlMs;
    timings.rate_burst = kRateBurst;
    timings.rate_refill_ms = 60'000;
    store_ = std::make_unique<RedisPresenceStore>(redis_.get(), timings);
    publisher_ = std::make_unique<RedisEventPublisher>(redis_.get());
    runtime::ServerOptions server_options;
    server_options.service_name = "presence";
    server_options.listen_address = "127.0.0.1:0";
    server_options.metrics_host = "127.0.0.1";
    server_options.metrics_port = 0;
    server_options.handle_signals = false;
    server_options.grace_period = absl::Seconds(1);
    runner_ = std::make_unique<runtime::ServiceRunner>(server_options);
    PresenceOptions options;
    options.max_subscriptions = kMaxSubscriptions;
    options.replica_id = id;
    registry_ = std::make_unique<PresenceRegistry>(options, store_.get(), publisher_.get(),
                                                   &clock_, &runner_->metrics());
    executor_ = std::make_unique<runtime::BoundedExecutor>("presence", 4, 256);
    service_ = std::make_unique<PresenceService>(registry_.get(), executor_.get(), ServiceLimits{});
    runner_->AddService(service_.get());
    absl::Status started = runner_->Start();
    EXPECT_TRUE(started.ok()) << started;
    sweeper_ = std::make_unique<PresenceSweeper>(registry_.get(), absl::Milliseconds(100));
    stub_ = v1::Presence::NewStub(
        grpc::CreateChannel(absl::StrCat("127.0.0.1:", runner_->grpc_port()),
                            grpc::InsecureChannelCredentials()));
  }
  ~Replica() {
    sweeper_->Stop();
    runner_->RequestShutdown();
    runner_->Wait();
    executor_->Shutdown();
  }
  v1::Presence::Stub& stub() { return *stub_; }

 private:
  runtime::SystemClock clock_;
  std::unique_ptr<redis::RedisClient> redis_;
  std::unique_ptr<RedisPresenceStore> store_;
  std::unique_ptr<RedisEventPublisher> publisher_;
  std::unique_ptr<runtime::ServiceRunner> runner_;
  std::unique_ptr<PresenceRegistry> registry_;
  std::unique_ptr<runtime::BoundedExecutor> executor_;
  std::unique_ptr<PresenceService> service_;
  std::unique_ptr<PresenceSweeper> sweeper_;
  std::unique_ptr<v1::Presence::Stub> stub_;
};

// Collects the events published on device channels, as a gateway would receive them.
class ChannelProbe {
 public:
  explicit ChannelProbe(redis::RedisClient* client) {
    redis::RedisSubscriber::Callbacks callbacks;
    callbacks.on_message = [this](std::string_view channel, std::string_view payload) {
      v1::DeviceChannelEvent event;
      EXPECT_TRUE(event.ParseFromArray(payload.data(), static_cast<int>(payload.size())));
      std::lock_guard<std::mutex> lock(mu_);
      events_.push_back({std::string(channel), event});
    };
    subscriber_ = *redis::RedisSubscriber::Start(client, std::move(callbacks));
  }
  // Subscribes to the device channel and waits for the server's confirmation.
  void Listen(const std::string& user, uint32_t device) {
    const std::string channel = channels::DeviceChannel(user, device);
    subscriber_->Subscribe(channel);
    ASSERT_TRUE(WaitFor([&] { return subscriber_->IsActive(channel); }, absl::Seconds(10)));
  }
  std::vector<v1::DeviceChannelEvent> EventsOn(const std::string& user, uint32_t device) {
    const std::string channel = channels::DeviceChannel(user, device);
    std::lock_guard<std::mutex> lock(mu_);
    std::vector<v1::DeviceChannelEvent> out;
    for (const auto& [c, e] : events_) {
      if (c == channel) out.push_back(e);
    }
    return out;
  }
  // Presence events about `about` received on the device channel of user:device.
  std::vector<v1::PresenceStatus> PresenceOn(const std::string& user, uint32_t device,
                                             const std::string& about) {
    std::vector<v1::PresenceStatus> out;
    for (const auto& e : EventsOn(user, device)) {
      if (e.has_presence() && e.presence().user_id() == about) out.push_back(e.presence());
    }
    return out;
  }

 private:
  std::mutex mu_;
  std::vector<std::pair<std::string, v1::DeviceChannelEvent>> events_;
  std::unique_ptr<redis::RedisSubscriber> subscriber_;
};

v1::DeviceAddress Address(const std::string& user, uint32_t device) {
  v1::DeviceAddress a;
  a.set_user_id(user);
  a.set_device_id(device);
  return a;
}

void Deadline(grpc::ClientContext& context) {
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
}

class PresenceIntegrationTest : public padlock::testing::RedisModeTest {
 protected:
  void SetUp() override {
    RedisModeTest::SetUp();
    if (HasFatalFailure()) return;
    options_ = redis_options_;
    a_ = std::make_unique<Replica>(options_, "replica-a");
    b_ = std::make_unique<Replica>(options_, "replica-b");
    probe_client_ = *redis::RedisClient::Create(options_);
    probe_ = std::make_unique<ChannelProbe>(probe_client_.get());
  }
  void TearDown() override {
    probe_.reset();
    a_.reset();
    b_.reset();
  }

  static grpc::Status Connect(Replica& r, const std::string& user, uint32_t device,
                              const std::string& gateway, v1::PresenceVisibility visibility,
                              uint64_t* epoch) {
    v1::ConnectRequest req;
    *req.mutable_device() = Address(user, device);
    req.set_gateway_id(gateway);
    req.set_visibility(visibility);
    v1::ConnectResponse resp;
    grpc::ClientContext context;
    Deadline(context);
    grpc::Status s = r.stub().Connect(&context, req, &resp);
    if (epoch != nullptr) *epoch = resp.epoch();
    return s;
  }
  static uint64_t MustConnect(Replica& r, const std::string& user, uint32_t device,
                              const std::string& gateway,
                              v1::PresenceVisibility visibility =
                                  v1::PRESENCE_VISIBILITY_UNSPECIFIED) {
    uint64_t epoch = 0;
    grpc::Status s = Connect(r, user, device, gateway, visibility, &epoch);
    EXPECT_TRUE(s.ok()) << s.error_message();
    return epoch;
  }
  static bool Disconnect(Replica& r, const std::string& user, uint32_t device, uint64_t epoch) {
    v1::DisconnectRequest req;
    *req.mutable_device() = Address(user, device);
    req.set_epoch(epoch);
    v1::DisconnectResponse resp;
    grpc::ClientContext context;
    Deadline(context);
    grpc::Status s = r.stub().Disconnect(&context, req, &resp);
    EXPECT_TRUE(s.ok()) << s.error_message();
    return resp.was_current();
  }
  static std::vector<v1::DeviceConnection> Heartbeat(
      Replica& r, const std::string& gateway,
      const std::vector<std::tuple<std::string, uint32_t, uint64_t>>& connections) {
    v1::HeartbeatRequest req;
    req.set_gateway_id(gateway);
    for (const auto& [user, device, epoch] : connections) {
      v1::DeviceConnection* c = req.add_connections();
      *c->mutable_device() = Address(user, device);
      c->set_epoch(epoch);
    }
    v1::HeartbeatResponse resp;
    grpc::ClientContext context;
    Deadline(context);
    grpc::Status s = r.stub().Heartbeat(&context, req, &resp);
    EXPECT_TRUE(s.ok()) << s.error_message();
    return {resp.stale().begin(), resp.stale().end()};
  }
  static grpc::Status Subscribe(Replica& r, const std::string& user, uint32_t device,
                                const std::vector<std::string>& watched,
                                v1::SubscribeResponse* resp,
                                grpc::ClientContext* context = nullptr) {
    v1::SubscribeRequest req;
    *req.mutable_subscriber() = Address(user, device);
    for (const std::string& w : watched) req.add_user_ids(w);
    grpc::ClientContext local;
    grpc::ClientContext* c = context != nullptr ? context : &local;
    Deadline(*c);
    return r.stub().Subscribe(c, req, resp);
  }
  static std::vector<v1::PresenceStatus> Query(Replica& r, const std::vector<std::string>& users) {
    v1::QueryRequest req;
    *req.mutable_requester() = Address("zed", 1);
    for (const std::string& u : users) req.add_user_ids(u);
    v1::QueryResponse resp;
    grpc::ClientContext context;
    Deadline(context);
    grpc::Status s = r.stub().Query(&context, req, &resp);
    EXPECT_TRUE(s.ok()) << s.error_message();
    return {resp.statuses().begin(), resp.statuses().end()};
  }
  static std::vector<v1::DeviceLocation> Locate(Replica& r, const std::string& user,
                                                uint32_t device) {
    v1::LocateRequest req;
    *req.add_devices() = Address(user, device);
    v1::LocateResponse resp;
    grpc::ClientContext context;
    Deadline(context);
    grpc::Status s = r.stub().Locate(&context, req, &resp);
    EXPECT_TRUE(s.ok()) << s.error_message();
    return {resp.locations().begin(), resp.locations().end()};
  }

  redis::RedisOptions options_;
  std::unique_ptr<Replica> a_;
  std::unique_ptr<Replica> b_;
  std::unique_ptr<redis::RedisClient> probe_client_;
  std::unique_ptr<ChannelProbe> probe_;
};

TEST_P(PresenceIntegrationTest, SubscriberHearsOnlineThenOfflineWithLastSeen) {
  probe_->Listen("bob", 1);
  v1::SubscribeResponse current;
  ASSERT_TRUE(Subscribe(*b_, "bob", 1, {"alice"}, &current).ok());
  ASSERT_EQ(current.current_size(), 1);
  EXPECT_FALSE(current.current(0).online());

  uint64_t epoch = MustConnect(*a_, "alice", 1, "gw-a", v1::PRESENCE_VISIBILITY_EVERYONE);
  ASSERT_TRUE(WaitFor([&] { return probe_->PresenceOn("bob", 1, "alice").size() == 1; },
                      absl::Seconds(5)));
  EXPECT_TRUE(probe_->PresenceOn("bob", 1, "alice")[0].online());

  const uint64_t before = static_cast<uint64_t>(absl::ToUnixMillis(absl::Now()));
  EXPECT_TRUE(Disconnect(*b_, "alice", 1, epoch));  // the other replica
  const uint64_t after = static_cast<uint64_t>(absl::ToUnixMillis(absl::Now()));
  ASSERT_TRUE(WaitFor([&] { return probe_->PresenceOn("bob", 1, "alice").size() == 2; },
                      absl::Seconds(5)));
  v1::PresenceStatus offline = probe_->PresenceOn("bob", 1, "alice")[1];
  EXPECT_FALSE(offline.online());
  EXPECT_GE(offline.last_seen_ms(), before);
  EXPECT_LE(offline.last_seen_ms(), after);
  // Both replicas answer the same.
  for (Replica* r : {a_.get(), b_.get()}) {
    std::vector<v1::PresenceStatus> q = Query(*r, {"alice"});
    ASSERT_EQ(q.size(), 1u);
    EXPECT_FALSE(q[0].online());
    EXPECT_EQ(q[0].last_seen_ms(), offline.last_seen_ms());
  }
}

TEST_P(PresenceIntegrationTest, SilentGatewayExpiresToOfflineWithinTtl) {
  probe_->Listen("bob", 1);
  v1::SubscribeResponse current;
  ASSERT_TRUE(Subscribe(*a_, "bob", 1, {"alice", "carol"}, &current).ok());
  uint64_t carol = MustConnect(*b_, "carol", 1, "gw-live", v1::PRESENCE_VISIBILITY_EVERYONE);
  const absl::Time connected = absl::Now();
  MustConnect(*a_, "alice", 1, "gw-dead", v1::PRESENCE_VISIBILITY_EVERYONE);
  // gw-live keeps heartbeating carol (through both replicas); gw-dead is silent.
  std::atomic<bool> stop{false};
  std::thread heartbeats([&] {
    for (int i = 0; !stop.load(); ++i) {
      EXPECT_TRUE(Heartbeat(i % 2 == 0 ? *a_ : *b_, "gw-live", {{"carol", 1, carol}}).empty());
      absl::SleepFor(absl::Milliseconds(200));  // the gateway's heartbeat period
    }
  });
  const bool expired = WaitFor(
      [&] {
        auto events = probe_->PresenceOn("bob", 1, "alice");
        return !events.empty() && !events.back().online();
      },
      absl::Milliseconds(kEntryTtlMs) + absl::Seconds(3));
  const absl::Duration took = absl::Now() - connected;
  stop = true;
  heartbeats.join();
  ASSERT_TRUE(expired);
  EXPECT_GE(took, absl::Milliseconds(kEntryTtlMs));
  auto alice_events = probe_->PresenceOn("bob", 1, "alice");
  ASSERT_EQ(alice_events.size(), 2u);  // online, then offline once (two sweepers)
  EXPECT_GT(alice_events[1].last_seen_ms(), 0u);
  EXPECT_TRUE(Locate(*b_, "alice", 1).empty());
  std::vector<v1::PresenceStatus> q = Query(*b_, {"alice", "carol"});
  ASSERT_EQ(q.size(), 2u);
  EXPECT_FALSE(q[0].online());
  EXPECT_TRUE(q[1].online());
  // carol never went offline.
  for (const auto& e : probe_->PresenceOn("bob", 1, "carol")) EXPECT_TRUE(e.online());
}

TEST_P(PresenceIntegrationTest, ReconnectOnAnotherGatewayDisplacesTheOldConnection) {
  probe_->Listen("alice", 1);
  uint64_t first = MustConnect(*a_, "alice", 1, "gw-a", v1::PRESENCE_VISIBILITY_EVERYONE);
  uint64_t second = MustConnect(*b_, "alice", 1, "gw-b");
  EXPECT_GT(second, first);
  ASSERT_TRUE(WaitFor([&] { return !probe_->EventsOn("alice", 1).empty(); }, absl::Seconds(5)));
  std::vector<v1::DeviceChannelEvent> events = probe_->EventsOn("alice", 1);
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].displaced_by_epoch(), second);
  // The old gateway learns it from its heartbeat too; its disconnect changes nothing.
  std::vector<v1::DeviceConnection> stale = Heartbeat(*a_, "gw-a", {{"alice", 1, first}});
  ASSERT_EQ(stale.size(), 1u);
  EXPECT_EQ(stale[0].epoch(), first);
  EXPECT_TRUE(Heartbeat(*a_, "gw-b", {{"alice", 1, second}}).empty());
  EXPECT_FALSE(Disconnect(*a_, "alice", 1, first));
  for (Replica* r : {a_.get(), b_.get()}) {
    std::vector<v1::DeviceLocation> where = Locate(*r, "alice", 1);
    ASSERT_EQ(where.size(), 1u);
    EXPECT_EQ(where[0].gateway_id(), "gw-b");
    EXPECT_EQ(where[0].epoch(), second);
  }
  EXPECT_TRUE(Query(*a_, {"alice"})[0].online());
}

TEST_P(PresenceIntegrationTest, EpochStaysAboveALiveEntryWhenItsCounterExpired) {
  MustConnect(*a_, "alice", 1, "gw-a");
  uint64_t live = MustConnect(*a_, "alice", 1, "gw-a");
  // The counter's TTL (last-seen TTL) lapsed while the connection stayed up.
  absl::StatusOr<redis::RedisReply> deleted = probe_client_->Execute(redis::Command::Keyed(
      {"DEL", RedisPresenceStore::EpochKey(DeviceKey{"alice", 1})}, 1));
  ASSERT_TRUE(deleted.ok());
  ASSERT_EQ(deleted->integer(), 1);
  uint64_t next = MustConnect(*b_, "alice", 1, "gw-b");
  EXPECT_EQ(next, live + 1);
  EXPECT_EQ(Heartbeat(*a_, "gw-a", {{"alice", 1, live}}).size(), 1u);
}

TEST_P(PresenceIntegrationTest, RacingConnectsLeaveExactlyOneCurrentEpoch) {
  probe_->Listen("alice", 1);
  constexpr int kRounds = 10;
  for (int round = 0; round < kRounds; ++round) {
    uint64_t epoch_a = 0, epoch_b = 0;
    std::atomic<int> ready{0};
    auto racer = [&](Replica* r, const char* gateway, uint64_t* out) {
      ready.fetch_add(1);
      while (ready.load() < 2) {
      }
      *out = MustConnect(*r, "alice", 1, gateway);
    };
    std::thread ta(racer, a_.get(), "gw-a", &epoch_a);
    std::thread tb(racer, b_.get(), "gw-b", &epoch_b);
    ta.join();
    tb.join();
    ASSERT_NE(epoch_a, epoch_b);
    const uint64_t winner = std::max(epoch_a, epoch_b);
    const uint64_t loser = std::min(epoch_a, epoch_b);
    const std::string winner_gw = winner == epoch_a ? "gw-a" : "gw-b";
    const std::string loser_gw = winner == epoch_a ? "gw-b" : "gw-a";
    std::vector<v1::DeviceLocation> where = Locate(*a_, "alice", 1);
    ASSERT_EQ(where.size(), 1u);
    EXPECT_EQ(where[0].epoch(), winner);
    EXPECT_EQ(where[0].gateway_id(), winner_gw);
    EXPECT_EQ(Heartbeat(*b_, loser_gw, {{"alice", 1, loser}}).size(), 1u);
    EXPECT_TRUE(Heartbeat(*a_, winner_gw, {{"alice", 1, winner}}).empty());
    // The loser was told, naming the winner.
    ASSERT_TRUE(WaitFor(
        [&] {
          for (const auto& e : probe_->EventsOn("alice", 1)) {
            if (e.displaced_by_epoch() == winner) return true;
          }
          return false;
        },
        absl::Seconds(5)))
        << "round " << round;
    EXPECT_FALSE(Disconnect(*a_, "alice", 1, loser));
  }
}

TEST_P(PresenceIntegrationTest, NobodyAndUnknownVisibilityNeverLeak) {
  probe_->Listen("bob", 1);
  v1::SubscribeResponse current;
  // alice: nobody; dave: never said (unknown); erin: everyone (the positive control).
  uint64_t alice = MustConnect(*a_, "alice", 1, "gw-a", v1::PRESENCE_VISIBILITY_NOBODY);
  uint64_t dave = MustConnect(*b_, "dave", 1, "gw-b");
  ASSERT_TRUE(Subscribe(*a_, "bob", 1, {"alice", "dave", "erin"}, &current).ok());
  ASSERT_EQ(current.current_size(), 3);
  for (const auto& s : current.current()) {
    EXPECT_FALSE(s.online()) << s.user_id();
    EXPECT_EQ(s.last_seen_ms(), 0u) << s.user_id();
  }
  EXPECT_TRUE(Disconnect(*b_, "alice", 1, alice));
  EXPECT_TRUE(Disconnect(*a_, "dave", 1, dave));
  MustConnect(*b_, "alice", 2, "gw-b");
  MustConnect(*a_, "dave", 2, "gw-a");
  for (Replica* r : {a_.get(), b_.get()}) {
    for (const auto& s : Query(*r, {"alice", "dave"})) {
      EXPECT_FALSE(s.online()) << s.user_id();
      EXPECT_EQ(s.last_seen_ms(), 0u) << s.user_id();
    }
  }
  // Events on one channel arrive in publication order: once erin's arrives, any about alice or
  // dave would have arrived before it.
  MustConnect(*a_, "erin", 1, "gw-a", v1::PRESENCE_VISIBILITY_EVERYONE);
  ASSERT_TRUE(WaitFor([&] { return !probe_->PresenceOn("bob", 1, "erin").empty(); },
                      absl::Seconds(5)));
  EXPECT_TRUE(probe_->PresenceOn("bob", 1, "alice").empty());
  EXPECT_TRUE(probe_->PresenceOn("bob", 1, "dave").empty());
  EXPECT_TRUE(Query(*b_, {"erin"})[0].online());

  // Switching erin to nobody tells subscribers "offline, unknown".
  v1::SetVisibilityRequest vis;
  vis.set_user_id("erin");
  vis.set_visibility(v1::PRESENCE_VISIBILITY_NOBODY);
  v1::SetVisibilityResponse vis_resp;
  grpc::ClientContext context;
  Deadline(context);
  ASSERT_TRUE(b_->stub().SetVisibility(&context, vis, &vis_resp).ok());
  ASSERT_TRUE(WaitFor([&] { return probe_->PresenceOn("bob", 1, "erin").size() == 2; },
                      absl::Seconds(5)));
  v1::PresenceStatus hidden = probe_->PresenceOn("bob", 1, "erin")[1];
  EXPECT_FALSE(hidden.online());
  EXPECT_EQ(hidden.last_seen_ms(), 0u);
  EXPECT_FALSE(Query(*a_, {"erin"})[0].online());
}

TEST_P(PresenceIntegrationTest, SubscriptionLimitAndRateLimitAreResourceExhausted) {
  v1::SubscribeResponse resp;
  std::vector<std::string> too_many;
  for (int i = 0; i <= kMaxSubscriptions; ++i) too_many.push_back(absl::StrCat("user", i));
  grpc::Status s = Subscribe(*a_, "bob", 1, too_many, &resp);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_THAT(s.error_message(), HasSubstr("at most 5"));
  // The bucket is in Redis: both replicas draw from it.
  for (int i = 0; i < kRateBurst; ++i) {
    s = Subscribe(i % 2 == 0 ? *a_ : *b_, "bob", 1, {"alice"}, &resp);
    ASSERT_TRUE(s.ok()) << i << ": " << s.error_message();
  }
  grpc::ClientContext context;
  s = Subscribe(*b_, "bob", 1, {"alice"}, &resp, &context);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_THAT(s.error_message(), HasSubstr("retry after"));
  auto trailer = context.GetServerTrailingMetadata().find(kRetryAfterMetadata);
  ASSERT_NE(trailer, context.GetServerTrailingMetadata().end());
  int64_t retry_ms = 0;
  ASSERT_TRUE(absl::SimpleAtoi(std::string(trailer->second.data(), trailer->second.size()),
                               &retry_ms));
  EXPECT_GT(retry_ms, 0);
  EXPECT_LE(retry_ms, 60'000);
  // Another device has its own bucket.
  EXPECT_TRUE(Subscribe(*b_, "bob", 2, {"alice"}, &resp).ok());
}

TEST_P(PresenceIntegrationTest, TwoReplicasServeOneSetOfGatewaysConsistently) {
  probe_->Listen("bob", 1);
  v1::SubscribeResponse current;
  ASSERT_TRUE(Subscribe(*b_, "bob", 1, {"alice", "carol"}, &current).ok());
  // gw-1 talks to replica a, gw-2 to replica b (round-robin would mix them the same way).
  uint64_t a1 = MustConnect(*a_, "alice", 1, "gw-1", v1::PRESENCE_VISIBILITY_EVERYONE);
  uint64_t a2 = MustConnect(*b_, "alice", 2, "gw-2");
  uint64_t c1 = MustConnect(*b_, "carol", 1, "gw-2", v1::PRESENCE_VISIBILITY_EVERYONE);
  EXPECT_TRUE(Heartbeat(*b_, "gw-1", {{"alice", 1, a1}}).empty());
  EXPECT_TRUE(Heartbeat(*a_, "gw-2", {{"alice", 2, a2}, {"carol", 1, c1}}).empty());
  for (Replica* r : {a_.get(), b_.get()}) {
    std::vector<v1::PresenceStatus> q = Query(*r, {"alice", "carol"});
    ASSERT_EQ(q.size(), 2u);
    EXPECT_TRUE(q[0].online());
    EXPECT_TRUE(q[1].online());
    ASSERT_EQ(Locate(*r, "alice", 2).size(), 1u);
    EXPECT_EQ(Locate(*r, "alice", 2)[0].gateway_id(), "gw-2");
  }
  EXPECT_TRUE(Disconnect(*b_, "alice", 1, a1));  // connected through a, ended through b
  EXPECT_TRUE(Disconnect(*a_, "alice", 2, a2));
  ASSERT_TRUE(WaitFor(
      [&] {
        auto events = probe_->PresenceOn("bob", 1, "alice");
        return events.size() == 2 && !events[1].online();
      },
      absl::Seconds(5)));
  EXPECT_TRUE(probe_->PresenceOn("bob", 1, "alice")[0].online());
  std::vector<v1::PresenceStatus> qa = Query(*a_, {"alice"});
  std::vector<v1::PresenceStatus> qb = Query(*b_, {"alice"});
  EXPECT_EQ(qa[0].SerializeAsString(), qb[0].SerializeAsString());
  EXPECT_FALSE(qa[0].online());
}

INSTANTIATE_TEST_SUITE_P(Redis, PresenceIntegrationTest,
                         padlock::testing::AllRedisModes(), padlock::testing::RedisModeName);

}  // namespace
}  // namespace padlock::presence
