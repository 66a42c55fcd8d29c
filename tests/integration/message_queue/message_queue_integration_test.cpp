// The message-queue end to end on real Redis — a standalone server and a 3-master Redis Cluster
// (parameterised) — through real gRPC: an in-process service (ServiceRunner on port 0) with a
// RedisInboxStore and a fake device directory. A RedisSubscriber on device channels plays the
// gateway and collects wake-ups.
#include <grpcpp/grpcpp.h>
#include <prometheus/registry.h>

#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "padlock/v1/message_queue.grpc.pb.h"
#include "services/common/channels/device_channel.h"
#include "services/common/redis/cluster_slots.h"
#include "services/common/redis/redis_client.h"
#include "services/common/redis/redis_subscriber.h"
#include "services/common/runtime/executor.h"
#include "services/common/runtime/server.h"
#include "services/message_queue/dedupe_id.h"
#include "services/message_queue/dispatcher.h"
#include "services/message_queue/message_queue_service.h"
#include "services/message_queue/redis_inbox_store.h"
#include "services/message_queue/redis_memory_monitor.h"
#include "tests/fakes/message_queue_fakes.h"
#include "tests/harness/harness.h"
#include "tests/harness/redis_modes.h"
#include "tests/harness/redis_server.h"

namespace padlock::message_queue {
namespace {

namespace v1 = padlock::v1;
using padlock::testing::WaitFor;
using ::testing::ElementsAre;

using Mode = padlock::testing::RedisTestMode;

const std::string kDedupeSecret(32, 'k');

v1::DeviceAddress Address(const std::string& user, uint32_t device) {
  v1::DeviceAddress a;
  a.set_user_id(user);
  a.set_device_id(device);
  return a;
}

std::string MessageId(int i) {
  std::string id(16, '\0');
  for (int k = 0; k < 4; ++k) id[k] = static_cast<char>((i >> (8 * k)) & 0xff);
  id[15] = 'p';
  return id;
}

// alice (device 1 only) → bob:1 and bob:2.
v1::Send ToBob(int i, const std::string& ciphertext) {
  v1::Send send;
  *send.mutable_sender() = Address("alice", 1);
  v1::OutgoingMessage* m = send.mutable_message();
  m->set_message_id(MessageId(i));
  for (uint32_t device : {1u, 2u}) {
    v1::Recipient* r = m->add_recipients();
    *r->mutable_device() = Address("bob", device);
    r->set_registration_id(200 + device);
    r->set_type(v1::ENVELOPE_TYPE_MESSAGE);
    r->set_ciphertext(ciphertext);
  }
  return send;
}

// The time in a server id ("<unix ms>-<n>", the stream entry id Redis chose).
absl::Time ServerIdTime(const std::string& server_id) {
  int64_t ms = 0;
  EXPECT_TRUE(absl::SimpleAtoi(server_id.substr(0, server_id.find('-')), &ms)) << server_id;
  return absl::FromUnixMillis(ms);
}

void Deadline(grpc::ClientContext& context) {
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
}

// Collects the events published on device channels, as a gateway would receive them.
class ChannelProbe {
 public:
  explicit ChannelProbe(redis::RedisClient* client) {
    redis::RedisSubscriber::Callbacks callbacks;
    callbacks.on_message = [this](std::string_view, std::string_view payload) {
      v1::DeviceChannelEvent event;
      EXPECT_TRUE(event.ParseFromArray(payload.data(), static_cast<int>(payload.size())));
      std::lock_guard<std::mutex> lock(mu_);
      events_.push_back(event);
    };
    subscriber_ = *redis::RedisSubscriber::Start(client, std::move(callbacks));
  }
  void Listen(const std::string& user, uint32_t device) {
    const std::string channel = channels::DeviceChannel(user, device);
    subscriber_->Subscribe(channel);
    ASSERT_TRUE(WaitFor([&] { return subscriber_->IsActive(channel); }, absl::Seconds(10)));
  }
  std::vector<v1::DeviceChannelEvent> events() {
    std::lock_guard<std::mutex> lock(mu_);
    return events_;
  }

 private:
  std::mutex mu_;
  std::vector<v1::DeviceChannelEvent> events_;
  std::unique_ptr<redis::RedisSubscriber> subscriber_;
};

// One message-queue replica on the given Redis.
class Replica {
 public:
  Replica(const redis::RedisOptions& redis_options, InboxLimits limits,
          DeviceDirectory* directory, MemoryAdmission* admission = nullptr) {
    redis_ = *redis::RedisClient::Create(redis_options);
    store_ = std::make_unique<RedisInboxStore>(redis_.get(), limits, admission);
    runtime::ServerOptions server_options;
    server_options.service_name = "message-queue";
    server_options.listen_address = "127.0.0.1:0";
    server_options.metrics_host = "127.0.0.1";
    server_options.metrics_port = 0;
    server_options.handle_signals = false;
    server_options.grace_period = absl::Seconds(1);
    runner_ = std::make_unique<runtime::ServiceRunner>(server_options);
    DispatchOptions options;
    options.retention = limits.retention;
    // Every replica shares the dedupe secret, as PADLOCK_DEDUPE_SECRET makes them in production:
    // a retry may reach another replica (or a restarted one).
    options.dedupe_secret = kDedupeSecret;
    if (admission != nullptr) options.refused_retry_after = admission->options().retry_after;
    dispatcher_ = std::make_unique<Dispatcher>(options, directory, store_.get(), &clock_,
                                               &runner_->metrics());
    executor_ = std::make_unique<runtime::BoundedExecutor>("message-queue", 4, 256);
    service_ = std::make_unique<MessageQueueService>(dispatcher_.get(), executor_.get());
    runner_->AddService(service_.get());
    absl::Status started = runner_->Start();
    EXPECT_TRUE(started.ok()) << started;
    stub_ = v1::MessageQueue::NewStub(grpc::CreateChannel(
        absl::StrCat("127.0.0.1:", runner_->grpc_port()), grpc::InsecureChannelCredentials()));
  }
  ~Replica() {
    runner_->RequestShutdown();
    runner_->Wait();
    executor_->Shutdown();
  }
  v1::MessageQueue::Stub& stub() { return *stub_; }

 private:
  runtime::SystemClock clock_;
  std::unique_ptr<redis::RedisClient> redis_;
  std::unique_ptr<RedisInboxStore> store_;
  std::unique_ptr<runtime::ServiceRunner> runner_;
  std::unique_ptr<Dispatcher> dispatcher_;
  std::unique_ptr<runtime::BoundedExecutor> executor_;
  std::unique_ptr<MessageQueueService> service_;
  std::unique_ptr<v1::MessageQueue::Stub> stub_;
};

class MessageQueueIntegrationTest : public padlock::testing::RedisModeTest {
 protected:
  void SetUp() override {
    RedisModeTest::SetUp();
    if (HasFatalFailure()) return;
    options_ = redis_options_;
    directory_.Set("alice", 1, {{1, 101}});
    directory_.Set("bob", 4, {{1, 201}, {2, 202}});
    probe_client_ = *redis::RedisClient::Create(options_);
    probe_ = std::make_unique<ChannelProbe>(probe_client_.get());
  }
  void TearDown() override {
    probe_.reset();
    replica_.reset();
  }

  void StartReplica(InboxLimits limits = InboxLimits(), MemoryAdmission* admission = nullptr) {
    replica_ = std::make_unique<Replica>(options_, limits, &directory_, admission);
  }

  v1::EnqueueResponse Enqueue(const std::vector<v1::Send>& sends) {
    v1::EnqueueRequest request;
    for (const v1::Send& s : sends) *request.add_sends() = s;
    v1::EnqueueResponse response;
    grpc::ClientContext context;
    Deadline(context);
    grpc::Status s = replica_->stub().Enqueue(&context, request, &response);
    EXPECT_TRUE(s.ok()) << s.error_message();
    EXPECT_EQ(response.outcomes_size(), static_cast<int>(sends.size()));
    return response;
  }
  v1::SendOutcome EnqueueOne(const v1::Send& send) {
    v1::EnqueueResponse response = Enqueue({send});
    return response.outcomes_size() == 1 ? response.outcomes(0) : v1::SendOutcome();
  }
  v1::ReadInboxResponse Read(const std::string& user, uint32_t device,
                             const std::string& after = "", uint64_t after_sequence = 0,
                             uint32_t max = 0) {
    v1::ReadInboxRequest request;
    *request.mutable_device() = Address(user, device);
    request.set_after_server_id(after);
    request.set_after_sequence(after_sequence);
    request.set_max_envelopes(max);
    v1::ReadInboxResponse response;
    grpc::ClientContext context;
    Deadline(context);
    grpc::Status s = replica_->stub().ReadInbox(&context, request, &response);
    EXPECT_TRUE(s.ok()) << s.error_message();
    return response;
  }
  uint32_t AckUpTo(const std::string& user, uint32_t device, const std::string& up_to,
                   const std::vector<std::string>& ids = {}) {
    v1::AckRequest request;
    v1::DeviceAck* a = request.add_acks();
    *a->mutable_device() = Address(user, device);
    a->set_up_to_server_id(up_to);
    for (const std::string& id : ids) a->add_server_ids(id);
    v1::AckResponse response;
    grpc::ClientContext context;
    Deadline(context);
    grpc::Status s = replica_->stub().Ack(&context, request, &response);
    EXPECT_TRUE(s.ok()) << s.error_message();
    return response.removed_size() == 1 ? response.removed(0) : 9999;
  }
  v1::GetInboxInfoResponse Info(const std::string& user, uint32_t device) {
    v1::GetInboxInfoRequest request;
    *request.mutable_device() = Address(user, device);
    v1::GetInboxInfoResponse response;
    grpc::ClientContext context;
    Deadline(context);
    grpc::Status s = replica_->stub().GetInboxInfo(&context, request, &response);
    EXPECT_TRUE(s.ok()) << s.error_message();
    return response;
  }
  // Number of the device's message-queue keys that exist in Redis.
  int ExistingKeys(const std::string& user, uint32_t device) {
    int n = 0;
    for (const std::string& key : channels::DeviceInboxKeys(user, device)) {
      auto reply = probe_client_->Execute(redis::Command::Keyed({"EXISTS", key}, 1));
      EXPECT_TRUE(reply.ok());
      if (reply.ok()) n += static_cast<int>(reply->integer());
    }
    return n;
  }

