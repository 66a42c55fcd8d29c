// The device stream end to end: the four real binaries (two gateways) on real Redis — one
// redis-server and a 3-master Redis Cluster, the same suite on each — and a real PostgreSQL,
// driven through the public gateway by test clients with real keys and opaque test ciphertexts.
#include <gtest/gtest.h>

#include <csignal>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <tuple>
#include <vector>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/str_cat.h"
#include "common/statement/signed_statement.h"
#include "padlock/v1/message_queue.grpc.pb.h"
#include "services/common/channels/device_channel.h"
#include "tests/e2e/gateway/e2e_client.h"
#include "tests/harness/mode_stacks.h"
#include "tests/harness/stack.h"
#include "tests/unit/runtime/runtime_test_util.h"

namespace padlock::e2e {
namespace {

using testing::PadlockStack;
using testing::WaitFor;

// Entries in a device's inbox, asked of the message-queue directly (as a gateway).
uint64_t InboxDepth(PadlockStack& stack, const std::string& user, uint32_t device) {
  auto mq = pb::MessageQueue::NewStub(
      stack.InternalChannel(stack.message_queue_target(), "gateway", "message-queue"));
  pb::GetInboxInfoRequest request;
  request.mutable_device()->set_user_id(user);
  request.mutable_device()->set_device_id(device);
  pb::GetInboxInfoResponse response;
  grpc::ClientContext context;
  EXPECT_TRUE(mq->GetInboxInfo(&context, request, &response).ok());
  return response.depth();
}

class GatewayE2eTest : public ::testing::TestWithParam<bool> {
 protected:
  void SetUp() override {
    stack_ = testing::StackForMode(GetParam(), {.gateways = 2});
    ASSERT_NE(stack_, nullptr);
    for (int i = 0; i < stack_->gateway_count(); ++i) {
      if (stack_->gateway_pid(i) <= 0 || ::kill(stack_->gateway_pid(i), 0) != 0) {
        ASSERT_TRUE(stack_->RestartGateway(i).ok());
      }
      ops_.push_back(std::make_unique<AccountOps>(grpc::CreateChannel(
          stack_->gateway_target(i), stack_->gateway_credentials(i))));
    }
    prefix_ = testing::TestUserSuffix(GetParam());
  }
  void TearDown() override {
    if (HasFailure() && stack_ != nullptr) std::cerr << stack_->Logs().substr(0, 20000);
  }

  // A user name unique to this test (users never collide across tests on one stack).
  std::string User(const std::string& name) {
    return absl::StrCat(name, ".", prefix_);
  }
  Account MustRegister(const std::string& name) {
    auto account = ops_[0]->Register(User(name));
    EXPECT_TRUE(account.ok()) << account.status();
    return account.ok() ? *std::move(account) : Account{};
  }
  std::string MustLogin(const Account& account, uint32_t device, int gateway = 0) {
    auto token = ops_[gateway]->Login(account, device);
    EXPECT_TRUE(token.ok()) << token.status();
    return token.ok() ? *token : "";
  }
  std::unique_ptr<DeviceConn> Connect(const Account& account, uint32_t device, int gateway = 0,
                                      DeviceConn::Options options = {}) {
    auto conn = DeviceConn::Open(ops_[gateway]->stub(), MustLogin(account, device, gateway),
                                 options);
    EXPECT_TRUE(conn->WaitConnected().has_value()) << "no connected frame";
    return conn;
  }
  static std::vector<std::string> Payloads(const std::vector<pb::Envelope>& envelopes) {
    std::vector<std::string> out;
    for (const auto& e : envelopes) out.push_back(e.ciphertext());
    return out;
  }
  uint64_t InboxDepth(const Account& account, uint32_t device) {
    return e2e::InboxDepth(*stack_, account.user, device);
  }