  redis::RedisOptions options_;
  FakeDeviceDirectory directory_;
  std::unique_ptr<redis::RedisClient> probe_client_;
  std::unique_ptr<ChannelProbe> probe_;
  std::unique_ptr<Replica> replica_;
};

TEST_P(MessageQueueIntegrationTest, EnqueueWakesDeviceThenBacklogAckAndEmpty) {
  StartReplica();
  probe_->Listen("bob", 1);
  v1::SendOutcome outcome = EnqueueOne(ToBob(1, "hello-ciphertext"));
  ASSERT_TRUE(outcome.has_accepted()) << outcome.DebugString();
  ASSERT_EQ(outcome.accepted().placements_size(), 2);
  const v1::Placement& p1 = outcome.accepted().placements(0);
  EXPECT_EQ(p1.sequence(), 1u);
  EXPECT_TRUE(p1.online());
  EXPECT_FALSE(outcome.accepted().placements(1).online());  // nobody listens for bob:2

  ASSERT_TRUE(WaitFor([&] { return probe_->events().size() == 1; }, absl::Seconds(10)));
  const v1::DeviceChannelEvent event = probe_->events()[0];
  ASSERT_TRUE(event.has_wakeup());
  EXPECT_EQ(event.wakeup().sequence(), 1u);
  ASSERT_TRUE(event.wakeup().has_envelope());
  const v1::Envelope& inline_envelope = event.wakeup().envelope();
  EXPECT_EQ(inline_envelope.ciphertext(), "hello-ciphertext");
  EXPECT_EQ(inline_envelope.server_id(), p1.server_id());
  EXPECT_EQ(inline_envelope.sequence(), 1u);
  EXPECT_EQ(inline_envelope.message_id(), MessageId(1));
  EXPECT_EQ(inline_envelope.sender().user_id(), "alice");

  v1::ReadInboxResponse backlog = Read("bob", 1);
  ASSERT_EQ(backlog.envelopes_size(), 1);
  EXPECT_TRUE(backlog.end_of_inbox());
  EXPECT_EQ(backlog.gaps_size(), 0);
  // The wake-up's envelope is byte for byte what the backlog serves.
  EXPECT_EQ(backlog.envelopes(0).SerializeAsString(), inline_envelope.SerializeAsString());

  EXPECT_EQ(AckUpTo("bob", 1, p1.server_id()), 1u);
  EXPECT_EQ(AckUpTo("bob", 1, p1.server_id()), 0u);  // idempotent
  v1::ReadInboxResponse after = Read("bob", 1);
  EXPECT_EQ(after.envelopes_size(), 0);
  EXPECT_EQ(after.gaps_size(), 0);
  EXPECT_TRUE(after.end_of_inbox());
  v1::GetInboxInfoResponse info = Info("bob", 1);
  EXPECT_EQ(info.depth(), 0u);
  EXPECT_EQ(info.last_sequence(), 1u);
  EXPECT_EQ(info.bytes(), 0u);
  EXPECT_EQ(Info("bob", 2).depth(), 1u);
}

TEST_P(MessageQueueIntegrationTest, LargeEnvelopeWakeUpCarriesOnlyTheSequence) {
  InboxLimits limits;
  limits.inline_wakeup_bytes = 100;
  StartReplica(limits);
  probe_->Listen("bob", 1);
  ASSERT_TRUE(EnqueueOne(ToBob(1, std::string(200, 'x'))).has_accepted());
  ASSERT_TRUE(WaitFor([&] { return probe_->events().size() == 1; }, absl::Seconds(10)));
  EXPECT_EQ(probe_->events()[0].wakeup().sequence(), 1u);
  EXPECT_FALSE(probe_->events()[0].wakeup().has_envelope());
}

TEST_P(MessageQueueIntegrationTest, KeepsOrderAcrossTenThousandEnvelopes) {
  StartReplica();
  constexpr int kTotal = 10'000;
  constexpr int kBatch = 500;
  for (int start = 0; start < kTotal; start += kBatch) {
    std::vector<v1::Send> sends;
    for (int i = start; i < start + kBatch; ++i) sends.push_back(ToBob(i, absl::StrCat("m", i)));
    v1::EnqueueResponse response = Enqueue(sends);
    for (const v1::SendOutcome& o : response.outcomes()) ASSERT_TRUE(o.has_accepted());
  }
  std::string cursor;
  uint64_t cursor_sequence = 0;
  int next = 0;
  while (true) {
    v1::ReadInboxResponse page = Read("bob", 1, cursor, cursor_sequence, 1024);
    EXPECT_EQ(page.gaps_size(), 0);
    for (const v1::Envelope& e : page.envelopes()) {
      ASSERT_EQ(e.sequence(), static_cast<uint64_t>(next + 1));
      ASSERT_EQ(e.ciphertext(), absl::StrCat("m", next));
      ++next;
    }
    ASSERT_FALSE(page.next_after_server_id().empty());
    cursor = page.next_after_server_id();
    cursor_sequence = page.next_after_sequence();
    if (page.end_of_inbox()) break;
  }
  EXPECT_EQ(next, kTotal);
  EXPECT_EQ(cursor_sequence, static_cast<uint64_t>(kTotal));
  // One cumulative ack (one trim) empties the inbox.
  EXPECT_EQ(AckUpTo("bob", 1, cursor), static_cast<uint32_t>(kTotal));
  EXPECT_EQ(Info("bob", 1).depth(), 0u);
  EXPECT_EQ(Info("bob", 1).bytes(), 0u);
  EXPECT_EQ(Info("bob", 2).depth(), static_cast<uint64_t>(kTotal));
}

TEST_P(MessageQueueIntegrationTest, RetryInsideWindowReturnsSameIdsAndAfterItAppendsAgain) {
  InboxLimits limits;
  // Two seconds: the retry below must come within one window of the first send even on a
  // loaded machine.
  limits.dedupe_window = absl::Seconds(2);
  StartReplica(limits);
  v1::SendOutcome first = EnqueueOne(ToBob(7, "once"));
  // Taken after the first send returned: its time bucket is at most this one.
  const absl::Time first_done = absl::Now();
  v1::SendOutcome retry = EnqueueOne(ToBob(7, "once"));
  ASSERT_TRUE(first.has_accepted());
  ASSERT_TRUE(retry.has_accepted());
  for (int i = 0; i < 2; ++i) {
    EXPECT_EQ(retry.accepted().placements(i).server_id(),
              first.accepted().placements(i).server_id());
    EXPECT_EQ(retry.accepted().placements(i).sequence(),
              first.accepted().placements(i).sequence());
  }
  EXPECT_EQ(Info("bob", 1).depth(), 1u);
  // The window is kept in two time buckets: a key is forgotten 1 to 2 windows after first use,
  // so two windows after the first send returned it is forgotten however slow that send was.
  absl::SleepFor(first_done + 2 * limits.dedupe_window + absl::Milliseconds(50) - absl::Now());
  v1::SendOutcome late = EnqueueOne(ToBob(7, "once"));
  ASSERT_TRUE(late.has_accepted());
  EXPECT_EQ(late.accepted().placements(0).sequence(), 2u);
  EXPECT_EQ(Info("bob", 1).depth(), 2u);
}

TEST_P(MessageQueueIntegrationTest, MismatchedAndStaleDevicesStoreNothing) {
  StartReplica();
  probe_->Listen("bob", 1);
  v1::Send missing = ToBob(1, "x");
  missing.mutable_message()->mutable_recipients()->RemoveLast();  // bob:2 missing
  v1::Send stale = ToBob(2, "x");
  stale.mutable_message()->mutable_recipients(1)->set_registration_id(999);
  directory_.Set("alice", 1, {{1, 101}, {3, 103}});  // alice's own device 3 missing in both
  v1::EnqueueResponse response = Enqueue({missing, stale});
  ASSERT_TRUE(response.outcomes(0).has_mismatch());
  const v1::Mismatch& m0 = response.outcomes(0).mismatch();
  ASSERT_EQ(m0.users_size(), 2);
  EXPECT_EQ(m0.users(0).user_id(), "alice");
  EXPECT_THAT(m0.users(0).missing_device_ids(), ElementsAre(3u));
  EXPECT_EQ(m0.users(1).user_id(), "bob");
  EXPECT_THAT(m0.users(1).missing_device_ids(), ElementsAre(2u));
  EXPECT_EQ(m0.users(1).device_list_version(), 4u);
  ASSERT_TRUE(response.outcomes(1).has_mismatch());
  EXPECT_THAT(response.outcomes(1).mismatch().users(1).stale_device_ids(), ElementsAre(2u));
  EXPECT_EQ(ExistingKeys("bob", 1), 0);
  EXPECT_EQ(ExistingKeys("bob", 2), 0);
  EXPECT_TRUE(probe_->events().empty());
}

TEST_P(MessageQueueIntegrationTest, UnlinkedSenderDeviceIsPermissionDeniedAndStoresNothing) {
  StartReplica();
  probe_->Listen("bob", 1);
  // alice:1 holds a valid session token but was unlinked since: alice's list is device 2 only.
  directory_.Set("alice", 2, {{2, 102}});
  v1::Send send = ToBob(1, "from-an-unlinked-device");
  v1::Recipient* own = send.mutable_message()->add_recipients();
  *own->mutable_device() = Address("alice", 2);
  own->set_registration_id(102);
  own->set_type(v1::ENVELOPE_TYPE_MESSAGE);
  own->set_ciphertext("from-an-unlinked-device");
  v1::SendOutcome outcome = EnqueueOne(send);
  ASSERT_TRUE(outcome.has_refused()) << outcome.DebugString();
  EXPECT_EQ(outcome.refused().code(), static_cast<int>(grpc::StatusCode::PERMISSION_DENIED));
  EXPECT_THAT(outcome.refused().message(), ::testing::HasSubstr("alice:1"));
  EXPECT_EQ(ExistingKeys("bob", 1), 0);
  EXPECT_EQ(ExistingKeys("bob", 2), 0);
  EXPECT_EQ(ExistingKeys("alice", 2), 0);
  EXPECT_TRUE(probe_->events().empty());
}

TEST_P(MessageQueueIntegrationTest, OnlineOnlyIsPublishedAndNeverStored) {
  StartReplica();
  probe_->Listen("bob", 1);
  v1::Send typing = ToBob(1, "typing");
  typing.mutable_message()->set_online_only(true);
  v1::SendOutcome outcome = EnqueueOne(typing);
  ASSERT_TRUE(outcome.has_accepted());
  EXPECT_TRUE(outcome.accepted().placements(0).online());
  EXPECT_EQ(outcome.accepted().placements(0).server_id(), "");
  EXPECT_FALSE(outcome.accepted().placements(1).online());
  ASSERT_TRUE(WaitFor([&] { return probe_->events().size() == 1; }, absl::Seconds(10)));
  const v1::DeviceChannelEvent event = probe_->events()[0];
  EXPECT_EQ(event.wakeup().sequence(), 0u);
  EXPECT_EQ(event.wakeup().envelope().ciphertext(), "typing");
  EXPECT_TRUE(event.wakeup().envelope().online_only());
  EXPECT_EQ(ExistingKeys("bob", 1), 0);
  EXPECT_EQ(ExistingKeys("bob", 2), 0);
}

TEST_P(MessageQueueIntegrationTest, ShortRetentionTrimsOldEntriesAndReportsGap) {
  InboxLimits limits;
  limits.retention = absl::Seconds(1);
  StartReplica(limits);
  ASSERT_TRUE(EnqueueOne(ToBob(1, "old-1")).has_accepted());
  v1::SendOutcome old2 = EnqueueOne(ToBob(2, "old-2"));
  ASSERT_TRUE(old2.has_accepted());
  // Past the retention of the newer old entry, by its own (Redis) time, however slow the sends.
  absl::SleepFor(ServerIdTime(old2.accepted().placements(0).server_id()) +
                 limits.retention + absl::Milliseconds(200) - absl::Now());
  ASSERT_TRUE(EnqueueOne(ToBob(3, "new")).has_accepted());  // the append trims, inbox active
  EXPECT_EQ(Info("bob", 1).depth(), 1u);
  v1::ReadInboxResponse r = Read("bob", 1);
  ASSERT_EQ(r.envelopes_size(), 1);
  EXPECT_EQ(r.envelopes(0).ciphertext(), "new");
  EXPECT_EQ(r.envelopes(0).sequence(), 3u);
  ASSERT_EQ(r.gaps_size(), 1);
  EXPECT_EQ(r.gaps(0).first_sequence(), 1u);
  EXPECT_EQ(r.gaps(0).last_sequence(), 2u);
  // bob:2 had no append since: the read itself trims, and the gap covers everything.
  v1::ReadInboxResponse idle = Read("bob", 2);
  EXPECT_EQ(idle.envelopes_size(), 1);  // "new" went to bob:2 as well
  ASSERT_EQ(idle.gaps_size(), 1);
  EXPECT_EQ(idle.gaps(0).last_sequence(), 2u);
  EXPECT_EQ(Info("bob", 1).bytes(), Info("bob", 2).bytes());
}

// The trim is amortised: the meta field h is a lower bound of the oldest entry's time, and the
// stream is only looked at once h is older than the retention. A bound left stale by acks must
// still let later entries expire on time, and the gap must still be reported.
TEST_P(MessageQueueIntegrationTest, AmortisedTrimExpiresEntriesBehindAStaleHeadBound) {
  InboxLimits limits;
  // Four seconds, and every step timed from the server ids: each "not yet expired" below has
  // two seconds of margin for a loaded machine.
  limits.retention = absl::Seconds(4);
  const absl::Duration half = limits.retention / 2;
  StartReplica(limits);
  auto meta_h = [&] {
    auto reply = probe_client_->Execute(redis::Command::Keyed({"HGET", "qm:{bob:1}", "h"}, 1));
    EXPECT_TRUE(reply.ok());
    return reply.ok() && reply->is_string() ? reply->str() : std::string("(none)");
  };
  auto ms_of = [](const std::string& server_id) {
    return server_id.substr(0, server_id.find('-'));
  };
  auto at = [](const std::string& ms, absl::Duration plus) {
    int64_t n = 0;
    EXPECT_TRUE(absl::SimpleAtoi(ms, &n)) << ms;
    return absl::FromUnixMillis(n) + plus;
  };
  auto placement = [](const v1::SendOutcome& o) {
    EXPECT_TRUE(o.has_accepted()) << o.DebugString();
    return o.has_accepted() ? o.accepted().placements(0).server_id() : std::string("0-0");
  };
  // 1 is stored and acked on bob:1: its stream is empty, h still names 1's time.
  const std::string id1 = placement(EnqueueOne(ToBob(1, "one")));
  EXPECT_EQ(meta_h(), ms_of(id1));
  EXPECT_EQ(AckUpTo("bob", 1, id1), 1u);
  EXPECT_EQ(meta_h(), ms_of(id1));
  // 2 half a retention later: the bound stays 1's (a lower bound is enough).
  absl::SleepFor(at(ms_of(id1), half) - absl::Now());
  const std::string id2 = placement(EnqueueOne(ToBob(2, "two")));
  EXPECT_EQ(meta_h(), ms_of(id1));
  // 3 once the bound is past the retention but 2 is not: the trim looks, removes nothing on
  // bob:1, and raises the bound to 2's time.
  absl::SleepFor(at(ms_of(id1), limits.retention + absl::Milliseconds(300)) - absl::Now());
  const std::string id3 = placement(EnqueueOne(ToBob(3, "three")));
  EXPECT_EQ(meta_h(), ms_of(id2));
  EXPECT_EQ(Info("bob", 1).depth(), 2u);
  // Once 2 is past the retention the next append trims it: a gap of exactly 2 on bob:1 (1 was
  // acked), of 1–2 on bob:2 (never acked).
  absl::SleepFor(at(ms_of(id2), limits.retention + absl::Milliseconds(100)) - absl::Now());
  const std::string id4 = placement(EnqueueOne(ToBob(4, "four")));
  EXPECT_EQ(meta_h(), ms_of(id3));
  v1::ReadInboxResponse r = Read("bob", 1);
  ASSERT_EQ(r.envelopes_size(), 2) << r.DebugString();
  EXPECT_EQ(r.envelopes(0).server_id(), id3);
  EXPECT_EQ(r.envelopes(1).server_id(), id4);
  ASSERT_EQ(r.gaps_size(), 1) << r.DebugString();
  EXPECT_EQ(r.gaps(0).first_sequence(), 2u);
  EXPECT_EQ(r.gaps(0).last_sequence(), 2u);
  v1::ReadInboxResponse r2 = Read("bob", 2);
  ASSERT_EQ(r2.envelopes_size(), 2) << r2.DebugString();
  ASSERT_EQ(r2.gaps_size(), 1) << r2.DebugString();
  EXPECT_EQ(r2.gaps(0).first_sequence(), 1u);
  EXPECT_EQ(r2.gaps(0).last_sequence(), 2u);
  // The byte count followed the trims and the ack: both inboxes hold the same two envelopes.
  EXPECT_EQ(Info("bob", 1).bytes(), Info("bob", 2).bytes());
  EXPECT_GT(Info("bob", 1).bytes(), 0u);
}

// An inbox written before the bound existed (no h) is trimmed on its next append, which sets h.
TEST_P(MessageQueueIntegrationTest, InboxWithoutHeadBoundIsTrimmedAndGetsOne) {
  InboxLimits limits;
  limits.retention = absl::Seconds(1);
  StartReplica(limits);
  v1::SendOutcome first = EnqueueOne(ToBob(1, "old"));
  ASSERT_TRUE(first.has_accepted());
  const std::string old_id = first.accepted().placements(0).server_id();
  ASSERT_TRUE(probe_client_->Execute(redis::Command::Keyed({"HDEL", "qm:{bob:1}", "h"}, 1)).ok());
  int64_t old_ms = 0;
  ASSERT_TRUE(absl::SimpleAtoi(old_id.substr(0, old_id.find('-')), &old_ms));
  absl::SleepFor(absl::FromUnixMillis(old_ms) + absl::Milliseconds(1200) - absl::Now());
  v1::SendOutcome second = EnqueueOne(ToBob(2, "new"));
  ASSERT_TRUE(second.has_accepted());
  const std::string new_id = second.accepted().placements(0).server_id();
  EXPECT_EQ(Info("bob", 1).depth(), 1u);
  auto h = probe_client_->Execute(redis::Command::Keyed({"HGET", "qm:{bob:1}", "h"}, 1));
  ASSERT_TRUE(h.ok());
  ASSERT_TRUE(h->is_string());
  EXPECT_EQ(h->str(), new_id.substr(0, new_id.find('-')));
}

// The backstop TTLs: every inbox key has one after an append (pushed out at most once per refresh
// interval, recorded in the meta field r), and each dedupe bucket hash gets one when created.
TEST_P(MessageQueueIntegrationTest, AppendSetsBackstopTtlsOncePerRefreshInterval) {
  InboxLimits limits;
  limits.retention = absl::Hours(1);
  limits.dedupe_window = absl::Seconds(60);
  StartReplica(limits);
  ASSERT_TRUE(EnqueueOne(ToBob(1, "a")).has_accepted());
  auto pttl = [&](const std::string& key) {
    auto reply = probe_client_->Execute(redis::Command::Keyed({"PTTL", key}, 1));
    EXPECT_TRUE(reply.ok());
    return reply.ok() ? reply->integer() : -3;
  };
  const int64_t key_ttl = absl::ToInt64Milliseconds(absl::Hours(25));
  for (const char* key : {"q:{bob:1}", "seq:{bob:1}", "qm:{bob:1}"}) {
    EXPECT_GT(pttl(key), key_ttl - 60'000) << key;
    EXPECT_LE(pttl(key), key_ttl) << key;
  }
  // The bucket in use is qd0 or qd1 (by the minute's parity): whichever exists has a TTL of at
  // most three windows (-2 = does not exist).
  int buckets = 0;
  for (const char* key : {"qd0:{bob:1}", "qd1:{bob:1}"}) {
    const int64_t ttl = pttl(key);
    if (ttl == -2) continue;
    ++buckets;
    EXPECT_GT(ttl, 0) << key;
    EXPECT_LE(ttl, 180'000) << key;
  }
  EXPECT_EQ(buckets, 1);
  auto refreshed = [&] {
    auto reply = probe_client_->Execute(redis::Command::Keyed({"HGET", "qm:{bob:1}", "r"}, 1));
    EXPECT_TRUE(reply.ok());
    return reply.ok() && reply->is_string() ? reply->str() : std::string();
  };
  const std::string r = refreshed();
  EXPECT_FALSE(r.empty());
  // A later append inside the interval leaves the stamp (and so the TTLs) alone.
  ASSERT_TRUE(EnqueueOne(ToBob(2, "b")).has_accepted());
  EXPECT_EQ(refreshed(), r);
  // A key that lost its TTL gets it back once the interval is over (stamp moved back by 2 h).
  ASSERT_TRUE(probe_client_->Execute(redis::Command::Keyed({"PERSIST", "q:{bob:1}"}, 1)).ok());
  int64_t stamp = 0;
  ASSERT_TRUE(absl::SimpleAtoi(r, &stamp));
  ASSERT_TRUE(probe_client_
                  ->Execute(redis::Command::Keyed(
                      {"HSET", "qm:{bob:1}", "r", absl::StrCat(stamp - 2 * 3'600'000)}, 1))
                  .ok());
  ASSERT_TRUE(EnqueueOne(ToBob(3, "c")).has_accepted());
  EXPECT_GT(pttl("q:{bob:1}"), key_ttl - 60'000);
  EXPECT_NE(refreshed(), absl::StrCat(stamp - 2 * 3'600'000));
}

TEST_P(MessageQueueIntegrationTest, ShortTtlExpiresOnlyThatEntry) {
  StartReplica();
  v1::Send story = ToBob(1, "story");
  story.mutable_message()->set_ttl_seconds(1);
  v1::SendOutcome stored = EnqueueOne(story);
  ASSERT_TRUE(stored.has_accepted());
  ASSERT_TRUE(EnqueueOne(ToBob(2, "message")).has_accepted());
  // Past the story's TTL by its own (Redis) time, however slow the sends were.
  absl::SleepFor(ServerIdTime(stored.accepted().placements(0).server_id()) +
                 absl::Milliseconds(1100) - absl::Now());
  v1::ReadInboxResponse r = Read("bob", 1);
  ASSERT_EQ(r.envelopes_size(), 1);
  EXPECT_EQ(r.envelopes(0).ciphertext(), "message");
  ASSERT_EQ(r.gaps_size(), 1);
  EXPECT_EQ(r.gaps(0).first_sequence(), 1u);
  EXPECT_EQ(r.gaps(0).last_sequence(), 1u);
}

// Individual acks out of order, beyond the reader's cursor: never reported as a gap; the sequences
// are remembered in the meta hash only until the ack floor passes them.
TEST_P(MessageQueueIntegrationTest, OutOfOrderIndividualAcksAreNeverAGap) {
  StartReplica();
  for (int i = 0; i < 5; ++i) {
    ASSERT_TRUE(EnqueueOne(ToBob(i, absl::StrCat("m", i))).has_accepted());
  }
  v1::ReadInboxResponse r = Read("bob", 1);
  ASSERT_EQ(r.envelopes_size(), 5);
  EXPECT_EQ(AckUpTo("bob", 1, "",
                    {r.envelopes(3).server_id(), r.envelopes(1).server_id(),
                     r.envelopes(4).server_id()}),
            3u);
  v1::ReadInboxResponse from_start = Read("bob", 1);
  ASSERT_EQ(from_start.envelopes_size(), 2);
  EXPECT_EQ(from_start.envelopes(0).sequence(), 1u);
  EXPECT_EQ(from_start.envelopes(1).sequence(), 3u);
  EXPECT_EQ(from_start.gaps_size(), 0) << from_start.DebugString();
  v1::ReadInboxResponse after_first = Read("bob", 1, r.envelopes(0).server_id(), 1);
  ASSERT_EQ(after_first.envelopes_size(), 1);
  EXPECT_EQ(after_first.gaps_size(), 0) << after_first.DebugString();
  // Floor 0, remembered {2, 4, 5}: a cumulative ack of 1 moves the floor over 2.
  EXPECT_EQ(AckUpTo("bob", 1, r.envelopes(0).server_id()), 1u);
  auto meta = probe_client_->Execute(redis::Command::Keyed({"HGETALL", "qm:{bob:1}"}, 1));
  ASSERT_TRUE(meta.ok());
  std::map<std::string, std::string> fields;
  for (size_t i = 0; i + 1 < meta->elements().size(); i += 2) {
    fields[meta->elements()[i].str()] = meta->elements()[i + 1].str();
  }
  EXPECT_EQ(fields["acked"], "2");
  EXPECT_EQ(fields["ia"], "2");
  EXPECT_TRUE(fields.contains("a4"));
  EXPECT_TRUE(fields.contains("a5"));
  EXPECT_EQ(Read("bob", 1).gaps_size(), 0);
  // Acking 3 covers everything: the floor reaches 5 and nothing is remembered any more.
  EXPECT_EQ(AckUpTo("bob", 1, "", {r.envelopes(2).server_id()}), 1u);
  auto keys = probe_client_->Execute(redis::Command::Keyed({"HKEYS", "qm:{bob:1}"}, 1));
  ASSERT_TRUE(keys.ok());
  std::set<std::string> names;
  for (const redis::RedisReply& k : keys->elements()) names.insert(k.str());
  // (h: lower bound of the oldest entry's time, for the amortised trim; r: when the backstop
  // TTLs were last pushed out.)
  EXPECT_EQ(names, (std::set<std::string>{"acked", "bytes", "h", "r"}));
  auto floor = probe_client_->Execute(redis::Command::Keyed({"HGET", "qm:{bob:1}", "acked"}, 1));
  ASSERT_TRUE(floor.ok());
  EXPECT_EQ(floor->str(), "5");
  v1::ReadInboxResponse empty = Read("bob", 1);
  EXPECT_EQ(empty.envelopes_size(), 0);
  EXPECT_EQ(empty.gaps_size(), 0);
  EXPECT_TRUE(empty.end_of_inbox());
}

// The durability policy's WAIT on every master that took a send's writes (3 of them on the
// cluster: a batch to many devices spans every node): without replicas nothing can confirm, so
// sends are refused UNAVAILABLE while online_only sends still go out; with the policy off the
// retries are accepted with the ids of the unconfirmed first appends.
TEST_P(MessageQueueIntegrationTest, WaitWithoutReplicasRefusesSendsAndRetriesKeepTheirIds) {
  InboxLimits limits;
  limits.durability = redis::ReplicaWait{1, absl::Milliseconds(20)};
  StartReplica(limits);
  std::vector<v1::Send> sends;
  for (int i = 0; i < 20; ++i) {
    v1::Send send = ToBob(i, absl::StrCat("w", i));
    // 20 users → their inboxes spread over every master of the cluster.
    directory_.Set(absl::StrCat("carol", i), 1, {{1, 301}});
    v1::Recipient* r = send.mutable_message()->add_recipients();
    *r->mutable_device() = Address(absl::StrCat("carol", i), 1);
    r->set_registration_id(301);
    r->set_type(v1::ENVELOPE_TYPE_MESSAGE);
    r->set_ciphertext("w");
    sends.push_back(send);
  }
  v1::EnqueueResponse refused = Enqueue(sends);
  for (const v1::SendOutcome& o : refused.outcomes()) {
    ASSERT_TRUE(o.has_refused()) << o.DebugString();
    EXPECT_EQ(o.refused().code(), static_cast<int>(grpc::StatusCode::UNAVAILABLE));
  }
  v1::Send typing = ToBob(99, "typing");
  typing.mutable_message()->set_online_only(true);
  EXPECT_TRUE(EnqueueOne(typing).has_accepted());
  // The appends are on the masters all the same.
  EXPECT_EQ(Info("bob", 1).depth(), 20u);
  StartReplica();  // policy off
  v1::EnqueueResponse retried = Enqueue(sends);
  for (int i = 0; i < 20; ++i) {
    ASSERT_TRUE(retried.outcomes(i).has_accepted()) << retried.outcomes(i).DebugString();
    EXPECT_EQ(retried.outcomes(i).accepted().placements(0).sequence(),
              static_cast<uint64_t>(i + 1));
  }
  EXPECT_EQ(Info("bob", 1).depth(), 20u);
  EXPECT_EQ(Info("carol7", 1).depth(), 1u);
}

TEST_P(MessageQueueIntegrationTest, FullInboxRefusesNewEnvelopesUntilAcked) {
  InboxLimits limits;
  limits.max_entries = 3;
  StartReplica(limits);
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(EnqueueOne(ToBob(i, "x")).has_accepted());
  v1::SendOutcome refused = EnqueueOne(ToBob(3, "x"));
  ASSERT_TRUE(refused.has_refused());
  EXPECT_EQ(refused.refused().code(), static_cast<int>(grpc::StatusCode::RESOURCE_EXHAUSTED));
  EXPECT_EQ(Info("bob", 1).depth(), 3u);
  EXPECT_EQ(Info("bob", 1).last_sequence(), 3u);
  v1::ReadInboxResponse r = Read("bob", 1);
  EXPECT_EQ(AckUpTo("bob", 1, r.envelopes(0).server_id()), 1u);
  v1::ReadInboxResponse r2 = Read("bob", 2);
  EXPECT_EQ(AckUpTo("bob", 2, r2.envelopes(0).server_id()), 1u);
  EXPECT_TRUE(EnqueueOne(ToBob(4, "x")).has_accepted());
}

TEST_P(MessageQueueIntegrationTest, ByteCapRefusesAndAcksByIdFreeBytes) {
  InboxLimits limits;
  limits.max_bytes = 1000;
  StartReplica(limits);
  v1::SendOutcome first = EnqueueOne(ToBob(1, std::string(600, 'a')));
  ASSERT_TRUE(first.has_accepted());
  v1::SendOutcome second = EnqueueOne(ToBob(2, std::string(600, 'b')));
  ASSERT_TRUE(second.has_refused());
  EXPECT_EQ(second.refused().code(), static_cast<int>(grpc::StatusCode::RESOURCE_EXHAUSTED));
  EXPECT_EQ(AckUpTo("bob", 1, "", {first.accepted().placements(0).server_id()}), 1u);
  EXPECT_EQ(AckUpTo("bob", 2, "", {first.accepted().placements(1).server_id()}), 1u);
  EXPECT_EQ(Info("bob", 1).bytes(), 0u);
  EXPECT_TRUE(EnqueueOne(ToBob(2, std::string(600, 'b'))).has_accepted());
}

// alice:1 → carol:1, a recipient whose inbox is small.
v1::Send ToCarol(int i, const std::string& ciphertext) {
  v1::Send send = ToBob(i, ciphertext);
  v1::OutgoingMessage* m = send.mutable_message();
  m->mutable_recipients()->DeleteSubrange(1, 1);
  *m->mutable_recipients(0)->mutable_device() = Address("carol", 1);
  m->mutable_recipients(0)->set_registration_id(301);
  return send;
}

TEST_P(MessageQueueIntegrationTest, MemoryAdmissionStopsLargeInboxesFirstThenEveryNewEntry) {
  directory_.Set("carol", 1, {{1, 301}});
  MemoryAdmissionOptions admission_options;
  admission_options.pressure_inbox_bytes = 1000;
  admission_options.retry_after = absl::Seconds(7);
  MemoryAdmission admission(admission_options);
  // What the poller would report for every master: used / maxmemory.
  auto observe = [&](double ratio) {
    for (const std::string& node : options_.addresses) {
      admission.Observe(node, static_cast<uint64_t>(ratio * 1e9), 1'000'000'000);
    }
  };
  StartReplica(InboxLimits(), &admission);
  observe(0.10);
  v1::SendOutcome first = EnqueueOne(ToBob(1, std::string(600, 'a')));
  ASSERT_TRUE(first.has_accepted()) << first.DebugString();

  // Pressure: bob's inboxes (600 bytes each) would pass 1000 bytes and are refused; carol's small
  // inbox still takes entries.
  observe(0.65);
  v1::SendOutcome large = EnqueueOne(ToBob(2, std::string(600, 'b')));
  ASSERT_TRUE(large.has_refused()) << large.DebugString();
  EXPECT_EQ(large.refused().code(), static_cast<int>(grpc::StatusCode::RESOURCE_EXHAUSTED));
  EXPECT_EQ(large.refused().retry_after_ms(), 7000u);
  EXPECT_THAT(large.refused().message(), ::testing::HasSubstr("under pressure"));
  EXPECT_TRUE(EnqueueOne(ToCarol(3, std::string(100, 'c'))).has_accepted());
  EXPECT_EQ(Info("bob", 1).depth(), 1u);

  // Above the high-water mark nothing new is stored, but a retry of a stored send still gets its
  // placements (the dedupe record is read first), and acks free memory as always.
  observe(0.85);
  v1::SendOutcome small = EnqueueOne(ToCarol(4, "d"));
  ASSERT_TRUE(small.has_refused()) << small.DebugString();
  EXPECT_EQ(small.refused().code(), static_cast<int>(grpc::StatusCode::RESOURCE_EXHAUSTED));
  EXPECT_EQ(small.refused().retry_after_ms(), 7000u);
  EXPECT_THAT(small.refused().message(), ::testing::HasSubstr("nearly full"));
  v1::SendOutcome retry = EnqueueOne(ToBob(1, std::string(600, 'a')));
  ASSERT_TRUE(retry.has_accepted()) << retry.DebugString();
  EXPECT_EQ(retry.accepted().placements(0).server_id(),
            first.accepted().placements(0).server_id());
  EXPECT_EQ(Info("carol", 1).depth(), 1u);
  EXPECT_EQ(AckUpTo("bob", 1, first.accepted().placements(0).server_id()), 1u);

  // Memory back below the marks: bob's inbox takes entries again.
  observe(0.30);
  EXPECT_TRUE(EnqueueOne(ToBob(2, std::string(600, 'b'))).has_accepted());
}

TEST_P(MessageQueueIntegrationTest, MemoryAdmissionCountsAppendsBetweenPolls) {
  MemoryAdmissionOptions admission_options;
  admission_options.pressure_inbox_bytes = 1000;
  admission_options.bytes_overhead = 1.0;
  MemoryAdmission admission(admission_options);
  // Every master at 590 KB of 1 MB: 10 KB more reaches the pressure mark (60 %).
  for (const std::string& node : options_.addresses) admission.Observe(node, 590'000, 1'000'000);
  StartReplica(InboxLimits(), &admission);
  // Two devices of bob per send (on one master, or two of a cluster); each envelope is a little
  // over 12 000 bytes, which the estimate adds to its master until the next poll.
  ASSERT_TRUE(EnqueueOne(ToBob(1, std::string(12000, 'a'))).has_accepted());
  v1::SendOutcome after = EnqueueOne(ToBob(2, std::string(12000, 'b')));
  ASSERT_TRUE(after.has_refused()) << after.DebugString();
  EXPECT_EQ(after.refused().code(), static_cast<int>(grpc::StatusCode::RESOURCE_EXHAUSTED));
}

TEST_P(MessageQueueIntegrationTest, PurgeRemovesEveryKeyOfTheDevice) {
  StartReplica();
  ASSERT_TRUE(EnqueueOne(ToBob(1, "x")).has_accepted());
  ASSERT_TRUE(EnqueueOne(ToBob(2, "y")).has_accepted());
  // inbox, sequence, meta and one or two dedupe buckets
  EXPECT_GE(ExistingKeys("bob", 1), 4);
  v1::PurgeInboxRequest request;
  *request.mutable_device() = Address("bob", 1);
  v1::PurgeInboxResponse response;
  grpc::ClientContext context;
  Deadline(context);
  ASSERT_TRUE(replica_->stub().PurgeInbox(&context, request, &response).ok());
  EXPECT_EQ(response.removed(), 2u);
  EXPECT_EQ(ExistingKeys("bob", 1), 0);
  EXPECT_EQ(Info("bob", 2).depth(), 2u);
}

TEST_P(MessageQueueIntegrationTest, EmptyEnqueueRequestAnswersOkWithNoOutcomes) {
  StartReplica();
  v1::EnqueueResponse response;
  grpc::ClientContext context;
  Deadline(context);
  grpc::Status s = replica_->stub().Enqueue(&context, v1::EnqueueRequest(), &response);
  EXPECT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(response.outcomes_size(), 0);
}

TEST_P(MessageQueueIntegrationTest, BadReadCursorIsInvalidArgument) {
  StartReplica();
  v1::ReadInboxRequest request;
  *request.mutable_device() = Address("bob", 1);
  request.set_after_server_id("0-0 +");
  v1::ReadInboxResponse response;
  grpc::ClientContext context;
  Deadline(context);
  EXPECT_EQ(replica_->stub().ReadInbox(&context, request, &response).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
}

// Inventory: after a scenario (sends, a retry, an online_only send, an ack), every key in Redis is
// one of the listed message-queue kinds, every field of every key is a listed field, and every
// stored envelope's ciphertext is byte for byte one that the test submitted.
TEST_P(MessageQueueIntegrationTest, RedisHoldsOnlyListedKeysAndSubmittedCiphertexts) {
  StartReplica();
  std::set<std::string> submitted;
  for (int i = 0; i < 20; ++i) {
    std::string ciphertext = absl::StrCat("ciphertext-", i, std::string(1, '\0'), "\xff");
    submitted.insert(ciphertext);
    ASSERT_TRUE(EnqueueOne(ToBob(i, ciphertext)).has_accepted());
  }
  ASSERT_TRUE(EnqueueOne(ToBob(3, "ciphertext-3")).has_accepted());  // a retry: nothing new
  v1::Send typing = ToBob(100, "typing-never-stored");
  typing.mutable_message()->set_online_only(true);
  ASSERT_TRUE(EnqueueOne(typing).has_accepted());
  v1::ReadInboxResponse r = Read("bob", 1);
  ASSERT_EQ(r.envelopes_size(), 20);
  EXPECT_EQ(AckUpTo("bob", 1, r.envelopes(9).server_id()), 10u);
  EXPECT_EQ(AckUpTo("bob", 1, "", {r.envelopes(15).server_id()}), 1u);  // one by one: a16

  std::vector<std::string> keys;
  for (const redis::NodeReply& node :
       probe_client_->ExecuteOnEachMaster(redis::Command::Keyless({"KEYS", "*"}))) {
    ASSERT_TRUE(node.reply.ok()) << node.reply.status();
    for (const redis::RedisReply& k : node.reply->elements()) keys.push_back(k.str());
  }
  std::set<std::string> allowed;
  for (uint32_t device : {1u, 2u}) {
    for (const std::string& k : channels::DeviceInboxKeys("bob", device)) allowed.insert(k);
  }
  int streams = 0;
  for (const std::string& key : keys) {
    ASSERT_TRUE(allowed.contains(key)) << "unexpected key " << key;
    auto type = probe_client_->Execute(redis::Command::Keyed({"TYPE", key}, 1));
    ASSERT_TRUE(type.ok());
    if (key.rfind("q:", 0) == 0) {
      ++streams;
      EXPECT_EQ(type->str(), "stream");
      auto entries = probe_client_->Execute(redis::Command::Keyed({"XRANGE", key, "-", "+"}, 1));
      ASSERT_TRUE(entries.ok());
      EXPECT_EQ(entries->elements().size(), key == "q:{bob:1}" ? 9u : 20u);
      for (const redis::RedisReply& entry : entries->elements()) {
        const auto& fields = entry.elements()[1].elements();
        ASSERT_EQ(fields.size(), 6u);
        EXPECT_EQ(fields[0].str(), "s");
        EXPECT_EQ(fields[2].str(), "x");
        EXPECT_EQ(fields[4].str(), "e");
        v1::Envelope envelope;
        ASSERT_TRUE(envelope.ParseFromString(fields[5].str()));
        EXPECT_TRUE(submitted.contains(envelope.ciphertext()));
        EXPECT_EQ(envelope.message_id().size(), 16u);
      }
    } else if (key.rfind("seq:", 0) == 0) {
      EXPECT_EQ(type->str(), "string");
    } else {
      EXPECT_EQ(type->str(), "hash");
      auto fields = probe_client_->Execute(redis::Command::Keyed({"HKEYS", key}, 1));
      ASSERT_TRUE(fields.ok());
      for (const redis::RedisReply& f : fields->elements()) {
        if (key.rfind("qm:", 0) == 0) {
          // a<sequence> / ia: sequences acked one by one above the floor, and their number.
          const bool one_by_one =
              f.str().size() > 1 && f.str()[0] == 'a' &&
              f.str().find_first_not_of("0123456789", 1) == std::string::npos;
          // h / r: the trim's head bound and the TTL refresh time (both milliseconds).
          EXPECT_TRUE(f.str() == "bytes" || f.str() == "acked" || f.str() == "ia" ||
                      f.str() == "h" || f.str() == "r" || one_by_one)
              << f.str();
        } else {  // dedupe bucket: "_b" or a 16-byte keyed id that does not name the sender
          EXPECT_TRUE(f.str() == "_b" ||
                      (f.str().size() == DedupeIds::kIdBytes &&
                       f.str().find("alice") == std::string::npos))
              << absl::BytesToHexString(f.str());
        }
      }
    }
    auto ttl = probe_client_->Execute(redis::Command::Keyed({"PTTL", key}, 1));
    ASSERT_TRUE(ttl.ok());
    EXPECT_GT(ttl->integer(), 0) << key << " has no TTL";
  }
  EXPECT_EQ(streams, 2);
}

// Group fan-out: one send with a shared payload to 1 024 users; the payload is stored once (in a
// slot of its own), served to every device with its own header, and deleted with the last ack.
TEST_P(MessageQueueIntegrationTest, GroupFanOutStoresPayloadOnceUntilTheLastAck) {
  StartReplica();
  constexpr int kUsers = 1024;
  auto user = [](int i) { return absl::StrCat("g", 1000 + i); };
  for (int i = 0; i < kUsers; ++i) directory_.Set(user(i), 1, {{1, 300}});
  probe_->Listen(user(0), 1);
  std::string payload(10'000, '\0');
  for (size_t k = 0; k < payload.size(); ++k) payload[k] = static_cast<char>(k * 131 % 251);
  v1::Send send;
  *send.mutable_sender() = Address("alice", 1);
  v1::OutgoingMessage* m = send.mutable_message();
  m->set_message_id(MessageId(42));
  m->set_shared_ciphertext(payload);
  m->set_shared_type(v1::ENVELOPE_TYPE_SENDER_KEY_MESSAGE);
  for (int i = 0; i < kUsers; ++i) {
    v1::Recipient* r = m->add_recipients();
    *r->mutable_device() = Address(user(i), 1);
    r->set_registration_id(300);
    r->set_header(absl::StrCat("h", i));
  }
  v1::SendOutcome outcome = EnqueueOne(send);
  ASSERT_TRUE(outcome.has_accepted()) << outcome.refused().message();
  ASSERT_EQ(outcome.accepted().placements_size(), kUsers);
  EXPECT_TRUE(outcome.accepted().placements(0).online());

  auto payload_keys = [&] {
    std::vector<std::string> keys;
    for (const redis::NodeReply& node :
         probe_client_->ExecuteOnEachMaster(redis::Command::Keyless({"KEYS", "gp:*"}))) {
      EXPECT_TRUE(node.reply.ok());
      if (!node.reply.ok()) continue;
      for (const redis::RedisReply& k : node.reply->elements()) keys.push_back(k.str());
    }
    return keys;
  };
  std::vector<std::string> keys = payload_keys();
  ASSERT_EQ(keys.size(), 1u);
  auto stored = probe_client_->Execute(redis::Command::Keyed({"HGET", keys[0], "d"}, 1));
  ASSERT_TRUE(stored.ok());
  EXPECT_EQ(stored->str(), payload);
  // Each inbox entry holds a reference, not the payload.
  auto entry = probe_client_->Execute(
      redis::Command::Keyed({"XRANGE", channels::InboxKey(user(5), 1), "-", "+"}, 1));
  ASSERT_TRUE(entry.ok());
  ASSERT_EQ(entry->elements().size(), 1u);
  EXPECT_LT(entry->elements()[0].elements()[1].elements()[5].str().size(), 200u);
  // The wake-up is too big to carry the payload: sequence only.
  ASSERT_TRUE(WaitFor([&] { return probe_->events().size() == 1; }, absl::Seconds(10)));
  EXPECT_FALSE(probe_->events()[0].wakeup().has_envelope());

  v1::AckRequest ack;
  for (int i = 0; i < kUsers; ++i) {
    v1::ReadInboxResponse r = Read(user(i), 1);
    ASSERT_EQ(r.envelopes_size(), 1);
    ASSERT_EQ(r.envelopes(0).ciphertext(), payload);
    ASSERT_EQ(r.envelopes(0).recipient_header(), absl::StrCat("h", i));
    if (i == kUsers - 1) break;  // the last device acks separately
    v1::DeviceAck* a = ack.add_acks();
    *a->mutable_device() = Address(user(i), 1);
    a->set_up_to_server_id(r.envelopes(0).server_id());
  }
  v1::AckResponse acked;
  grpc::ClientContext context;
  Deadline(context);
  ASSERT_TRUE(replica_->stub().Ack(&context, ack, &acked).ok());
  ASSERT_EQ(acked.removed_size(), kUsers - 1);
  EXPECT_EQ(payload_keys().size(), 1u);  // one reference left
  v1::ReadInboxResponse last = Read(user(kUsers - 1), 1);
  EXPECT_EQ(AckUpTo(user(kUsers - 1), 1, last.envelopes(0).server_id()), 1u);
  EXPECT_TRUE(payload_keys().empty());
}

TEST_P(MessageQueueIntegrationTest, SmallGroupPayloadRidesInWakeUpAndRetryKeepsOnePayload) {
  StartReplica();
  probe_->Listen("bob", 2);
  v1::Send send = ToBob(9, "");
  send.mutable_message()->set_shared_ciphertext("small-shared");
  send.mutable_message()->set_shared_type(v1::ENVELOPE_TYPE_SENDER_KEY_MESSAGE);
  for (v1::Recipient& r : *send.mutable_message()->mutable_recipients()) {
    r.clear_ciphertext();
    r.set_header("hdr");
  }
  v1::SendOutcome first = EnqueueOne(send);
  ASSERT_TRUE(first.has_accepted()) << first.refused().message();
  v1::SendOutcome retry = EnqueueOne(send);
  ASSERT_TRUE(retry.has_accepted());
  EXPECT_EQ(retry.accepted().placements(1).server_id(),
            first.accepted().placements(1).server_id());
  ASSERT_TRUE(WaitFor([&] { return probe_->events().size() == 1; }, absl::Seconds(10)));
  const v1::Envelope inline_envelope = probe_->events()[0].wakeup().envelope();
  EXPECT_EQ(inline_envelope.ciphertext(), "small-shared");
  EXPECT_EQ(inline_envelope.recipient_header(), "hdr");
  EXPECT_EQ(inline_envelope.SerializeAsString(), Read("bob", 2).envelopes(0).SerializeAsString());
  // Purging both inboxes drops both references: the payload is gone.
  for (uint32_t device : {1u, 2u}) {
    v1::PurgeInboxRequest request;
    *request.mutable_device() = Address("bob", device);
    v1::PurgeInboxResponse response;
    grpc::ClientContext context;
    Deadline(context);
    ASSERT_TRUE(replica_->stub().PurgeInbox(&context, request, &response).ok());
  }
  int payloads = 0;
  for (const redis::NodeReply& node :
       probe_client_->ExecuteOnEachMaster(redis::Command::Keyless({"KEYS", "gp:*"}))) {
    ASSERT_TRUE(node.reply.ok());
    payloads += static_cast<int>(node.reply->elements().size());
  }
  EXPECT_EQ(payloads, 0);
}

// Durability: redis-server with AOF (appendfsync everysec, the documented default) killed with
// SIGKILL right after the sends were acknowledged and started again on the same directory: every
// accepted envelope is still there, the sequence continues, and a retry is still recognised.
TEST(MessageQueueDurabilityTest, AofKeepsEveryAcceptedEnvelopeAcrossKillNine) {
  padlock::testing::TempDir dir;
  const int port = padlock::testing::FreeTcpPort();
  padlock::testing::Subprocess::Options server;
  server.argv = {"redis-server", "--port", absl::StrCat(port), "--bind", "127.0.0.1",
                 "--dir", dir.path(), "--save", "", "--appendonly", "yes",
                 "--appendfsync", "everysec"};
  server.log_path = dir.path() + "/redis.log";
  auto ping = [&] {
    auto out = padlock::testing::RedisCli(port, {"PING"});
    return out.ok() && out->find("PONG") != std::string::npos;
  };
  auto process = padlock::testing::Subprocess::Start(server);
  ASSERT_TRUE(process.ok()) << process.status();
  ASSERT_TRUE(WaitFor(ping, absl::Seconds(10)));

  FakeDeviceDirectory directory;
  directory.Set("alice", 1, {{1, 101}});
  directory.Set("bob", 4, {{1, 201}, {2, 202}});
  redis::RedisOptions options;
  options.addresses = {absl::StrCat("127.0.0.1:", port)};
  auto replica = std::make_unique<Replica>(options, InboxLimits(), &directory);
  auto enqueue = [&](int i) {
    v1::EnqueueRequest request;
    *request.add_sends() = ToBob(i, absl::StrCat("durable-", i));
    v1::EnqueueResponse response;
    grpc::ClientContext context;
    Deadline(context);
    grpc::Status s = replica->stub().Enqueue(&context, request, &response);
    EXPECT_TRUE(s.ok()) << s.error_message();
    return response.outcomes_size() == 1 ? response.outcomes(0) : v1::SendOutcome();
  };
  constexpr int kSends = 200;
  std::string last_id;
  for (int i = 0; i < kSends; ++i) {
    v1::SendOutcome outcome = enqueue(i);
    ASSERT_TRUE(outcome.has_accepted());
    last_id = outcome.accepted().placements(0).server_id();
  }
  process->Kill();  // SIGKILL: no shutdown save
  process = padlock::testing::Subprocess::Start(server);
  ASSERT_TRUE(process.ok()) << process.status();
  ASSERT_TRUE(WaitFor(ping, absl::Seconds(10)));
  // Redis may still be loading the AOF: enqueue answers UNAVAILABLE until then.
  v1::SendOutcome retry;
  ASSERT_TRUE(WaitFor(
      [&] {
        retry = enqueue(kSends - 1);
        return retry.has_accepted();
      },
      absl::Seconds(10)));
  EXPECT_EQ(retry.accepted().placements(0).server_id(), last_id);  // dedupe survived

  v1::ReadInboxRequest read;
  *read.mutable_device() = Address("bob", 1);
  read.set_max_envelopes(1024);
  v1::ReadInboxResponse page;
  grpc::ClientContext context;
  Deadline(context);
  ASSERT_TRUE(replica->stub().ReadInbox(&context, read, &page).ok());
  ASSERT_EQ(page.envelopes_size(), kSends);
  for (int i = 0; i < kSends; ++i) {
    EXPECT_EQ(page.envelopes(i).ciphertext(), absl::StrCat("durable-", i));
    EXPECT_EQ(page.envelopes(i).sequence(), static_cast<uint64_t>(i + 1));
  }
  v1::SendOutcome next = enqueue(kSends);
  ASSERT_TRUE(next.has_accepted());
  EXPECT_EQ(next.accepted().placements(0).sequence(), static_cast<uint64_t>(kSends + 1));
  replica.reset();
  process->Kill();
}

// Durability policy (PADLOCK_REDIS_WAIT_REPLICAS): a real master with one real replica. A send is
// accepted only once the replica confirmed its writes; with fewer replicas than asked it is
// refused UNAVAILABLE, and its retry (deduplicated) is accepted with the same ids once they are.
class MessageQueueReplicaWaitTest : public ::testing::Test {
 protected:
  // Where a confirmation is expected: generous (a loaded machine schedules the replica late),
  // and below the Redis command timeout (2 s) that bounds the read of WAIT's reply.
  static constexpr absl::Duration kConfirmWithin = absl::Milliseconds(1500);

  void SetUp() override {
    auto master = padlock::testing::RedisServer::Start({"--repl-diskless-sync-delay", "0"});
    ASSERT_TRUE(master.ok()) << master.status();
    master_ = *std::move(master);
    auto replica = master_->StartReplica();
    ASSERT_TRUE(replica.ok()) << replica.status();
    replica_ = *std::move(replica);
    absl::Status online = master_->WaitForOnlineReplicas(1, absl::Seconds(20));
    ASSERT_TRUE(online.ok()) << online;
    directory_.Set("alice", 1, {{1, 101}});
    directory_.Set("bob", 4, {{1, 201}, {2, 202}});
    options_.addresses = {master_->address()};
  }
  std::unique_ptr<Replica> Service(int replicas, absl::Duration timeout) {
    InboxLimits limits;
    limits.durability = redis::ReplicaWait{replicas, timeout};
    return std::make_unique<Replica>(options_, limits, &directory_);
  }
  static v1::SendOutcome Send(Replica& service, const v1::Send& send) {
    v1::EnqueueRequest request;
    *request.add_sends() = send;
    v1::EnqueueResponse response;
    grpc::ClientContext context;
    Deadline(context);
    grpc::Status s = service.stub().Enqueue(&context, request, &response);
    EXPECT_TRUE(s.ok()) << s.error_message();
    return response.outcomes_size() == 1 ? response.outcomes(0) : v1::SendOutcome();
  }
  std::string OnReplica(const std::vector<std::string>& args) {
    absl::StatusOr<std::string> out = replica_->Cli(args);
    return out.ok() ? std::string(absl::StripTrailingAsciiWhitespace(*out)) : "<error>";
  }

  std::unique_ptr<padlock::testing::RedisServer> master_;
  std::unique_ptr<padlock::testing::RedisServer> replica_;
  FakeDeviceDirectory directory_;
  redis::RedisOptions options_;
};

TEST_F(MessageQueueReplicaWaitTest, AcceptedSendIsOnTheReplicaWhenAnswered) {
  auto service = Service(1, kConfirmWithin);
  v1::SendOutcome outcome = Send(*service, ToBob(1, "replicated"));
  ASSERT_TRUE(outcome.has_accepted()) << outcome.DebugString();
  // No polling: WAIT returned only after the replica acknowledged the appends.
  EXPECT_EQ(OnReplica({"XLEN", "q:{bob:1}"}), "1");
  EXPECT_EQ(OnReplica({"XLEN", "q:{bob:2}"}), "1");
  EXPECT_EQ(OnReplica({"GET", "seq:{bob:1}"}), "1");
}

TEST_F(MessageQueueReplicaWaitTest, TooFewReplicasRefusesUnavailableAndTheRetryKeepsIds) {
  auto strict = Service(2, absl::Milliseconds(50));  // only one replica exists
  v1::SendOutcome refused = Send(*strict, ToBob(1, "needs-two"));
  ASSERT_TRUE(refused.has_refused()) << refused.DebugString();
  EXPECT_EQ(refused.refused().code(), static_cast<int>(grpc::StatusCode::UNAVAILABLE));
  EXPECT_THAT(refused.refused().message(), ::testing::HasSubstr("replica"));
  strict.reset();
  // The appends did happen on the master: the retry is a dedupe hit, confirmed by the replica.
  auto service = Service(1, kConfirmWithin);
  v1::SendOutcome retry = Send(*service, ToBob(1, "needs-two"));
  ASSERT_TRUE(retry.has_accepted()) << retry.DebugString();
  EXPECT_EQ(retry.accepted().placements(0).sequence(), 1u);
  EXPECT_EQ(OnReplica({"XLEN", "q:{bob:1}"}), "1");
}

TEST_F(MessageQueueReplicaWaitTest, StoppedReplicaRefusesSendsUntilItIsBack) {
  auto service = Service(1, absl::Milliseconds(50));
  ASSERT_TRUE(replica_->Stop().ok());
  v1::SendOutcome refused = Send(*service, ToBob(1, "while-down"));
  ASSERT_TRUE(refused.has_refused()) << refused.DebugString();
  EXPECT_EQ(refused.refused().code(), static_cast<int>(grpc::StatusCode::UNAVAILABLE));
  ASSERT_TRUE(replica_->StartAgain().ok());
  ASSERT_TRUE(master_->WaitForOnlineReplicas(1, absl::Seconds(20)).ok());
  service = Service(1, kConfirmWithin);
  v1::SendOutcome accepted = Send(*service, ToBob(1, "while-down"));
  ASSERT_TRUE(accepted.has_accepted()) << accepted.DebugString();
  EXPECT_EQ(OnReplica({"XLEN", "q:{bob:2}"}), "1");
}

TEST_F(MessageQueueReplicaWaitTest, GroupPayloadIsOnTheReplicaBeforeTheSendIsAccepted) {
  auto service = Service(1, kConfirmWithin);
  v1::Send send;
  *send.mutable_sender() = Address("alice", 1);
  v1::OutgoingMessage* m = send.mutable_message();
  m->set_message_id(MessageId(9));
  m->set_shared_ciphertext(std::string(5000, 'g'));
  m->set_shared_type(v1::ENVELOPE_TYPE_SENDER_KEY_MESSAGE);
  for (uint32_t device : {1u, 2u}) {
    v1::Recipient* r = m->add_recipients();
    *r->mutable_device() = Address("bob", device);
    r->set_registration_id(200 + device);
  }
  v1::SendOutcome outcome = Send(*service, send);
  ASSERT_TRUE(outcome.has_accepted()) << outcome.DebugString();
  const std::string payload_key = absl::StrCat(
      "gp:{",
      absl::BytesToHexString(DedupeIds(kDedupeSecret).ForSend("alice", 1, MessageId(9))), "}");
  EXPECT_EQ(OnReplica({"HGET", payload_key, "r"}), "2");
  // An online_only send is published outside the WAITed pipeline and still accepted.
  v1::Send typing = ToBob(10, "typing");
  typing.mutable_message()->set_online_only(true);
  ASSERT_TRUE(Send(*service, typing).has_accepted());
}

// maxmemory early warning: the gauge follows INFO memory of a real redis-server.
double Gauge(prometheus::Registry& registry, const std::string& name, const std::string& node) {
  for (const prometheus::MetricFamily& family : registry.Collect()) {
    if (family.name != name) continue;
    for (const prometheus::ClientMetric& m : family.metric) {
      for (const prometheus::ClientMetric::Label& l : m.label) {
        if (l.name == "node" && l.value == node) return m.gauge.value;
      }
    }
  }
  return -1;
}

TEST(RedisMemoryMonitorTest, GaugeReflectsConfiguredMaxmemory) {
  auto server = padlock::testing::RedisServer::Start({"--maxmemory", "64mb",
                                                      "--maxmemory-policy", "noeviction"});
  ASSERT_TRUE(server.ok()) << server.status();
  redis::RedisOptions options;
  options.addresses = {(*server)->address()};
  auto client = *redis::RedisClient::Create(options);
  prometheus::Registry registry;
  RedisMemoryMonitor monitor(client.get(), &registry);
  ASSERT_TRUE(monitor.PollOnce().ok());
  const std::string node = (*server)->address();
  EXPECT_EQ(Gauge(registry, "padlock_redis_memory_max_bytes", node), 64.0 * 1024 * 1024);
  const double used = Gauge(registry, "padlock_redis_memory_used_bytes", node);
  EXPECT_GT(used, 0);
  EXPECT_DOUBLE_EQ(Gauge(registry, "padlock_redis_memory_used_ratio", node),
                   used / (64.0 * 1024 * 1024));
  // 4 MiB of data moves the ratio up by at least that share.
  auto set =
      client->Execute(redis::Command::Keyed({"SET", "ballast", std::string(4 << 20, 'b')}, 1));
  ASSERT_TRUE(set.ok() && !set->is_error());
  ASSERT_TRUE(monitor.PollOnce().ok());
  EXPECT_GE(Gauge(registry, "padlock_redis_memory_used_ratio", node), 4.0 / 64.0);
  // Without maxmemory the ratio is 0 (nothing to warn against; max_bytes says why).
  ASSERT_TRUE((*server)->Cli({"CONFIG", "SET", "maxmemory", "0"}).ok());
  ASSERT_TRUE(monitor.PollOnce().ok());
  EXPECT_EQ(Gauge(registry, "padlock_redis_memory_used_ratio", node), 0.0);
  EXPECT_EQ(Gauge(registry, "padlock_redis_memory_max_bytes", node), 0.0);
  // The poller thread picks up a change on its own.
  ASSERT_TRUE((*server)->Cli({"CONFIG", "SET", "maxmemory", "32mb"}).ok());
  monitor.Start(absl::Milliseconds(100));
  EXPECT_TRUE(WaitFor(
      [&] {
        return Gauge(registry, "padlock_redis_memory_max_bytes", node) == 32.0 * 1024 * 1024;
      },
      absl::Seconds(10)));
  monitor.Stop();
}

TEST(RedisMemoryMonitorTest, ClusterReportsEveryMasterByAddress) {
  auto cluster = padlock::testing::RedisCluster::Start(3);
  ASSERT_TRUE(cluster.ok()) << cluster.status();
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE((*cluster)->Cli(i, {"CONFIG", "SET", "maxmemory", absl::StrCat(100 + i, "mb")})
                    .ok());
  }
  redis::RedisOptions options;
  options.addresses = (*cluster)->addresses();
  options.mode = redis::RedisMode::kCluster;
  auto client = *redis::RedisClient::Create(options);
  prometheus::Registry registry;
  RedisMemoryMonitor monitor(client.get(), &registry);
  ASSERT_TRUE(monitor.PollOnce().ok());
  for (int i = 0; i < 3; ++i) {
    const std::string node = (*cluster)->address(i);
    EXPECT_EQ(Gauge(registry, "padlock_redis_memory_max_bytes", node),
              (100.0 + i) * 1024 * 1024);
    const double ratio = Gauge(registry, "padlock_redis_memory_used_ratio", node);
    EXPECT_GT(ratio, 0) << node;
    EXPECT_LT(ratio, 1) << node;
  }
}

// --- Grouped enqueue: one script call per cluster hash slot (one per standalone Redis) ---------

// EVALSHA calls so far, summed over every master (INFO commandstats).
int64_t EvalshaCalls(redis::RedisClient& client) {
  int64_t total = 0;
  for (const redis::NodeReply& node :
       client.ExecuteOnEachMaster(redis::Command::Keyless({"INFO", "commandstats"}))) {
    EXPECT_TRUE(node.reply.ok()) << node.address;
    if (!node.reply.ok()) continue;
    const std::string& text = node.reply->str();
    const size_t at = text.find("cmdstat_evalsha:calls=");
    if (at == std::string::npos) continue;
    int64_t calls = 0;
    const size_t from = at + std::string("cmdstat_evalsha:calls=").size();
    EXPECT_TRUE(absl::SimpleAtoi(text.substr(from, text.find(',', from) - from), &calls));
    total += calls;
  }
  return total;
}

AppendRequest OneToOne(const DeviceKey& device, const std::string& dedupe_key,
                       const std::string& ciphertext) {
  v1::Envelope envelope;
  envelope.set_ciphertext(ciphertext);
  AppendRequest r;
  r.device = device;
  r.envelope = envelope.SerializeAsString();
  r.dedupe_key = dedupe_key;
  r.expires_at_ms = static_cast<uint64_t>(absl::ToUnixMillis(absl::Now() + absl::Hours(1)));
  return r;
}

TEST_P(MessageQueueIntegrationTest, AppendsOfABatchAreOneScriptCallPerSlotOfAtMost256Devices) {
  auto client = *redis::RedisClient::Create(options_);
  RedisInboxStore store(client.get(), InboxLimits());
  // 300 devices: more than one call's bound on a standalone Redis, spread over the masters of a
  // cluster; one device twice (its two appends in order, in one call).
  std::vector<AppendRequest> batch;
  std::set<int> slots;
  for (uint32_t d = 1; d <= 300; ++d) {
    batch.push_back(OneToOne({"grp", d}, absl::StrCat("alice:1:m", d), absl::StrCat("c", d)));
    slots.insert(redis::KeySlot(channels::InboxKey("grp", d)));
  }
  batch.push_back(OneToOne({"grp", 7}, "alice:1:second", "second"));
  // A first batch loads the script on every node that holds one of these slots (a NOSCRIPT
  // reload would count a second EVALSHA).
  std::vector<AppendRequest> warm_up;
  for (uint32_t d = 1; d <= 300; ++d) warm_up.push_back(OneToOne({"grp", d}, "warm", "w"));
  for (const auto& r : store.Append(warm_up)) ASSERT_TRUE(r.ok()) << r.status();

  const int64_t before = EvalshaCalls(*probe_client_);
  std::vector<absl::StatusOr<AppendResult>> results = store.Append(batch);
  const int64_t calls = EvalshaCalls(*probe_client_) - before;

  EXPECT_EQ(calls, GetParam() == Mode::kCluster ? static_cast<int64_t>(slots.size()) : 2);
  ASSERT_EQ(results.size(), batch.size());
  for (size_t i = 0; i < 300; ++i) {
    ASSERT_TRUE(results[i].ok()) << i << ": " << results[i].status();
    EXPECT_FALSE(results[i]->duplicate);
    EXPECT_EQ(results[i]->sequence, 2u) << i;  // after the warm-up's 1
  }
  ASSERT_TRUE(results[300].ok()) << results[300].status();
  EXPECT_EQ(results[300]->sequence, 3u);
  absl::StatusOr<InboxPage> page = store.Read({"grp", 7}, "", 10);
  ASSERT_TRUE(page.ok()) << page.status();
  ASSERT_EQ(page->entries.size(), 3u);
  v1::Envelope first, second;
  ASSERT_TRUE(first.ParseFromString(page->entries[1].envelope));
  ASSERT_TRUE(second.ParseFromString(page->entries[2].envelope));
  EXPECT_EQ(first.ciphertext(), "c7");
  EXPECT_EQ(second.ciphertext(), "second");
  EXPECT_EQ(page->entries[1].server_id, results[6]->server_id);
  EXPECT_EQ(page->entries[2].server_id, results[300]->server_id);
}

// `n` devices whose keys share one cluster slot (users whose hash tags collide), so that their
// appends are one call in both modes.
std::vector<DeviceKey> SlotMates(const std::string& prefix, size_t n) {
  const DeviceKey a{absl::StrCat(prefix, 0), 1};
  const int slot = redis::KeySlot(channels::InboxKey(a.user_id, a.device_id));
  std::vector<DeviceKey> mates = {a};
  for (int i = 1; mates.size() < n; ++i) {
    DeviceKey d{absl::StrCat(prefix, i), 1};
    if (redis::KeySlot(channels::InboxKey(d.user_id, d.device_id)) == slot) mates.push_back(d);
  }
  return mates;
}

TEST_P(MessageQueueIntegrationTest, OneGroupedCallReturnsEachDevicesOwnOutcomeInOrder) {
  const std::vector<DeviceKey> mates = SlotMates("slotmate", 3);
  const DeviceKey& dup = mates[0];
  const DeviceKey& full = mates[1];
  const DeviceKey& fresh = mates[2];
  InboxLimits limits;
  limits.max_entries = 1;
  auto client = *redis::RedisClient::Create(options_);
  RedisInboxStore store(client.get(), limits);
  auto first = store.Append({OneToOne(dup, "k1", "one"), OneToOne(full, "k2", "two")});
  ASSERT_TRUE(first[0].ok()) << first[0].status();
  ASSERT_TRUE(first[1].ok()) << first[1].status();

  const int64_t before = EvalshaCalls(*probe_client_);
  auto results = store.Append({OneToOne(dup, "k1", "one"), OneToOne(full, "k3", "three"),
                               OneToOne(fresh, "k4", "four"), OneToOne(fresh, "k5", "five")});
  EXPECT_EQ(EvalshaCalls(*probe_client_) - before, 1);

  ASSERT_EQ(results.size(), 4u);
  ASSERT_TRUE(results[0].ok()) << results[0].status();
  EXPECT_TRUE(results[0]->duplicate);
  EXPECT_EQ(results[0]->sequence, first[0]->sequence);
  EXPECT_EQ(results[0]->server_id, first[0]->server_id);
  EXPECT_EQ(results[1].status().code(), absl::StatusCode::kResourceExhausted)
      << results[1].status();
  ASSERT_TRUE(results[2].ok()) << results[2].status();
  EXPECT_FALSE(results[2]->duplicate);
  EXPECT_EQ(results[2]->sequence, 1u);
  // The same device's second append sees its first in the same call: now at its cap.
  EXPECT_EQ(results[3].status().code(), absl::StatusCode::kResourceExhausted)
      << results[3].status();
  absl::StatusOr<InboxInfo> info = store.Info(full);
  ASSERT_TRUE(info.ok());
  EXPECT_EQ(info->depth, 1u);
  EXPECT_EQ(info->last_sequence, 1u);
}

TEST_P(MessageQueueIntegrationTest, OneDevicesRedisErrorInAGroupedCallLeavesTheOthersStored) {
  // Standalone: one call for all three. A broken inbox key (a string, not a stream) makes the
  // middle device's XLEN fail; the devices before and after it are stored as if alone.
  auto client = *redis::RedisClient::Create(options_);
  RedisInboxStore store(client.get(), InboxLimits());
  auto set = probe_client_->Execute(
      redis::Command::Keyed({"SET", channels::InboxKey("broken", 1), "not a stream"}, 1));
  ASSERT_TRUE(set.ok());
  auto results = store.Append({OneToOne({"left", 1}, "k", "l"), OneToOne({"broken", 1}, "k", "b"),
                               OneToOne({"right", 1}, "k", "r")});
  ASSERT_EQ(results.size(), 3u);
  ASSERT_TRUE(results[0].ok()) << results[0].status();
  EXPECT_EQ(results[1].status().code(), absl::StatusCode::kFailedPrecondition)
      << results[1].status();
  ASSERT_TRUE(results[2].ok()) << results[2].status();
  for (const DeviceKey& d : {DeviceKey{"left", 1}, DeviceKey{"right", 1}}) {
    absl::StatusOr<InboxInfo> info = store.Info(d);
    ASSERT_TRUE(info.ok()) << info.status();
    EXPECT_EQ(info->depth, 1u) << d.user_id;
  }
}

TEST_P(MessageQueueIntegrationTest, ShortWaitInAGroupedCallIsUnavailablePerStoredDeviceOnly) {
  // No replica, WAIT for one: every write is unconfirmed. In one call, the stored device is
  // Unavailable (as its own call was) and the full one keeps its RESOURCE_EXHAUSTED.
  const std::vector<DeviceKey> mates = SlotMates("waitmate", 2);
  InboxLimits limits;
  limits.max_entries = 1;
  limits.durability = redis::ReplicaWait{1, absl::Milliseconds(20)};
  auto client = *redis::RedisClient::Create(options_);
  RedisInboxStore store(client.get(), limits);
  auto fill = store.Append({OneToOne(mates[0], "k1", "one")});
  EXPECT_EQ(fill[0].status().code(), absl::StatusCode::kUnavailable) << fill[0].status();

  const int64_t before = EvalshaCalls(*probe_client_);
  auto results = store.Append({OneToOne(mates[0], "k2", "two"), OneToOne(mates[1], "k3", "x")});
  EXPECT_EQ(EvalshaCalls(*probe_client_) - before, 1);
  ASSERT_EQ(results.size(), 2u);
  EXPECT_EQ(results[0].status().code(), absl::StatusCode::kResourceExhausted)
      << results[0].status();
  EXPECT_EQ(results[1].status().code(), absl::StatusCode::kUnavailable) << results[1].status();
  // The unconfirmed append is on the master all the same; a retry is its duplicate.
  InboxLimits off = limits;
  off.durability = redis::ReplicaWait{};
  RedisInboxStore no_wait(client.get(), off);
  auto retried = no_wait.Append({OneToOne(mates[1], "k3", "x")});
  ASSERT_TRUE(retried[0].ok()) << retried[0].status();
  EXPECT_TRUE(retried[0]->duplicate);
  EXPECT_EQ(retried[0]->sequence, 1u);
}

TEST_P(MessageQueueIntegrationTest, GroupSendToMembersOnEveryMasterStoresAndWakesEach) {
  auto client = *redis::RedisClient::Create(options_);
  RedisInboxStore store(client.get(), InboxLimits());
  std::vector<DeviceKey> members;
  std::set<std::string> masters;
  for (uint32_t d = 1; members.size() < 24 || masters.size() < 3; ++d) {
    members.push_back({"member", d});
    absl::StatusOr<std::string> node = client->AddressForKey(channels::InboxKey("member", d));
    ASSERT_TRUE(node.ok()) << node.status();
    masters.insert(*node);
    if (GetParam() == Mode::kStandalone && members.size() == 24) break;
  }
  if (GetParam() == Mode::kCluster) {
    EXPECT_EQ(masters.size(), 3u);
  }
  for (const DeviceKey& m : members) probe_->Listen(m.user_id, m.device_id);
  auto shared = std::make_shared<SharedPayload>();
  shared->id = "alice:1:00ff";
  shared->bytes = "group ciphertext";
  shared->expires_at_ms =
      static_cast<uint64_t>(absl::ToUnixMillis(absl::Now() + absl::Hours(1)));
  auto send = [&] {
    std::vector<AppendRequest> batch;
    for (const DeviceKey& m : members) {
      AppendRequest r = OneToOne(m, "alice:1:00ff", "");
      r.shared = shared;
      batch.push_back(std::move(r));
    }
    return store.Append(batch);
  };
  auto results = send();
  ASSERT_EQ(results.size(), members.size());
  for (size_t i = 0; i < results.size(); ++i) {
    ASSERT_TRUE(results[i].ok()) << i << ": " << results[i].status();
    EXPECT_FALSE(results[i]->duplicate);
    EXPECT_EQ(results[i]->sequence, 1u);
  }
  // Every member got its wake-up with the payload inline, and reads it back.
  ASSERT_TRUE(WaitFor([&] { return probe_->events().size() >= members.size(); },
                      absl::Seconds(10)));
  for (const v1::DeviceChannelEvent& event : probe_->events()) {
    EXPECT_EQ(event.wakeup().envelope().ciphertext(), "group ciphertext");
  }
  for (size_t i = 0; i < members.size(); ++i) {
    absl::StatusOr<InboxPage> page = store.Read(members[i], "", 10);
    ASSERT_TRUE(page.ok()) << page.status();
    ASSERT_EQ(page->entries.size(), 1u);
    EXPECT_EQ(page->entries[0].server_id, results[i]->server_id);
    v1::Envelope envelope;
    ASSERT_TRUE(envelope.ParseFromString(page->entries[0].envelope));
    EXPECT_EQ(envelope.ciphertext(), "group ciphertext");
  }
  // A retry is a duplicate everywhere and leaves the payload's count at one per member.
  for (const auto& r : send()) {
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_TRUE(r->duplicate);
  }
  auto refs = probe_client_->Execute(redis::Command::Keyed({"HGET", "gp:{alice:1:00ff}", "r"}, 1));
  ASSERT_TRUE(refs.ok()) << refs.status();
  EXPECT_EQ(refs->str(), absl::StrCat(members.size()));
}

// The push coalescing of the enqueue script (docs/PUSH.md): a push is due only for a device that
// no gateway holds and that has a push subscription, once per interval (the pn: mark), never for
// a duplicate; deleting the mark (the gateway does on connect) makes the next one due again.
TEST_P(MessageQueueIntegrationTest, PushIsDueOncePerIntervalForOfflineSubscribedDevices) {
  probe_->Listen("bob", 1);
  auto set = [&](const std::string& key) {
    auto reply = probe_client_->Execute(redis::Command::Keyed({"SET", key, "sub"}, 1));
    ASSERT_TRUE(reply.ok() && !reply->is_error());
  };
  set(channels::PushSubscriptionKey("bob", 1));
  set(channels::PushSubscriptionKey("bob", 2));
  auto pttl = [&](const std::string& key) {
    auto reply = probe_client_->Execute(redis::Command::Keyed({"PTTL", key}, 1));
    EXPECT_TRUE(reply.ok());
    return reply.ok() ? reply->integer() : -3;
  };
  InboxLimits limits;
  limits.push_interval = absl::Seconds(60);
  RedisInboxStore store(probe_client_.get(), limits);
  const uint64_t expires = static_cast<uint64_t>(absl::ToUnixMillis(absl::Now() + absl::Hours(1)));
  int n = 0;
  auto append = [&](const std::string& user, uint32_t device, std::string dedupe = "") {
    if (dedupe.empty()) dedupe = absl::StrCat("d", ++n);
    AppendRequest request;
    request.device = DeviceKey{user, device};
    v1::Envelope envelope;
    envelope.set_ciphertext("ciphertext");
    request.envelope = envelope.SerializeAsString();
    request.dedupe_key = dedupe;
    request.expires_at_ms = expires;
    return request;
  };
  // One call for all three (on a cluster: one per slot), so each device's element is checked.
  std::vector<absl::StatusOr<AppendResult>> first =
      store.Append({append("bob", 1), append("bob", 2, "first"), append("carol", 1)});
  ASSERT_EQ(first.size(), 3u);
  for (const auto& r : first) ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_TRUE(first[0]->online);
  EXPECT_FALSE(first[0]->push_due);  // a gateway holds bob:1
  EXPECT_FALSE(first[1]->online);
  EXPECT_TRUE(first[1]->push_due);   // offline, subscribed
  EXPECT_FALSE(first[2]->push_due);  // offline, no subscription
  const std::string mark = channels::PushCoalesceKey("bob", 2);
  EXPECT_GT(pttl(mark), 0);
  EXPECT_LE(pttl(mark), 60'000);
  EXPECT_EQ(pttl(channels::PushCoalesceKey("carol", 1)), -2);  // no mark written
  EXPECT_EQ(pttl(channels::PushCoalesceKey("bob", 1)), -2);

  // Inside the interval: stored, not due; a retry (duplicate) is never due.
  auto again = store.Append({append("bob", 2)});
  ASSERT_TRUE(again[0].ok());
  EXPECT_FALSE(again[0]->push_due);
  auto retry = store.Append({append("bob", 2, "first")});
  ASSERT_TRUE(retry[0].ok());
  EXPECT_TRUE(retry[0]->duplicate);
  EXPECT_FALSE(retry[0]->push_due);

  // The device connected (the gateway deletes the mark): the next message pushes again.
  ASSERT_TRUE(probe_client_->Execute(redis::Command::Keyed({"DEL", mark}, 1)).ok());
  auto after_connect = store.Append({append("bob", 2)});
  ASSERT_TRUE(after_connect[0].ok());
  EXPECT_TRUE(after_connect[0]->push_due);

  // Without a notifier (interval zero): never due, no mark.
  ASSERT_TRUE(probe_client_->Execute(redis::Command::Keyed({"DEL", mark}, 1)).ok());
  RedisInboxStore no_push(probe_client_.get(), InboxLimits());
  auto plain = no_push.Append({append("bob", 2)});
  ASSERT_TRUE(plain[0].ok());
  EXPECT_FALSE(plain[0]->push_due);
  EXPECT_EQ(pttl(mark), -2);
}

INSTANTIATE_TEST_SUITE_P(Redis, MessageQueueIntegrationTest,
                         padlock::testing::AllRedisModes(), padlock::testing::RedisModeName);

}  // namespace
}  // namespace padlock::message_queue