  PadlockStack* stack_ = nullptr;
  std::vector<std::unique_ptr<AccountOps>> ops_;
  std::string prefix_;
};

// Two users with two devices each, the four devices spread over both gateways: every device
// receives every message addressed to it exactly once, in the order each sender sent.
TEST_P(GatewayE2eTest, TwoUsersTwoDevicesReceiveEveryMessageOnceInOrder) {
  Account alice = MustRegister("alice");
  Account bob = MustRegister("bob");
  ASSERT_TRUE(ops_[0]->Link(alice, 2).ok());
  ASSERT_TRUE(ops_[0]->Link(bob, 2).ok());
  auto a1 = Connect(alice, 1, 0);
  auto a2 = Connect(alice, 2, 1);
  auto b1 = Connect(bob, 1, 1);
  auto b2 = Connect(bob, 2, 0);
  for (auto* c : {a1.get(), a2.get(), b1.get(), b2.get()}) ASSERT_TRUE(c->WaitQueueEmpty());

  constexpr int kEach = 40;
  std::vector<uint64_t> a1_ids, b2_ids;
  for (int i = 0; i < kEach; ++i) {
    a1_ids.push_back(a1->Send(OneToOne(alice, 1, bob, absl::StrCat(prefix_, "a1-", i))));
    b2_ids.push_back(b2->Send(OneToOne(bob, 2, alice, absl::StrCat(prefix_, "b2-", i))));
  }
  for (uint64_t id : a1_ids) {
    auto result = a1->Result(id);
    ASSERT_TRUE(result.has_value());
    ASSERT_TRUE(result->has_accepted()) << result->DebugString();
    EXPECT_EQ(result->accepted().placements_size(), 3);  // bob:1, bob:2, alice:2
  }
  for (uint64_t id : b2_ids) {
    auto result = b2->Result(id);
    ASSERT_TRUE(result.has_value());
    ASSERT_TRUE(result->has_accepted()) << result->DebugString();
  }
  std::vector<std::string> from_a1, from_b2;
  for (int i = 0; i < kEach; ++i) {
    from_a1.push_back(absl::StrCat(prefix_, "a1-", i));
    from_b2.push_back(absl::StrCat(prefix_, "b2-", i));
  }
  // bob:2 gets alice:1's; alice:1 gets bob:2's; bob:1 and alice:2 get both (their own
  // account's copies included), each sender's messages in the order sent.
  ASSERT_TRUE(b2->WaitEnvelopes(kEach));
  ASSERT_TRUE(a1->WaitEnvelopes(kEach));
  ASSERT_TRUE(b1->WaitEnvelopes(2 * kEach));
  ASSERT_TRUE(a2->WaitEnvelopes(2 * kEach));
  EXPECT_EQ(Payloads(b2->Envelopes()), from_a1);
  EXPECT_EQ(Payloads(a1->Envelopes()), from_b2);
  for (auto [conn, user, device] : {std::tuple{a2.get(), alice.user, 2u},
                                    std::tuple{b1.get(), bob.user, 1u}}) {
    std::vector<std::string> got_a1, got_b2;
    for (const auto& e : conn->Envelopes()) {
      (e.sender().user_id() == alice.user ? got_a1 : got_b2).push_back(e.ciphertext());
      EXPECT_EQ(e.recipient().user_id(), user);
      EXPECT_EQ(e.recipient().device_id(), device);
    }
    EXPECT_EQ(got_a1, from_a1);
    EXPECT_EQ(got_b2, from_b2);
  }
  // Sequences ascend by one per inbox: no gaps, no duplicates; senders are the authenticated ones.
  for (auto* c : {a1.get(), a2.get(), b1.get(), b2.get()}) {
    uint64_t expected = 1;
    for (const auto& e : c->Envelopes()) EXPECT_EQ(e.sequence(), expected++);
    EXPECT_EQ(c->Envelopes().size(), expected - 1);
  }
  for (const auto& e : b2->Envelopes()) {
    EXPECT_EQ(e.sender().user_id(), alice.user);
    EXPECT_EQ(e.sender().device_id(), 1u);
  }
  // Everything was acknowledged: the inboxes drain to empty.
  EXPECT_TRUE(WaitFor([&] { return InboxDepth(bob, 1) == 0 && InboxDepth(alice, 2) == 0; },
                      absl::Seconds(10)));
}

TEST_P(GatewayE2eTest, OfflineDeviceGetsItsBacklogInOrderOnReconnect) {
  Account alice = MustRegister("alice");
  Account bob = MustRegister("bob");
  auto a1 = Connect(alice, 1);
  constexpr int kCount = 300;  // more than one ReadInbox page and more than max_unacked
  std::vector<std::string> sent;
  std::vector<uint64_t> ids;
  for (int i = 0; i < kCount; ++i) {
    sent.push_back(absl::StrCat(prefix_, "m", i));
    ids.push_back(a1->Send(OneToOne(alice, 1, bob, sent.back())));
  }
  for (uint64_t id : ids) {
    auto r = a1->Result(id);
    ASSERT_TRUE(r.has_value() && r->has_accepted());
    EXPECT_FALSE(r->accepted().placements(0).online());  // bob was offline
  }
  EXPECT_EQ(InboxDepth(bob, 1), static_cast<uint64_t>(kCount));
  auto b1 = Connect(bob, 1, 1);
  ASSERT_TRUE(b1->WaitEnvelopes(kCount));
  ASSERT_TRUE(b1->WaitQueueEmpty());
  EXPECT_EQ(Payloads(b1->Envelopes()), sent);
  // QueueEmpty comes after the whole backlog and names its last sequence.
  auto frames = b1->Frames();
  size_t delivered_before_empty = 0;
  for (const auto& f : frames) {
    if (f.has_queue_empty()) {
      EXPECT_EQ(f.queue_empty().last_sequence(), static_cast<uint64_t>(kCount));
      break;
    }
    if (f.has_deliver()) delivered_before_empty += f.deliver().envelopes_size();
  }
  EXPECT_EQ(delivered_before_empty, static_cast<size_t>(kCount));
  // A busy device gets batches: fewer Deliver frames than envelopes.
  size_t deliver_frames = 0;
  for (const auto& f : frames) deliver_frames += f.has_deliver() ? 1 : 0;
  EXPECT_LT(deliver_frames, static_cast<size_t>(kCount));
  EXPECT_TRUE(WaitFor([&] { return InboxDepth(bob, 1) == 0; }, absl::Seconds(10)));
}

// A wake-up lost on the way (the gateway's pub/sub connection killed while a message is
// enqueued) is recovered from the inbox when the subscription comes back: no gap.
TEST_P(GatewayE2eTest, DroppedWakeUpIsRecoveredFromTheInbox) {
  Account alice = MustRegister("alice");
  Account bob = MustRegister("bob");
  auto a1 = Connect(alice, 1);
  auto b1 = Connect(bob, 1, 0);
  ASSERT_TRUE(b1->WaitQueueEmpty());
  auto r = a1->Result(a1->Send(OneToOne(alice, 1, bob, prefix_ + "first")));
  ASSERT_TRUE(r && r->has_accepted());
  ASSERT_TRUE(b1->WaitEnvelopes(1));
  // Kill every pub/sub connection of the node that owns bob's channel, then enqueue at once: the
  // wake-up finds no subscriber (or one being re-established) and is dropped.
  const std::string channel = absl::StrCat("ch:{", bob.user, ":1}");
  auto killed = stack_->RedisCliForKey(channel, {"CLIENT", "KILL", "TYPE", "pubsub"});
  ASSERT_TRUE(killed.ok()) << killed.status();
  for (int i = 0; i < 5; ++i) {
    auto s = a1->Result(a1->Send(OneToOne(alice, 1, bob, absl::StrCat(prefix_, "lost", i))));
    ASSERT_TRUE(s && s->has_accepted());
  }
  ASSERT_TRUE(b1->WaitEnvelopes(6));
  std::vector<std::string> expected = {prefix_ + "first"};
  for (int i = 0; i < 5; ++i) expected.push_back(absl::StrCat(prefix_, "lost", i));
  EXPECT_EQ(Payloads(b1->Envelopes()), expected);
  EXPECT_FALSE(b1->ended());
  // And the stream still follows wake-ups afterwards.
  auto after = a1->Result(a1->Send(OneToOne(alice, 1, bob, prefix_ + "after")));
  ASSERT_TRUE(after && after->has_accepted());
  ASSERT_TRUE(b1->WaitEnvelopes(7));
}

TEST_P(GatewayE2eTest, MismatchedAndStaleDevicesAreReportedAndNothingIsStored) {
  Account alice = MustRegister("alice");
  Account bob = MustRegister("bob");
  ASSERT_TRUE(ops_[0]->Link(bob, 2).ok());
  auto a1 = Connect(alice, 1);
  // Missing bob:2 and an extra bob:7.
  pb::OutgoingMessage missing = OneToOne(alice, 1, bob, prefix_ + "x");
  missing.mutable_recipients()->RemoveLast();
  auto* extra = missing.add_recipients();
  *extra = missing.recipients(0);
  extra->mutable_device()->set_device_id(7);
  auto r = a1->Result(a1->Send(missing));
  ASSERT_TRUE(r.has_value());
  ASSERT_TRUE(r->has_mismatch()) << r->DebugString();
  ASSERT_EQ(r->mismatch().users_size(), 1);
  EXPECT_EQ(r->mismatch().users(0).user_id(), bob.user);
  EXPECT_EQ(std::vector<uint32_t>(r->mismatch().users(0).missing_device_ids().begin(),
                                  r->mismatch().users(0).missing_device_ids().end()),
            std::vector<uint32_t>{2});
  EXPECT_EQ(std::vector<uint32_t>(r->mismatch().users(0).extra_device_ids().begin(),
                                  r->mismatch().users(0).extra_device_ids().end()),
            std::vector<uint32_t>{7});
  // A wrong registration id: stale.
  pb::OutgoingMessage stale = OneToOne(alice, 1, bob, prefix_ + "y");
  stale.mutable_recipients(1)->set_registration_id(stale.recipients(1).registration_id() + 1);
  r = a1->Result(a1->Send(stale));
  ASSERT_TRUE(r.has_value());
  ASSERT_TRUE(r->has_mismatch()) << r->DebugString();
  EXPECT_EQ(r->mismatch().users(0).stale_device_ids_size(), 1);
  EXPECT_EQ(InboxDepth(bob, 1), 0u);
  EXPECT_EQ(InboxDepth(bob, 2), 0u);
}

// A link or an unlink applies to the very next send, with no wait: the message-queue reads the
// device-list summary that the key-directory deleted before its commit and rewrote after it.
// And a send to users whose summaries are in Redis asks the key-directory nothing.
TEST_P(GatewayE2eTest, ALinkOrUnlinkAppliesToTheVeryNextSend) {
  Account alice = MustRegister("alice");
  Account bob = MustRegister("bob");
  auto a1 = Connect(alice, 1);
  auto lookups = [&](const std::string& source) {
    return runtime::testing::ScrapeValue(stack_->message_queue_metrics_port(),
                                         "padlock_device_list_lookups_total",
                                         {{"source", source}});
  };
  auto r = a1->Result(a1->Send(OneToOne(alice, 1, bob, prefix_ + "a")));
  ASSERT_TRUE(r && r->has_accepted()) << (r ? r->DebugString() : "no result");

  // The common case: both summaries are in Redis now (written by Register or filled by the
  // first send's miss), so the next send is checked without the key-directory.
  const double misses = lookups("key_directory");
  const double hits = lookups("redis");
  r = a1->Result(a1->Send(OneToOne(alice, 1, bob, prefix_ + "b")));
  ASSERT_TRUE(r && r->has_accepted()) << (r ? r->DebugString() : "no result");
  EXPECT_EQ(lookups("key_directory"), misses);
  EXPECT_EQ(lookups("redis"), hits + 2);  // alice and bob

  // Link bob:2, then at once a send that still has bob's old list: refused, bob:2 missing.
  Account old_bob = bob;
  ASSERT_TRUE(ops_[0]->Link(bob, 2).ok());
  r = a1->Result(a1->Send(OneToOne(alice, 1, old_bob, prefix_ + "c")));
  ASSERT_TRUE(r.has_value());
  ASSERT_TRUE(r->has_mismatch()) << r->DebugString();
  EXPECT_EQ(std::vector<uint32_t>(r->mismatch().users(0).missing_device_ids().begin(),
                                  r->mismatch().users(0).missing_device_ids().end()),
            std::vector<uint32_t>{2});
  r = a1->Result(a1->Send(OneToOne(alice, 1, bob, prefix_ + "d")));
  ASSERT_TRUE(r && r->has_accepted()) << (r ? r->DebugString() : "no result");

  // Unlink bob:2, then at once a send that still names it: refused, bob:2 extra.
  Account linked_bob = bob;
  ASSERT_TRUE(ops_[0]->Unlink(bob, 2).ok());
  r = a1->Result(a1->Send(OneToOne(alice, 1, linked_bob, prefix_ + "e")));
  ASSERT_TRUE(r.has_value());
  ASSERT_TRUE(r->has_mismatch()) << r->DebugString();
  EXPECT_EQ(std::vector<uint32_t>(r->mismatch().users(0).extra_device_ids().begin(),
                                  r->mismatch().users(0).extra_device_ids().end()),
            std::vector<uint32_t>{2});
  EXPECT_EQ(InboxDepth(bob, 2), 0u);
  r = a1->Result(a1->Send(OneToOne(alice, 1, bob, prefix_ + "f")));
  ASSERT_TRUE(r && r->has_accepted()) << (r ? r->DebugString() : "no result");
}

// A device acks only what was delivered to it on its own stream: another device's server ids are
// refused with a StreamError and that inbox keeps its entries.
TEST_P(GatewayE2eTest, DeviceCannotAckAnotherDevicesInbox) {
  Account alice = MustRegister("alice");
  Account bob = MustRegister("bob");
  auto a1 = Connect(alice, 1);
  auto b1 = Connect(bob, 1, 0, {.auto_ack = false});
  ASSERT_TRUE(b1->WaitQueueEmpty());
  auto r = a1->Result(a1->Send(OneToOne(alice, 1, bob, prefix_ + "secret")));
  ASSERT_TRUE(r && r->has_accepted());
  ASSERT_TRUE(b1->WaitEnvelopes(1));
  const std::string bobs_id = b1->Envelopes()[0].server_id();
  pb::ClientFrame ack;
  ack.mutable_ack()->set_up_to_server_id(bobs_id);
  ASSERT_TRUE(a1->Write(ack));
  auto error = a1->WaitFrame([](const pb::ServerFrame& f) { return f.has_error(); });
  ASSERT_TRUE(error.has_value());
  EXPECT_EQ(error->error().code(), static_cast<int>(grpc::StatusCode::INVALID_ARGUMENT));
  EXPECT_FALSE(a1->ended());  // a bad frame never ends the stream
  EXPECT_EQ(InboxDepth(bob, 1), 1u);
  // Bob's own ack works.
  ASSERT_TRUE(b1->Write(ack));
  EXPECT_TRUE(WaitFor([&] { return InboxDepth(bob, 1) == 0; }, absl::Seconds(10)));
}

// Stream revision 2 (asked for with `padlock-stream-revision: 2`): every send outcome rides in
// `send_results` (never a `send_result` frame), and acks ride on other frames (`acks`) or come
// alone in a frame with nothing else — both are applied. A client that does not ask stays on
// revision 1.
TEST_P(GatewayE2eTest, StreamRevisionTwoBatchesOutcomesAndTakesRidingAcks) {
  Account alice = MustRegister("alice");
  Account bob = MustRegister("bob");
  Account carol = MustRegister("carol");
  auto a1 = Connect(alice, 1, 0, {.revision = 2});
  auto b1 = Connect(bob, 1, 1, {.auto_ack = false, .revision = 2});
  auto c1 = Connect(carol, 1, 0, {.revision = 0});
  ASSERT_TRUE(b1->WaitQueueEmpty());
  auto connected = [](DeviceConn& conn) {
    auto frame = conn.WaitFrame([](const pb::ServerFrame& f) { return f.has_connected(); });
    return frame ? frame->connected().stream_revision() : 0u;
  };
  EXPECT_EQ(connected(*a1), 2u);
  EXPECT_EQ(connected(*b1), 2u);
  EXPECT_EQ(connected(*c1), 1u);  // no metadata: revision 1

  constexpr int kCount = 20;
  std::vector<uint64_t> ids;
  for (int i = 0; i < kCount; ++i) {
    ids.push_back(a1->Send(OneToOne(alice, 1, bob, absl::StrCat(prefix_, "m", i))));
  }
  for (uint64_t id : ids) {
    auto r = a1->Result(id);
    ASSERT_TRUE(r.has_value() && r->has_accepted()) << id;
  }
  int outcome_frames = 0, outcomes = 0;
  for (const pb::ServerFrame& f : a1->Frames()) {
    EXPECT_FALSE(f.has_send_result()) << "revision 2 never sends send_result frames";
    outcome_frames += f.send_results_size() > 0 ? 1 : 0;
    outcomes += f.send_results_size();
  }
  EXPECT_EQ(outcomes, kCount);
  EXPECT_GE(outcome_frames, 1);
  EXPECT_LE(outcome_frames, kCount);

  // Bob acks everything on his next send (one frame: ack + send), and the gateway forwards the
  // ack inside the Enqueue call of the send (folded), not in an Ack call of its own.
  ASSERT_TRUE(b1->WaitEnvelopes(kCount));
  EXPECT_EQ(InboxDepth(bob, 1), static_cast<uint64_t>(kCount));
  auto folded = [&] {
    return runtime::testing::ScrapeValue(stack_->gateway_metrics_port(1),
                                         "padlock_gateway_acks_folded_total", {});
  };
  const double folded_before = folded();
  pb::ClientFrame frame;
  frame.mutable_acks()->set_up_to_server_id(b1->Envelopes().back().server_id());
  frame.mutable_send()->set_request_id(7);
  *frame.mutable_send()->mutable_message() = OneToOne(bob, 1, alice, prefix_ + "reply");
  ASSERT_TRUE(b1->Write(frame));
  auto reply = b1->Result(7);
  ASSERT_TRUE(reply.has_value() && reply->has_accepted());
  EXPECT_TRUE(WaitFor([&] { return InboxDepth(bob, 1) == 0; }, absl::Seconds(10)));
  EXPECT_EQ(folded(), folded_before + 1);

  // A lone riding ack (no frame kind set) is applied too, and is no error.
  auto r = a1->Result(a1->Send(OneToOne(alice, 1, bob, prefix_ + "last")));
  ASSERT_TRUE(r && r->has_accepted());
  ASSERT_TRUE(b1->WaitEnvelopes(kCount + 1));
  pb::ClientFrame lone;
  lone.mutable_acks()->set_up_to_server_id(b1->Envelopes().back().server_id());
  ASSERT_TRUE(b1->Write(lone));
  EXPECT_TRUE(WaitFor([&] { return InboxDepth(bob, 1) == 0; }, absl::Seconds(10)));
  for (const pb::ServerFrame& f : b1->Frames()) EXPECT_FALSE(f.has_error()) << f.DebugString();

  // Revision 1: outcomes as send_result frames, as before.
  const uint64_t id = c1->Send(OneToOne(carol, 1, alice, prefix_ + "from carol"));
  auto carols = c1->WaitFrame([&](const pb::ServerFrame& f) {
    return f.has_send_result() && f.send_result().request_id() == id;
  });
  ASSERT_TRUE(carols.has_value());
  EXPECT_TRUE(carols->send_result().has_accepted());
  EXPECT_EQ(carols->send_results_size(), 0);
}

TEST_P(GatewayE2eTest, UnlinkedDeviceStreamClosesAndItsTokenStopsWorking) {
  Account alice = MustRegister("alice");
  ASSERT_TRUE(ops_[0]->Link(alice, 2).ok());
  const std::string token2 = MustLogin(alice, 2, 1);
  auto a2 = DeviceConn::Open(ops_[1]->stub(), token2);
  ASSERT_TRUE(a2->WaitConnected());
  ASSERT_TRUE(ops_[0]->Unlink(alice, 2).ok());
  auto closing = a2->WaitFrame([](const pb::ServerFrame& f) { return f.has_closing(); });
  ASSERT_TRUE(closing.has_value());
  EXPECT_EQ(closing->closing().reason(), pb::Closing::REASON_REVOKED);
  auto ended = a2->WaitEnded();
  ASSERT_TRUE(ended.has_value());
  // The same token is refused everywhere from now on.
  for (int g = 0; g < 2; ++g) {
    pb::GatewayClaimBundlesRequest claim;
    claim.set_user_id(alice.user);
    pb::ClaimBundlesResponse bundles;
    grpc::ClientContext context;
    Authorize(context, token2);
    EXPECT_EQ(ops_[g]->stub().ClaimBundles(&context, claim, &bundles).error_code(),
              grpc::StatusCode::UNAUTHENTICATED);
    auto again = DeviceConn::Open(ops_[g]->stub(), token2);
    auto status = again->WaitEnded();
    ASSERT_TRUE(status.has_value());
    EXPECT_EQ(status->error_code(), grpc::StatusCode::UNAUTHENTICATED);
  }
}

TEST_P(GatewayE2eTest, DisplacementClosesOnlyTheOlderConnection) {
  Account bob = MustRegister("bob");
  auto first = Connect(bob, 1, 0);
  auto second = Connect(bob, 1, 1);  // the other gateway
  auto displaced = first->WaitFrame([](const pb::ServerFrame& f) { return f.has_displaced(); });
  ASSERT_TRUE(displaced.has_value());
  const uint64_t first_epoch = first->WaitConnected()->epoch();
  const uint64_t second_epoch = second->WaitConnected()->epoch();
  EXPECT_GT(second_epoch, first_epoch);
  EXPECT_EQ(displaced->displaced().by_epoch(), second_epoch);
  auto ended = first->WaitEnded();
  ASSERT_TRUE(ended.has_value());
  EXPECT_TRUE(ended->ok()) << ended->error_message();
  EXPECT_FALSE(second->ended());

  // A race: several connections at once, on both gateways: exactly the highest epoch survives.
  std::vector<std::unique_ptr<DeviceConn>> racers;
  std::vector<std::string> tokens;
  for (int i = 0; i < 4; ++i) tokens.push_back(MustLogin(bob, 1, i % 2));
  for (int i = 0; i < 4; ++i) racers.push_back(DeviceConn::Open(ops_[i % 2]->stub(), tokens[i]));
  ASSERT_TRUE(second->WaitEnded().has_value());
  uint64_t highest = 0;
  for (auto& r : racers) {
    auto c = r->WaitConnected();
    if (c) highest = std::max(highest, c->epoch());
  }
  ASSERT_GT(highest, second_epoch);
  ASSERT_TRUE(WaitFor(
      [&] {
        int open = 0;
        for (auto& r : racers) open += r->ended() ? 0 : 1;
        return open == 1;
      },
      absl::Seconds(20)));
  for (auto& r : racers) {
    if (!r->ended()) {
      EXPECT_EQ(r->WaitConnected()->epoch(), highest);
    }
  }
}

// Alice keeps sending to bob while bob's gateway is SIGKILLed: bob reconnects to the other
// gateway and receives every message whose send was accepted (duplicates of unacked envelopes
// are possible, by design, and removed by message id as clients do).
TEST_P(GatewayE2eTest, GatewayKilledMidStreamLosesNothingAccepted) {
  Account alice = MustRegister("alice");
  Account bob = MustRegister("bob");
  auto a1 = Connect(alice, 1, 1);
  auto b1 = Connect(bob, 1, 0);
  ASSERT_TRUE(b1->WaitQueueEmpty());
  constexpr int kCount = 200;
  std::vector<uint64_t> ids;
  for (int i = 0; i < kCount; ++i) {
    ids.push_back(a1->Send(OneToOne(alice, 1, bob, absl::StrCat(prefix_, "k", i))));
    if (i == kCount / 2) stack_->KillGateway(0);
  }
  std::set<std::string> accepted;
  for (int i = 0; i < kCount; ++i) {
    auto r = a1->Result(ids[i]);
    ASSERT_TRUE(r.has_value());
    ASSERT_TRUE(r->has_accepted()) << r->DebugString();
    accepted.insert(absl::StrCat(prefix_, "k", i));
  }
  ASSERT_TRUE(b1->WaitEnded().has_value());
  std::set<std::string> received;
  for (const auto& e : b1->Envelopes()) received.insert(e.ciphertext());
  auto again = Connect(bob, 1, 1);
  ASSERT_TRUE(again->WaitQueueEmpty(absl::Seconds(30)));
  for (const auto& e : again->Envelopes()) received.insert(e.ciphertext());
  EXPECT_EQ(received, accepted);
  ASSERT_TRUE(stack_->RestartGateway(0).ok());
}

// SIGTERM: the gateway tells its streams to reconnect elsewhere (Closing{DRAIN}), answers every
// send it took and flushes acks before exiting; nothing accepted is lost.
TEST_P(GatewayE2eTest, SigtermDrainLosesNothing) {
  Account alice = MustRegister("alice");
  Account bob = MustRegister("bob");
  auto a1 = Connect(alice, 1, 0);
  auto b1 = Connect(bob, 1, 0);
  ASSERT_TRUE(b1->WaitQueueEmpty());
  constexpr int kCount = 100;
  std::vector<uint64_t> ids;
  for (int i = 0; i < kCount; ++i) {
    ids.push_back(a1->Send(OneToOne(alice, 1, bob, absl::StrCat(prefix_, "d", i))));
  }
  auto stopped = stack_->StopGateway(0, SIGTERM);
  ASSERT_TRUE(stopped.ok()) << stopped.status();
  EXPECT_TRUE(WIFEXITED(*stopped) && WEXITSTATUS(*stopped) == 0);
  for (auto* c : {a1.get(), b1.get()}) {
    auto closing = c->WaitFrame([](const pb::ServerFrame& f) { return f.has_closing(); });
    ASSERT_TRUE(closing.has_value());
    EXPECT_EQ(closing->closing().reason(), pb::Closing::REASON_DRAIN);
  }
  // Every send taken before the drain was answered; resend the unanswered ones elsewhere (same
  // message id), as a client does.
  auto a1b = Connect(alice, 1, 1);
  std::set<std::string> expected;
  for (int i = 0; i < kCount; ++i) {
    const std::string payload = absl::StrCat(prefix_, "d", i);
    expected.insert(payload);
    auto r = a1->Result(ids[i], absl::ZeroDuration());
    if (!r.has_value() || !r->has_accepted()) {
      auto retry = a1b->Result(a1b->Send(OneToOne(alice, 1, bob, payload)));
      ASSERT_TRUE(retry && retry->has_accepted());
    }
  }
  std::set<std::string> received;
  for (const auto& e : b1->Envelopes()) received.insert(e.ciphertext());
  auto b1b = Connect(bob, 1, 1);
  ASSERT_TRUE(WaitFor(
      [&] {
        std::set<std::string> all = received;
        for (const auto& e : b1b->Envelopes()) all.insert(e.ciphertext());
        return all == expected;
      },
      absl::Seconds(30)));
  ASSERT_TRUE(stack_->RestartGateway(0).ok());
}

TEST_P(GatewayE2eTest, PresenceEventsReachWatchers) {
  Account alice = MustRegister("alice");
  Account bob = MustRegister("bob");
  auto b1 = Connect(bob, 1, 1);
  pb::ClientFrame visible;
  visible.mutable_set_presence_visibility()->set_visibility(pb::PRESENCE_VISIBILITY_EVERYONE);
  ASSERT_TRUE(b1->Write(visible));
  auto a1 = Connect(alice, 1, 0);
  pb::ClientFrame watch;
  watch.mutable_subscribe_presence()->add_user_ids(bob.user);
  ASSERT_TRUE(a1->Write(watch));
  auto online = a1->WaitFrame([&](const pb::ServerFrame& f) {
    return f.has_presence_event() && f.presence_event().status().user_id() == bob.user &&
           f.presence_event().status().online();
  });
  ASSERT_TRUE(online.has_value());
  b1->Cancel();
  auto offline = a1->WaitFrame([&](const pb::ServerFrame& f) {
    return f.has_presence_event() && f.presence_event().status().user_id() == bob.user &&
           !f.presence_event().status().online();
  });
  ASSERT_TRUE(offline.has_value());
  EXPECT_GT(offline->presence_event().status().last_seen_ms(), 0u);
}

TEST_P(GatewayE2eTest, OnlineOnlyReachesConnectedDevicesAndIsNeverStored) {
  Account alice = MustRegister("alice");
  Account bob = MustRegister("bob");
  auto a1 = Connect(alice, 1);
  auto b1 = Connect(bob, 1, 1);
  ASSERT_TRUE(b1->WaitQueueEmpty());
  pb::OutgoingMessage typing = OneToOne(alice, 1, bob, prefix_ + "typing");
  typing.set_online_only(true);
  auto r = a1->Result(a1->Send(typing));
  ASSERT_TRUE(r && r->has_accepted());
  ASSERT_TRUE(b1->WaitEnvelopes(1));
  EXPECT_TRUE(b1->Envelopes()[0].online_only());
  EXPECT_EQ(InboxDepth(bob, 1), 0u);
}

// Login through the real binaries: only a fresh signature by the device's own key over the login
// statement works; forged, replayed and cross-purpose signatures are UNAUTHENTICATED alike.
TEST_P(GatewayE2eTest, ForgedReplayedOrCrossPurposeLoginSignaturesFail) {
  Account alice = MustRegister("alice");
  Account mallory = MustRegister("mallory");
  AccountOps& ops = *ops_[1];
  auto login_statement = [&](const pb::GetChallengeResponse& c) {
    return statement::EncodeLogin(alice.user, 1, c.challenge(), c.audience());
  };
  auto expect_refused = [](const grpc::Status& status) {
    EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAUTHENTICATED) << status.error_message();
    EXPECT_EQ(status.error_message(), "login failed");
  };
  pb::LoginResponse response;
  // Forged: signed by another account's key.
  auto c1 = ops.Challenge(alice.user, 1);
  ASSERT_TRUE(c1.ok());
  expect_refused(ops.LoginWith(alice.user, 1, c1->challenge(),
                               *ops.Sign(mallory.devices.at(1), login_statement(*c1)), &response));
  // Cross-purpose: alice's own key, but over her device-list statement instead of the login.
  auto c2 = ops.Challenge(alice.user, 1);
  ASSERT_TRUE(c2.ok());
  auto list_bytes = statement::EncodeDeviceList(alice.user, 1, {alice.devices.at(1).Entry()});
  ASSERT_TRUE(list_bytes.ok());
  expect_refused(ops.LoginWith(alice.user, 1, c2->challenge(),
                               *ops.Sign(alice.devices.at(1), *list_bytes), &response));
  // Replayed: a valid signature works once; the same challenge and signature again fail.
  auto c3 = ops.Challenge(alice.user, 1);
  ASSERT_TRUE(c3.ok());
  const std::string good = *ops.Sign(alice.devices.at(1), login_statement(*c3));
  EXPECT_TRUE(ops.LoginWith(alice.user, 1, c3->challenge(), good, &response).ok());
  expect_refused(ops.LoginWith(alice.user, 1, c3->challenge(), good, &response));
  // ... also on the other gateway (challenges live in the shared Redis).
  expect_refused(ops_[0]->LoginWith(alice.user, 1, c3->challenge(), good, &response));
}

// More out-of-order acks than one internal call may carry (the message-queue's limit is 10 000
// individual ids per request) ride on a send: the gateway folds what fits into the send's Enqueue
// and sends the rest with Ack, so the send is accepted and every entry is removed — an Enqueue
// over the limit would fail as a whole, refusing the sends batched with it.
TEST(GatewayAckBudgetE2eTest, MoreAcksThanOneCallTakesRideOnASendWithoutFailingIt) {
  constexpr int kCount = 10'050;
  auto stack = PadlockStack::Start({.gateway_env = {{"PADLOCK_MAX_UNACKED", "20000"}}});
  ASSERT_TRUE(stack.ok()) << stack.status();
  AccountOps ops(grpc::CreateChannel((*stack)->gateway_target(), (*stack)->gateway_credentials()));
  auto alice = ops.Register("alice.ackbudget");
  auto bob = ops.Register("bob.ackbudget");
  ASSERT_TRUE(alice.ok() && bob.ok());
  auto a1 = DeviceConn::Open(ops.stub(), alice->primary_token);
  auto b1 = DeviceConn::Open(ops.stub(), bob->primary_token, {.auto_ack = false, .revision = 2});
  ASSERT_TRUE(a1->WaitConnected().has_value());
  ASSERT_TRUE(b1->WaitQueueEmpty());
  std::vector<uint64_t> ids;
  for (int i = 0; i < kCount; ++i) {
    ids.push_back(a1->Send(OneToOne(*alice, 1, *bob, absl::StrCat("budget-", i))));
  }
  for (uint64_t id : ids) {
    auto r = a1->Result(id, absl::Seconds(60));
    ASSERT_TRUE(r.has_value() && r->has_accepted()) << id;
  }
  ASSERT_TRUE(b1->WaitEnvelopes(kCount, absl::Seconds(60)));
  auto depth = [&] { return InboxDepth(**stack, bob->user, 1); };
  ASSERT_EQ(depth(), static_cast<uint64_t>(kCount));
  pb::ClientFrame frame;  // every envelope acked one by one, newest first, and a reply
  const std::vector<pb::Envelope> got = b1->Envelopes();
  for (auto it = got.rbegin(); it != got.rend(); ++it) {
    frame.mutable_acks()->add_server_ids(it->server_id());
  }
  frame.mutable_send()->set_request_id(1);
  *frame.mutable_send()->mutable_message() = OneToOne(*bob, 1, *alice, "budget-reply");
  ASSERT_TRUE(b1->Write(frame));
  auto reply = b1->Result(1, absl::Seconds(30));
  ASSERT_TRUE(reply.has_value());
  EXPECT_TRUE(reply->has_accepted()) << reply->DebugString();
  EXPECT_TRUE(WaitFor([&] { return depth() == 0; }, absl::Seconds(30))) << depth();
  EXPECT_EQ(runtime::testing::ScrapeValue((*stack)->gateway_metrics_port(),
                                          "padlock_gateway_acks_folded_total", {}),
            1);
  for (const pb::ServerFrame& f : b1->Frames()) EXPECT_FALSE(f.has_error()) << f.DebugString();
}

// A lone ack (from a device that only reads) waits in the gateway's ack batching for up to
// PADLOCK_ACK_LINGER, and the next Enqueue call — any device's send — carries it. With a linger
// of a minute, riding on another device's send is the only way the entry goes within the test.
TEST(GatewayAckLingerE2eTest, ALoneAckRidesOnTheNextSendOfAnotherDevice) {
  auto stack = PadlockStack::Start({.gateway_env = {{"PADLOCK_ACK_LINGER", "60s"}}});
  ASSERT_TRUE(stack.ok()) << stack.status();
  AccountOps ops(grpc::CreateChannel((*stack)->gateway_target(), (*stack)->gateway_credentials()));
  auto alice = ops.Register("alice.linger");
  auto bob = ops.Register("bob.linger");
  auto carol = ops.Register("carol.linger");
  auto dave = ops.Register("dave.linger");  // never connects: nothing of his is acked
  ASSERT_TRUE(alice.ok() && bob.ok() && carol.ok() && dave.ok());
  auto a1 = DeviceConn::Open(ops.stub(), alice->primary_token);
  auto b1 = DeviceConn::Open(ops.stub(), bob->primary_token, {.auto_ack = false, .revision = 2});
  auto c1 = DeviceConn::Open(ops.stub(), carol->primary_token);
  ASSERT_TRUE(a1->WaitConnected().has_value() && c1->WaitConnected().has_value());
  ASSERT_TRUE(b1->WaitQueueEmpty());
  auto bobs_depth = [&] { return InboxDepth(**stack, bob->user, 1); };
  auto folded = [&] {
    return runtime::testing::ScrapeValue((*stack)->gateway_metrics_port(),
                                         "padlock_gateway_acks_folded_total", {});
  };
  auto r = a1->Result(a1->Send(OneToOne(*alice, 1, *bob, "linger-1")));
  ASSERT_TRUE(r.has_value() && r->has_accepted());
  ASSERT_TRUE(b1->WaitEnvelopes(1));
  ASSERT_EQ(bobs_depth(), 1u);
  const double folded_before = folded();

  pb::ClientFrame lone;  // an ack and nothing else
  lone.mutable_acks()->set_up_to_server_id(b1->Envelopes()[0].server_id());
  ASSERT_TRUE(b1->Write(lone));
  // Carol writes to dave until one of her sends has carried bob's ack (the gateway reads the two
  // streams on its own schedule, so the first send may go before the ack has arrived).
  bool gone = false;
  for (int i = 0; i < 20 && !gone; ++i) {
    auto sent = c1->Result(c1->Send(OneToOne(*carol, 1, *dave, absl::StrCat("carry-", i))));
    ASSERT_TRUE(sent.has_value() && sent->has_accepted());
    gone = WaitFor([&] { return bobs_depth() == 0; }, absl::Milliseconds(500));
  }
  EXPECT_TRUE(gone) << "bob's ack was not carried by carol's sends";
  EXPECT_EQ(folded(), folded_before + 1);
  for (const pb::ServerFrame& f : b1->Frames()) EXPECT_FALSE(f.has_error()) << f.DebugString();
}

// A frozen presence service (SIGSTOP: heartbeats hang until their 40 s deadline) does not delay
// token expiry: housekeeping never waits for a heartbeat's answer, so the stream gets
// closing{TOKEN_EXPIRED} within a second or two of its token's expiry, not after the deadline.
TEST(GatewayPresenceDownE2eTest, AFrozenPresenceServiceDoesNotDelayTokenExpiry) {
  auto stack = PadlockStack::Start({.gateway_env = {{"PADLOCK_TOKEN_TTL", "10s"},
                                                    {"PADLOCK_INTERNAL_DEADLINE", "40s"},
                                                    {"PADLOCK_PRESENCE_HEARTBEAT", "200ms"}}});
  ASSERT_TRUE(stack.ok()) << stack.status();
  AccountOps ops(grpc::CreateChannel((*stack)->gateway_target(), (*stack)->gateway_credentials()));
  auto alice = ops.Register("alice.frozen", /*login=*/false);
  ASSERT_TRUE(alice.ok()) << alice.status();
  auto token = ops.Login(*alice, 1);
  ASSERT_TRUE(token.ok()) << token.status();
  const absl::Time expires = absl::Now() + absl::Seconds(10);  // at the latest
  auto a1 = DeviceConn::Open(ops.stub(), *token);
  ASSERT_TRUE(a1->WaitConnected().has_value());
  const pid_t presence = (*stack)->service_pid("presence");
  ASSERT_GT(presence, 0);
  ASSERT_EQ(::kill(presence, SIGSTOP), 0);
  absl::Cleanup thaw = [presence] { ::kill(presence, SIGCONT); };
  // Expected within ~1 s of expiry (the once-a-second tick); a heartbeat blocking housekeeping
  // would hold it until the 40 s deadline. 8 s of margin either way.
  auto closing = a1->WaitFrame([](const pb::ServerFrame& f) { return f.has_closing(); },
                               expires + absl::Seconds(8) - absl::Now());
  ASSERT_TRUE(closing.has_value()) << "no closing frame within 8 s of the token's expiry";
  EXPECT_EQ(closing->closing().reason(), pb::Closing::REASON_TOKEN_EXPIRED);
}

// Nor read retries: with presence frozen (every heartbeat hangs for its 40 s deadline) and the
// message-queue gone, a read the stream has to make (a wake-up that skips sequences) fails and is
// retried every 500 ms by housekeeping. A housekeeping that waited for heartbeats would make one
// attempt in those 40 s.
TEST(GatewayPresenceDownE2eTest, AFrozenPresenceServiceDoesNotDelayReadRetries) {
  auto stack = PadlockStack::Start({.gateway_env = {{"PADLOCK_INTERNAL_DEADLINE", "40s"},
                                                    {"PADLOCK_PRESENCE_HEARTBEAT", "200ms"}}});
  ASSERT_TRUE(stack.ok()) << stack.status();
  AccountOps ops(grpc::CreateChannel((*stack)->gateway_target(), (*stack)->gateway_credentials()));
  auto bob = ops.Register("bob.frozenread");
  ASSERT_TRUE(bob.ok()) << bob.status();
  auto b1 = DeviceConn::Open(ops.stub(), bob->primary_token);
  ASSERT_TRUE(b1->WaitQueueEmpty());
  const pid_t presence = (*stack)->service_pid("presence");
  ASSERT_GT(presence, 0);
  ASSERT_EQ(::kill(presence, SIGSTOP), 0);
  absl::Cleanup thaw = [presence] { ::kill(presence, SIGCONT); };
  (*stack)->KillService("message-queue");  // reads now fail at once (connection refused)
  auto failures = [&] {
    return runtime::testing::ScrapeValue((*stack)->gateway_metrics_port(),
                                         "padlock_gateway_inbox_read_failures_total", {});
  };
  const double before = failures();
  pb::DeviceChannelEvent jump;  // sequence 1 000 while the stream is at 0: it must read
  jump.mutable_wakeup()->set_sequence(1000);
  ASSERT_TRUE((*stack)
                  ->redis_server()
                  ->Cli({"SPUBLISH", channels::DeviceChannel(bob->user, 1),
                         jump.SerializeAsString()})
                  .ok());
  EXPECT_TRUE(WaitFor([&] { return failures() >= before + 3; }, absl::Seconds(15)))
      << "read attempts failed: " << failures() - before;
  EXPECT_FALSE(b1->ended());
}

INSTANTIATE_TEST_SUITE_P(RedisModes, GatewayE2eTest, ::testing::Values(false, true),
                         [](const auto& info) { return info.param ? "Cluster" : "Standalone"; });

}  // namespace
}  // namespace padlock::e2e
