// Dispatcher logic with fakes: device directory, in-memory inbox store, manual clock.
#include "services/message_queue/dispatcher.h"

#include <map>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include <prometheus/registry.h>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/fakes/manual_clock.h"
#include "tests/fakes/message_queue_fakes.h"

namespace padlock::message_queue {
namespace {

namespace v1 = padlock::v1;
using ::testing::ElementsAre;

constexpr int64_t kStartMs = 1'700'000'000'000;
const std::string kMessageId(16, 'm');

v1::DeviceAddress Address(const std::string& user, uint32_t device) {
  v1::DeviceAddress a;
  a.set_user_id(user);
  a.set_device_id(device);
  return a;
}

class DispatcherTest : public ::testing::Test {
 protected:
  DispatcherTest() : clock_(kStartMs), store_(Limits(), &clock_) {
    options_.retention = absl::Hours(1);
    directory_.Set("alice", 3, {{1, 101}, {2, 102}});
    directory_.Set("bob", 7, {{1, 201}, {3, 203}});
    dispatcher_ = std::make_unique<Dispatcher>(options_, &directory_, &store_, &clock_, nullptr);
  }
  static InboxLimits Limits() {
    InboxLimits limits;
    limits.retention = absl::Hours(1);
    limits.max_entries = 5;
    limits.max_bytes = 1 << 20;
    limits.dedupe_window = absl::Seconds(60);
    return limits;
  }

  // alice:1 → bob:1, bob:3 and alice:2, correctly addressed.
  static v1::Send GoodSend(const std::string& id = kMessageId, const std::string& text = "ct") {
    v1::Send send;
    *send.mutable_sender() = Address("alice", 1);
    v1::OutgoingMessage* m = send.mutable_message();
    m->set_message_id(id);
    AddRecipient(m, "bob", 1, 201, text);
    AddRecipient(m, "bob", 3, 203, text);
    AddRecipient(m, "alice", 2, 102, text);
    return send;
  }
  static void AddRecipient(v1::OutgoingMessage* m, const std::string& user, uint32_t device,
                           uint32_t registration, const std::string& text = "ct") {
    v1::Recipient* r = m->add_recipients();
    *r->mutable_device() = Address(user, device);
    r->set_registration_id(registration);
    r->set_type(v1::ENVELOPE_TYPE_MESSAGE);
    r->set_ciphertext(text);
  }
  v1::SendOutcome EnqueueOne(const v1::Send& send) {
    v1::EnqueueRequest request;
    *request.add_sends() = send;
    absl::StatusOr<v1::EnqueueResponse> response = dispatcher_->Enqueue(request);
    EXPECT_TRUE(response.ok()) << response.status();
    if (!response.ok() || response->outcomes_size() != 1) return {};
    return response->outcomes(0);
  }
  v1::ReadInboxResponse Read(const std::string& user, uint32_t device,
                             const std::string& after = "", uint64_t after_sequence = 0,
                             uint32_t max = 0, uint32_t max_bytes = 0) {
    v1::ReadInboxRequest request;
    *request.mutable_device() = Address(user, device);
    request.set_after_server_id(after);
    request.set_after_sequence(after_sequence);
    request.set_max_envelopes(max);
    request.set_max_bytes(max_bytes);
    absl::StatusOr<v1::ReadInboxResponse> response = dispatcher_->ReadInbox(request);
    EXPECT_TRUE(response.ok()) << response.status();
    return response.ok() ? *response : v1::ReadInboxResponse();
  }
  uint64_t Depth(const std::string& user, uint32_t device) {
    absl::StatusOr<InboxInfo> info = dispatcher_->Info(Address(user, device));
    EXPECT_TRUE(info.ok()) << info.status();
    return info.ok() ? info->depth : 0;
  }
  std::vector<uint64_t> Sequences(const v1::ReadInboxResponse& r) {
    std::vector<uint64_t> out;
    for (const v1::Envelope& e : r.envelopes()) out.push_back(e.sequence());
    return out;
  }

  DispatchOptions options_;
  padlock::testing::ManualClock clock_;
  FakeDeviceDirectory directory_;
  InMemoryInboxStore store_;
  std::unique_ptr<Dispatcher> dispatcher_;
};

TEST_F(DispatcherTest, AcceptsCorrectlyAddressedSendWithOnePlacementPerDevice) {
  store_.SetOnline(DeviceKey{"bob", 3});
  v1::SendOutcome outcome = EnqueueOne(GoodSend());
  ASSERT_TRUE(outcome.has_accepted()) << outcome.DebugString();
  const v1::Accepted& a = outcome.accepted();
  EXPECT_EQ(a.server_timestamp_ms(), static_cast<uint64_t>(kStartMs));
  ASSERT_EQ(a.placements_size(), 3);
  EXPECT_EQ(a.placements(0).device().user_id(), "bob");
  EXPECT_EQ(a.placements(0).device().device_id(), 1u);
  EXPECT_EQ(a.placements(0).sequence(), 1u);
  EXPECT_FALSE(a.placements(0).online());
  EXPECT_TRUE(a.placements(1).online());
  EXPECT_EQ(a.placements(2).device().user_id(), "alice");
  EXPECT_EQ(Depth("bob", 1), 1u);
  EXPECT_EQ(Depth("bob", 3), 1u);
  EXPECT_EQ(Depth("alice", 2), 1u);
}

TEST_F(DispatcherTest, StoredEnvelopeCarriesSenderRecipientAndServerFields) {
  ASSERT_TRUE(EnqueueOne(GoodSend(kMessageId, "secret")).has_accepted());
  v1::ReadInboxResponse r = Read("bob", 3);
  ASSERT_EQ(r.envelopes_size(), 1);
  const v1::Envelope& e = r.envelopes(0);
  EXPECT_EQ(e.message_id(), kMessageId);
  EXPECT_EQ(e.sender().user_id(), "alice");
  EXPECT_EQ(e.sender().device_id(), 1u);
  EXPECT_EQ(e.recipient().device_id(), 3u);
  EXPECT_EQ(e.recipient_registration_id(), 203u);
  EXPECT_EQ(e.type(), v1::ENVELOPE_TYPE_MESSAGE);
  EXPECT_EQ(e.ciphertext(), "secret");
  EXPECT_EQ(e.sequence(), 1u);
  EXPECT_EQ(e.server_id(), absl::StrCat(kStartMs, "-0"));
  EXPECT_EQ(e.server_timestamp_ms(), static_cast<uint64_t>(kStartMs));
  EXPECT_EQ(e.expires_at_ms(), static_cast<uint64_t>(kStartMs + 3'600'000));
}

TEST_F(DispatcherTest, MissingExtraAndStaleDevicesAreReportedPerUserAndNothingStored) {
  v1::Send send;
  *send.mutable_sender() = Address("alice", 1);
  send.mutable_message()->set_message_id(kMessageId);
  AddRecipient(send.mutable_message(), "bob", 1, 999);  // stale
  AddRecipient(send.mutable_message(), "bob", 9, 209);  // extra; bob:3 missing
  // alice:2 (the sender's other device) missing
  v1::SendOutcome outcome = EnqueueOne(send);
  ASSERT_TRUE(outcome.has_mismatch()) << outcome.DebugString();
  ASSERT_EQ(outcome.mismatch().users_size(), 2);
  const v1::DeviceMismatch& own = outcome.mismatch().users(0);
  EXPECT_EQ(own.user_id(), "alice");
  EXPECT_THAT(own.missing_device_ids(), ElementsAre(2u));
  EXPECT_EQ(own.device_list_version(), 3u);
  const v1::DeviceMismatch& bob = outcome.mismatch().users(1);
  EXPECT_EQ(bob.user_id(), "bob");
  EXPECT_THAT(bob.missing_device_ids(), ElementsAre(3u));
  EXPECT_THAT(bob.extra_device_ids(), ElementsAre(9u));
  EXPECT_THAT(bob.stale_device_ids(), ElementsAre(1u));
  EXPECT_EQ(bob.device_list_version(), 7u);
  EXPECT_EQ(Depth("bob", 1), 0u);
  EXPECT_TRUE(store_.published().empty());
}

TEST_F(DispatcherTest, UnknownRecipientUserIsNotFound) {
  v1::Send send = GoodSend();
  AddRecipient(send.mutable_message(), "carol", 1, 301);
  v1::SendOutcome outcome = EnqueueOne(send);
  ASSERT_TRUE(outcome.has_refused());
  EXPECT_EQ(outcome.refused().code(), static_cast<int>(absl::StatusCode::kNotFound));
  EXPECT_EQ(Depth("bob", 1), 0u);
}

TEST_F(DispatcherTest, SenderDeviceMissingFromItsOwnListIsPermissionDeniedAndNothingStored) {
  // alice:1 was unlinked after it logged in: alice's list now holds device 2 only.
  directory_.Set("alice", 4, {{2, 102}});
  prometheus::Registry registry;
  Dispatcher dispatcher(options_, &directory_, &store_, &clock_, &registry);
  v1::Send send = GoodSend();
  v1::EnqueueRequest request;
  *request.add_sends() = send;
  absl::StatusOr<v1::EnqueueResponse> response = dispatcher.Enqueue(request);
  ASSERT_TRUE(response.ok()) << response.status();
  ASSERT_EQ(response->outcomes_size(), 1);
  const v1::SendOutcome& outcome = response->outcomes(0);
  ASSERT_TRUE(outcome.has_refused()) << outcome.DebugString();
  EXPECT_EQ(outcome.refused().code(), static_cast<int>(absl::StatusCode::kPermissionDenied));
  EXPECT_THAT(outcome.refused().message(), ::testing::HasSubstr("alice:1"));
  EXPECT_THAT(outcome.refused().message(), ::testing::HasSubstr("not on its account"));
  EXPECT_EQ(Depth("bob", 1), 0u);
  EXPECT_EQ(Depth("bob", 3), 0u);
  EXPECT_EQ(Depth("alice", 2), 0u);
  EXPECT_TRUE(store_.published().empty());
  for (const prometheus::MetricFamily& family : registry.Collect()) {
    if (family.name != "padlock_envelopes_refused_total") continue;
    ASSERT_EQ(family.metric.size(), 1u);
    EXPECT_EQ(family.metric[0].label[0].value, "sender_not_listed");
    EXPECT_EQ(family.metric[0].counter.value, 1);
  }
}

TEST_F(DispatcherTest, SenderNotListedWinsOverMismatchOfItsOwnAccount) {
  // Without alice:1 on the list, a send that also misses alice:3 is still refused as
  // PERMISSION_DENIED rather than telling the unlinked device which devices to add.
  directory_.Set("alice", 4, {{2, 102}, {3, 103}});
  v1::SendOutcome outcome = EnqueueOne(GoodSend());
  ASSERT_TRUE(outcome.has_refused()) << outcome.DebugString();
  EXPECT_EQ(outcome.refused().code(), static_cast<int>(absl::StatusCode::kPermissionDenied));
  EXPECT_TRUE(store_.published().empty());
}

TEST_F(DispatcherTest, AListChangeAppliesToTheVeryNextSend) {
  // The dispatcher keeps nothing between sends: what the directory answers now decides.
  ASSERT_TRUE(EnqueueOne(GoodSend()).has_accepted());
  directory_.Set("bob", 8, {{1, 201}, {3, 203}, {4, 204}});  // bob linked device 4
  v1::SendOutcome linked = EnqueueOne(GoodSend(std::string(16, 'l')));
  ASSERT_TRUE(linked.has_mismatch()) << linked.DebugString();
  EXPECT_THAT(linked.mismatch().users(0).missing_device_ids(), ElementsAre(4u));
  EXPECT_EQ(linked.mismatch().users(0).device_list_version(), 8u);
  directory_.Set("bob", 9, {{1, 201}});  // bob unlinked devices 3 and 4
  v1::SendOutcome unlinked = EnqueueOne(GoodSend(std::string(16, 'u')));
  ASSERT_TRUE(unlinked.has_mismatch()) << unlinked.DebugString();
  EXPECT_THAT(unlinked.mismatch().users(0).extra_device_ids(), ElementsAre(3u));
  EXPECT_EQ(directory_.calls(), 3);  // one look-up per request, no second one
}

TEST_F(DispatcherTest, AMismatchIsReportedAndNothingStored) {
  v1::Send send = GoodSend();
  send.mutable_message()->mutable_recipients()->DeleteSubrange(1, 1);
  v1::SendOutcome outcome = EnqueueOne(send);
  ASSERT_TRUE(outcome.has_mismatch()) << outcome.DebugString();
  ASSERT_EQ(outcome.mismatch().users_size(), 1);
  EXPECT_EQ(outcome.mismatch().users(0).user_id(), "bob");
  EXPECT_THAT(outcome.mismatch().users(0).missing_device_ids(), ElementsAre(3u));
  EXPECT_EQ(outcome.mismatch().users(0).device_list_version(), 7u);
  EXPECT_EQ(directory_.calls(), 1);
  EXPECT_TRUE(store_.published().empty());
}

TEST_F(DispatcherTest, InvalidSendIsRefusedAloneAndTheRestOfTheBatchAccepted) {
  v1::EnqueueRequest request;
  v1::Send bad_id = GoodSend("short");
  v1::Send to_self = GoodSend(std::string(16, 'b'));
  AddRecipient(to_self.mutable_message(), "alice", 1, 101);
  v1::Send empty = GoodSend(std::string(16, 'c'), "");
  v1::Send huge = GoodSend(std::string(16, 'd'), std::string(64 * 1024 + 1, 'x'));
  v1::Send twice = GoodSend(std::string(16, 'e'));
  AddRecipient(twice.mutable_message(), "bob", 1, 201);
  v1::Send no_type = GoodSend(std::string(16, 'f'));
  no_type.mutable_message()->mutable_recipients(0)->set_type(v1::ENVELOPE_TYPE_UNSPECIFIED);
  v1::Send bad_sender = GoodSend(std::string(16, 'g'));
  bad_sender.mutable_sender()->set_device_id(0);
  for (const v1::Send* s : {&bad_id, &to_self, &empty, &huge, &twice, &no_type, &bad_sender}) {
    *request.add_sends() = *s;
  }
  *request.add_sends() = GoodSend();
  absl::StatusOr<v1::EnqueueResponse> response = dispatcher_->Enqueue(request);
  ASSERT_TRUE(response.ok()) << response.status();
  ASSERT_EQ(response->outcomes_size(), 8);
  for (int i = 0; i < 7; ++i) {
    ASSERT_TRUE(response->outcomes(i).has_refused()) << i;
    EXPECT_EQ(response->outcomes(i).refused().code(),
              static_cast<int>(absl::StatusCode::kInvalidArgument))
        << i << " " << response->outcomes(i).refused().message();
  }
  EXPECT_TRUE(response->outcomes(7).has_accepted());
  EXPECT_EQ(Depth("bob", 1), 1u);
}

// alice:1 → bob:1, bob:3, alice:2 with one shared payload and per-recipient headers.
v1::Send GroupSend(const std::string& id, const std::string& payload) {
  v1::Send send;
  *send.mutable_sender() = Address("alice", 1);
  v1::OutgoingMessage* m = send.mutable_message();
  m->set_message_id(id);
  m->set_shared_ciphertext(payload);
  m->set_shared_type(v1::ENVELOPE_TYPE_SENDER_KEY_MESSAGE);
  const std::vector<std::tuple<std::string, uint32_t, uint32_t>> devices = {
      {"bob", 1, 201}, {"bob", 3, 203}, {"alice", 2, 102}};
  for (const auto& [user, device, registration] : devices) {
    v1::Recipient* r = m->add_recipients();
    *r->mutable_device() = Address(user, device);
    r->set_registration_id(registration);
    r->set_header(absl::StrCat("header-", user, device));
  }
  return send;
}

TEST_F(DispatcherTest, GroupSendStoresPayloadOnceAndServesItToEveryDevice) {
  ASSERT_TRUE(EnqueueOne(GroupSend(kMessageId, "shared-payload")).has_accepted());
  EXPECT_EQ(store_.payload_count(), 1u);
  for (const auto& [user, device] :
       std::vector<std::pair<std::string, uint32_t>>{{"bob", 1}, {"bob", 3}, {"alice", 2}}) {
    v1::ReadInboxResponse r = Read(user, device);
    ASSERT_EQ(r.envelopes_size(), 1);
    EXPECT_EQ(r.envelopes(0).ciphertext(), "shared-payload");
    EXPECT_EQ(r.envelopes(0).recipient_header(), absl::StrCat("header-", user, device));
    EXPECT_EQ(r.envelopes(0).type(), v1::ENVELOPE_TYPE_SENDER_KEY_MESSAGE);
    v1::AckRequest ack;
    v1::DeviceAck* a = ack.add_acks();
    *a->mutable_device() = Address(user, device);
    a->set_up_to_server_id(r.envelopes(0).server_id());
    ASSERT_TRUE(dispatcher_->Ack(ack).ok());
    EXPECT_EQ(store_.payload_count(), user == "alice" ? 0u : 1u);  // gone after the last ack
  }
}

TEST_F(DispatcherTest, RetriedGroupSendKeepsOnePayloadAndBalancedReferences) {
  ASSERT_TRUE(EnqueueOne(GroupSend(kMessageId, "p")).has_accepted());
  ASSERT_TRUE(EnqueueOne(GroupSend(kMessageId, "p")).has_accepted());
  EXPECT_EQ(store_.payload_count(), 1u);
  for (const auto& [user, device] :
       std::vector<std::pair<std::string, uint32_t>>{{"bob", 1}, {"bob", 3}, {"alice", 2}}) {
    ASSERT_TRUE(dispatcher_->Purge(Address(user, device)).ok());
  }
  EXPECT_EQ(store_.payload_count(), 0u);
}

TEST_F(DispatcherTest, MalformedGroupSendsAreInvalidArgument) {
  v1::Send with_ciphertext = GroupSend(kMessageId, "p");
  with_ciphertext.mutable_message()->mutable_recipients(0)->set_ciphertext("x");
  v1::Send big_header = GroupSend(kMessageId, "p");
  big_header.mutable_message()->mutable_recipients(0)->set_header(std::string(1025, 'h'));
  v1::Send big_payload = GroupSend(kMessageId, std::string(256 * 1024 + 1, 'p'));
  v1::Send no_type = GroupSend(kMessageId, "p");
  no_type.mutable_message()->set_shared_type(v1::ENVELOPE_TYPE_UNSPECIFIED);
  v1::Send type_only = GoodSend();
  type_only.mutable_message()->set_shared_type(v1::ENVELOPE_TYPE_SENDER_KEY_MESSAGE);
  for (const v1::Send& send : {with_ciphertext, big_header, big_payload, no_type, type_only}) {
    v1::SendOutcome outcome = EnqueueOne(send);
    ASSERT_TRUE(outcome.has_refused());
    EXPECT_EQ(outcome.refused().code(), static_cast<int>(absl::StatusCode::kInvalidArgument))
        << outcome.refused().message();
  }
  EXPECT_EQ(store_.payload_count(), 0u);
}

TEST_F(DispatcherTest, DirectoryFailureFailsTheRequestAndStoresNothing) {
  directory_.FailWith(absl::UnavailableError("key-directory down"));
  v1::EnqueueRequest request;
  *request.add_sends() = GoodSend();
  absl::StatusOr<v1::EnqueueResponse> response = dispatcher_->Enqueue(request);
  EXPECT_EQ(response.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(Depth("bob", 1), 0u);
}

TEST_F(DispatcherTest, EmptyRequestAnswersEmptyWithoutLookups) {
  absl::StatusOr<v1::EnqueueResponse> response = dispatcher_->Enqueue(v1::EnqueueRequest());
  ASSERT_TRUE(response.ok());
  EXPECT_EQ(response->outcomes_size(), 0);
  EXPECT_EQ(directory_.calls(), 0);
}

TEST_F(DispatcherTest, TooManySendsIsInvalidArgument) {
  v1::EnqueueRequest request;
  for (size_t i = 0; i <= options_.max_sends_per_request; ++i) *request.add_sends() = GoodSend();
  EXPECT_EQ(dispatcher_->Enqueue(request).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(DispatcherTest, BatchLooksUpDeviceListsOnce) {
  v1::EnqueueRequest request;
  for (int i = 0; i < 3; ++i) *request.add_sends() = GoodSend(std::string(16, 'a' + i));
  ASSERT_TRUE(dispatcher_->Enqueue(request).ok());
  EXPECT_EQ(directory_.calls(), 1);
  EXPECT_THAT(Sequences(Read("bob", 1)), ElementsAre(1u, 2u, 3u));
}

TEST_F(DispatcherTest, RetryWithinWindowReturnsSameIdsAndStoresNothingMore) {
  v1::SendOutcome first = EnqueueOne(GoodSend());
  clock_.Advance(absl::Milliseconds(30'000));
  v1::SendOutcome retry = EnqueueOne(GoodSend());
  ASSERT_TRUE(retry.has_accepted());
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(retry.accepted().placements(i).server_id(),
              first.accepted().placements(i).server_id());
    EXPECT_EQ(retry.accepted().placements(i).sequence(),
              first.accepted().placements(i).sequence());
  }
  EXPECT_EQ(Depth("bob", 1), 1u);
}

TEST_F(DispatcherTest, RetryOnAnotherReplicaWithTheSameDedupeSecretIsADuplicate) {
  options_.dedupe_secret = std::string(32, 'k');
  Dispatcher first_replica(options_, &directory_, &store_, &clock_, nullptr);
  Dispatcher second_replica(options_, &directory_, &store_, &clock_, nullptr);
  v1::EnqueueRequest request;
  *request.add_sends() = GoodSend();
  auto first = first_replica.Enqueue(request);
  auto retry = second_replica.Enqueue(request);
  ASSERT_TRUE(first.ok() && retry.ok());
  ASSERT_TRUE(retry->outcomes(0).has_accepted());
  EXPECT_EQ(retry->outcomes(0).accepted().placements(0).server_id(),
            first->outcomes(0).accepted().placements(0).server_id());
  EXPECT_EQ(Depth("bob", 1), 1u);
}

TEST_F(DispatcherTest, ReplicasWithDifferentDedupeSecretsStoreARetryTwice) {
  // Why every replica needs the same PADLOCK_DEDUPE_SECRET (and what a rolling upgrade from the
  // plain keys does inside one dedupe window): the retry is not recognised.
  options_.dedupe_secret = std::string(32, 'k');
  Dispatcher first_replica(options_, &directory_, &store_, &clock_, nullptr);
  options_.dedupe_secret = std::string(32, 'l');
  Dispatcher second_replica(options_, &directory_, &store_, &clock_, nullptr);
  v1::EnqueueRequest request;
  *request.add_sends() = GoodSend();
  ASSERT_TRUE(first_replica.Enqueue(request).ok());
  ASSERT_TRUE(second_replica.Enqueue(request).ok());
  EXPECT_EQ(Depth("bob", 1), 2u);
}

TEST_F(DispatcherTest, OnlineOnlyIsPublishedButNeverStored) {
  v1::Send send = GoodSend();
  send.mutable_message()->set_online_only(true);
  store_.SetOnline(DeviceKey{"bob", 1});
  v1::SendOutcome outcome = EnqueueOne(send);
  ASSERT_TRUE(outcome.has_accepted());
  EXPECT_TRUE(outcome.accepted().placements(0).online());
  EXPECT_EQ(outcome.accepted().placements(0).server_id(), "");
  EXPECT_EQ(outcome.accepted().placements(0).sequence(), 0u);
  EXPECT_EQ(store_.published().size(), 3u);
  EXPECT_EQ(Depth("bob", 1), 0u);
}

TEST_F(DispatcherTest, FullInboxRefusesWithResourceExhausted) {
  for (int i = 0; i < 5; ++i) {
    ASSERT_TRUE(EnqueueOne(GoodSend(std::string(16, 'a' + i))).has_accepted());
  }
  v1::SendOutcome outcome = EnqueueOne(GoodSend(std::string(16, 'z')));
  ASSERT_TRUE(outcome.has_refused());
  EXPECT_EQ(outcome.refused().code(), static_cast<int>(absl::StatusCode::kResourceExhausted));
  EXPECT_EQ(Depth("bob", 1), 5u);
}

TEST_F(DispatcherTest, ReadPagesInOrderWithCursor) {
  for (int i = 0; i < 4; ++i) {
    ASSERT_TRUE(EnqueueOne(GoodSend(std::string(16, 'a' + i))).has_accepted());
  }
  v1::ReadInboxResponse first = Read("bob", 1, "", 0, 3);
  EXPECT_THAT(Sequences(first), ElementsAre(1u, 2u, 3u));
  EXPECT_FALSE(first.end_of_inbox());
  EXPECT_EQ(first.next_after_sequence(), 3u);
  v1::ReadInboxResponse second =
      Read("bob", 1, first.next_after_server_id(), first.next_after_sequence(), 3);
  EXPECT_THAT(Sequences(second), ElementsAre(4u));
  EXPECT_TRUE(second.end_of_inbox());
  EXPECT_EQ(second.gaps_size(), 0);
}

TEST_F(DispatcherTest, ReadStopsAtMaxBytesButReturnsAtLeastOne) {
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE(
        EnqueueOne(GoodSend(std::string(16, 'a' + i), std::string(100, 'x'))).has_accepted());
  }
  v1::ReadInboxResponse r = Read("bob", 1, "", 0, 0, 10);
  EXPECT_THAT(Sequences(r), ElementsAre(1u));
  EXPECT_FALSE(r.end_of_inbox());
}

TEST_F(DispatcherTest, RetentionTrimProducesGapAndInboxStaysActive) {
  ASSERT_TRUE(EnqueueOne(GoodSend(std::string(16, 'a'))).has_accepted());
  ASSERT_TRUE(EnqueueOne(GoodSend(std::string(16, 'b'))).has_accepted());
  clock_.Advance(absl::Milliseconds(3'600'001));
  ASSERT_TRUE(EnqueueOne(GoodSend(std::string(16, 'c'))).has_accepted());
  v1::ReadInboxResponse r = Read("bob", 1);
  EXPECT_THAT(Sequences(r), ElementsAre(3u));
  ASSERT_EQ(r.gaps_size(), 1);
  EXPECT_EQ(r.gaps(0).first_sequence(), 1u);
  EXPECT_EQ(r.gaps(0).last_sequence(), 2u);
  EXPECT_EQ(r.gaps(0).reason(), v1::Gap::REASON_EXPIRED);
}

TEST_F(DispatcherTest, EverythingExpiredGivesTrailingGap) {
  ASSERT_TRUE(EnqueueOne(GoodSend()).has_accepted());
  clock_.Advance(absl::Milliseconds(3'600'001));
  v1::ReadInboxResponse r = Read("bob", 1);
  EXPECT_EQ(r.envelopes_size(), 0);
  EXPECT_TRUE(r.end_of_inbox());
  ASSERT_EQ(r.gaps_size(), 1);
  EXPECT_EQ(r.gaps(0).first_sequence(), 1u);
  EXPECT_EQ(r.gaps(0).last_sequence(), 1u);
}

TEST_F(DispatcherTest, ShortTtlEntryIsFilteredAsGapAndCursorMovesPastIt) {
  v1::Send story = GoodSend(std::string(16, 'a'));
  story.mutable_message()->set_ttl_seconds(10);
  ASSERT_TRUE(EnqueueOne(story).has_accepted());
  ASSERT_TRUE(EnqueueOne(GoodSend(std::string(16, 'b'))).has_accepted());
  clock_.Advance(absl::Milliseconds(10'001));
  v1::ReadInboxResponse r = Read("bob", 1);
  EXPECT_THAT(Sequences(r), ElementsAre(2u));
  ASSERT_EQ(r.gaps_size(), 1);
  EXPECT_EQ(r.gaps(0).first_sequence(), 1u);
  EXPECT_EQ(r.gaps(0).last_sequence(), 1u);
  EXPECT_EQ(r.next_after_sequence(), 2u);
}

TEST_F(DispatcherTest, TtlIsCappedAtRetention) {
  v1::Send send = GoodSend();
  send.mutable_message()->set_ttl_seconds(1'000'000);
  ASSERT_TRUE(EnqueueOne(send).has_accepted());
  EXPECT_EQ(Read("bob", 1).envelopes(0).expires_at_ms(),
            static_cast<uint64_t>(kStartMs + 3'600'000));
}

TEST_F(DispatcherTest, AckedSequencesAreNeverAGapOnReadFromStart) {
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE(EnqueueOne(GoodSend(std::string(16, 'a' + i))).has_accepted());
  }
  v1::ReadInboxResponse r = Read("bob", 1);
  v1::AckRequest ack;
  v1::DeviceAck* a = ack.add_acks();
  *a->mutable_device() = Address("bob", 1);
  a->set_up_to_server_id(r.envelopes(1).server_id());
  absl::StatusOr<v1::AckResponse> acked = dispatcher_->Ack(ack);
  ASSERT_TRUE(acked.ok());
  EXPECT_THAT(acked->removed(), ElementsAre(2u));
  v1::ReadInboxResponse again = Read("bob", 1);
  EXPECT_THAT(Sequences(again), ElementsAre(3u));
  EXPECT_EQ(again.gaps_size(), 0);
}

// Acks `ids` of bob:1 one by one; returns the number removed.
uint32_t AckIds(Dispatcher& dispatcher, const std::vector<std::string>& ids,
                const std::string& up_to = "") {
  v1::AckRequest ack;
  v1::DeviceAck* a = ack.add_acks();
  *a->mutable_device() = Address("bob", 1);
  a->set_up_to_server_id(up_to);
  for (const std::string& id : ids) a->add_server_ids(id);
  absl::StatusOr<v1::AckResponse> acked = dispatcher.Ack(ack);
  EXPECT_TRUE(acked.ok()) << acked.status();
  return acked.ok() && acked->removed_size() == 1 ? acked->removed(0) : 9999;
}

TEST_F(DispatcherTest, OutOfOrderIndividualAcksAreNeverAGap) {
  for (int i = 0; i < 5; ++i) {
    ASSERT_TRUE(EnqueueOne(GoodSend(std::string(16, 'a' + i))).has_accepted());
  }
  v1::ReadInboxResponse r = Read("bob", 1);
  ASSERT_EQ(r.envelopes_size(), 5);
  // 4, 2 and the last one (5) acked one by one, out of order, before anything cumulative.
  EXPECT_EQ(AckIds(*dispatcher_, {r.envelopes(3).server_id(), r.envelopes(1).server_id(),
                                  r.envelopes(4).server_id()}),
            3u);
  v1::ReadInboxResponse from_start = Read("bob", 1);
  EXPECT_THAT(Sequences(from_start), ElementsAre(1u, 3u));
  EXPECT_EQ(from_start.gaps_size(), 0) << from_start.DebugString();
  EXPECT_TRUE(from_start.end_of_inbox());
  v1::ReadInboxResponse after_first = Read("bob", 1, r.envelopes(0).server_id(), 1);
  EXPECT_THAT(Sequences(after_first), ElementsAre(3u));
  EXPECT_EQ(after_first.gaps_size(), 0) << after_first.DebugString();
  // A cumulative ack of 1 lets the floor move over 2; acking 3 then covers everything.
  EXPECT_EQ(AckIds(*dispatcher_, {}, r.envelopes(0).server_id()), 1u);
  EXPECT_EQ(Read("bob", 1).gaps_size(), 0);
  EXPECT_EQ(AckIds(*dispatcher_, {r.envelopes(2).server_id()}), 1u);
  v1::ReadInboxResponse empty = Read("bob", 1);
  EXPECT_EQ(empty.envelopes_size(), 0);
  EXPECT_EQ(empty.gaps_size(), 0);
}

TEST_F(DispatcherTest, ExpiredEntryStaysAGapBetweenIndividualAcks) {
  ASSERT_TRUE(EnqueueOne(GoodSend(std::string(16, 'a'))).has_accepted());
  v1::Send story = GoodSend(std::string(16, 'b'));
  story.mutable_message()->set_ttl_seconds(1);
  ASSERT_TRUE(EnqueueOne(story).has_accepted());
  ASSERT_TRUE(EnqueueOne(GoodSend(std::string(16, 'c'))).has_accepted());
  ASSERT_TRUE(EnqueueOne(GoodSend(std::string(16, 'd'))).has_accepted());
  v1::ReadInboxResponse r = Read("bob", 1);
  ASSERT_EQ(r.envelopes_size(), 4);
  EXPECT_EQ(AckIds(*dispatcher_, {r.envelopes(2).server_id()}), 1u);  // sequence 3
  clock_.Advance(absl::Milliseconds(2'000));
  v1::ReadInboxResponse later = Read("bob", 1);
  EXPECT_THAT(Sequences(later), ElementsAre(1u, 4u));
  ASSERT_EQ(later.gaps_size(), 1) << later.DebugString();
  EXPECT_EQ(later.gaps(0).first_sequence(), 2u);
  EXPECT_EQ(later.gaps(0).last_sequence(), 2u);
}

TEST_F(DispatcherTest, AcksCumulativeAndByIdAreIdempotent) {
  for (int i = 0; i < 4; ++i) {
    ASSERT_TRUE(EnqueueOne(GoodSend(std::string(16, 'a' + i))).has_accepted());
  }
  v1::ReadInboxResponse r = Read("bob", 1);
  v1::AckRequest ack;
  v1::DeviceAck* a = ack.add_acks();
  *a->mutable_device() = Address("bob", 1);
  a->set_up_to_server_id(r.envelopes(0).server_id());
  a->add_server_ids(r.envelopes(2).server_id());
  ASSERT_THAT(dispatcher_->Ack(ack)->removed(), ElementsAre(2u));
  ASSERT_THAT(dispatcher_->Ack(ack)->removed(), ElementsAre(0u));
  EXPECT_THAT(Sequences(Read("bob", 1)), ElementsAre(2u, 4u));
}

TEST_F(DispatcherTest, AcksCarriedByEnqueueAreAppliedAndReportedBeforeTheSends) {
  ASSERT_TRUE(EnqueueOne(GoodSend(std::string(16, 'a'))).has_accepted());
  ASSERT_TRUE(EnqueueOne(GoodSend(std::string(16, 'b'))).has_accepted());
  v1::ReadInboxResponse r = Read("bob", 1);
  ASSERT_EQ(r.envelopes_size(), 2);
  // bob:1 acks its first entry in the call that carries its own send to alice.
  v1::EnqueueRequest request;
  v1::Send reply;
  *reply.mutable_sender() = Address("bob", 1);
  reply.mutable_message()->set_message_id(std::string(16, 'r'));
  AddRecipient(reply.mutable_message(), "alice", 1, 101);
  AddRecipient(reply.mutable_message(), "alice", 2, 102);
  AddRecipient(reply.mutable_message(), "bob", 3, 203);
  *request.add_sends() = reply;
  v1::DeviceAck* ack = request.add_acks();
  *ack->mutable_device() = Address("bob", 1);
  ack->set_up_to_server_id(r.envelopes(0).server_id());
  absl::StatusOr<v1::EnqueueResponse> response = dispatcher_->Enqueue(request);
  ASSERT_TRUE(response.ok()) << response.status();
  ASSERT_TRUE(response->has_ack_result());
  EXPECT_EQ(response->ack_result().code(), 0);
  EXPECT_THAT(response->ack_result().removed(), ElementsAre(1u));
  ASSERT_EQ(response->outcomes_size(), 1);
  EXPECT_TRUE(response->outcomes(0).has_accepted());
  EXPECT_THAT(Sequences(Read("bob", 1)), ElementsAre(2u));
  EXPECT_EQ(Depth("alice", 1), 1u);
}

TEST_F(DispatcherTest, EnqueueWithoutAcksHasNoAckResult) {
  v1::EnqueueRequest request;
  *request.add_sends() = GoodSend();
  absl::StatusOr<v1::EnqueueResponse> response = dispatcher_->Enqueue(request);
  ASSERT_TRUE(response.ok()) << response.status();
  EXPECT_FALSE(response->has_ack_result());
}

TEST_F(DispatcherTest, InvalidCarriedAckFailsTheWholeEnqueueAndStoresNothing) {
  v1::EnqueueRequest request;
  *request.add_sends() = GoodSend();
  v1::DeviceAck* ack = request.add_acks();
  *ack->mutable_device() = Address("bob", 1);
  ack->add_server_ids("nope");
  absl::StatusOr<v1::EnqueueResponse> response = dispatcher_->Enqueue(request);
  EXPECT_EQ(response.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(response.status().message(), ::testing::HasSubstr("acks[0].server_ids"));
  EXPECT_EQ(Depth("bob", 1), 0u);
}

TEST_F(DispatcherTest, CarriedAcksThatTheStoreFailsAreReportedWithTheirCode) {
  ASSERT_TRUE(EnqueueOne(GoodSend(std::string(16, 'a'))).has_accepted());
  v1::ReadInboxResponse r = Read("bob", 1);
  store_.FailWith(absl::UnavailableError("redis down"));
  v1::EnqueueRequest request;
  v1::DeviceAck* ack = request.add_acks();
  *ack->mutable_device() = Address("bob", 1);
  ack->set_up_to_server_id(r.envelopes(0).server_id());
  absl::StatusOr<v1::EnqueueResponse> response = dispatcher_->Enqueue(request);
  ASSERT_TRUE(response.ok()) << response.status();
  EXPECT_EQ(response->ack_result().code(), static_cast<int>(absl::StatusCode::kUnavailable));
  EXPECT_THAT(response->ack_result().message(), ::testing::HasSubstr("redis down"));
  EXPECT_TRUE(response->ack_result().removed().empty());
  store_.FailWith(absl::OkStatus());
  EXPECT_EQ(Depth("bob", 1), 1u);
}

TEST_F(DispatcherTest, BadCursorsAndIdsAreInvalidArgument) {
  v1::ReadInboxRequest read;
  *read.mutable_device() = Address("bob", 1);
  read.set_after_server_id("12-x");
  EXPECT_EQ(dispatcher_->ReadInbox(read).status().code(), absl::StatusCode::kInvalidArgument);
  v1::AckRequest ack;
  v1::DeviceAck* a = ack.add_acks();
  *a->mutable_device() = Address("bob", 1);
  a->add_server_ids("nope");
  EXPECT_EQ(dispatcher_->Ack(ack).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(dispatcher_->Purge(Address("BOB", 1)).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST_F(DispatcherTest, PurgeRemovesEverythingAndReportsCount) {
  ASSERT_TRUE(EnqueueOne(GoodSend(std::string(16, 'a'))).has_accepted());
  ASSERT_TRUE(EnqueueOne(GoodSend(std::string(16, 'b'))).has_accepted());
  absl::StatusOr<uint64_t> removed = dispatcher_->Purge(Address("bob", 1));
  ASSERT_TRUE(removed.ok());
  EXPECT_EQ(*removed, 2u);
  EXPECT_EQ(Depth("bob", 1), 0u);
  EXPECT_EQ(*dispatcher_->Purge(Address("bob", 1)), 0u);
}

TEST_F(DispatcherTest, StoreUnavailableRefusesSendAsUnavailable) {
  store_.FailWith(absl::UnavailableError("redis down"));
  v1::SendOutcome outcome = EnqueueOne(GoodSend());
  ASSERT_TRUE(outcome.has_refused());
  EXPECT_EQ(outcome.refused().code(), static_cast<int>(absl::StatusCode::kUnavailable));
}

// Sum of every sample of `name` (optionally with label reason=`reason`) in `registry`.
double MetricValue(prometheus::Registry& registry, const std::string& name,
                   const std::string& reason = "") {
  double total = 0;
  for (const prometheus::MetricFamily& family : registry.Collect()) {
    if (family.name != name) continue;
    for (const prometheus::ClientMetric& m : family.metric) {
      bool match = reason.empty();
      for (const prometheus::ClientMetric::Label& l : m.label) {
        if (l.name == "reason" && l.value == reason) match = true;
      }
      if (!match) continue;
      total += family.type == prometheus::MetricType::Histogram
                   ? static_cast<double>(m.histogram.sample_count)
                   : m.counter.value;
    }
  }
  return total;
}

TEST_F(DispatcherTest, CountsEnqueuedStoredRetriedRefusedAckedAndDepth) {
  prometheus::Registry registry;
  Dispatcher dispatcher(options_, &directory_, &store_, &clock_, &registry);
  store_.SetOnline(DeviceKey{"bob", 1});
  v1::EnqueueRequest request;
  *request.add_sends() = GoodSend();
  *request.add_sends() = GoodSend();  // the retry of the same message
  v1::Send stale = GoodSend(std::string(16, 's'));
  stale.mutable_message()->mutable_recipients(0)->set_registration_id(1);
  *request.add_sends() = stale;
  ASSERT_TRUE(dispatcher.Enqueue(request).ok());
  EXPECT_EQ(MetricValue(registry, "padlock_envelopes_enqueued_total"), 3);
  EXPECT_EQ(MetricValue(registry, "padlock_envelopes_stored_total"), 3);
  EXPECT_EQ(MetricValue(registry, "padlock_envelopes_published_online_total"), 1);
  EXPECT_EQ(MetricValue(registry, "padlock_enqueue_retry_hits_total"), 3);
  EXPECT_EQ(MetricValue(registry, "padlock_envelopes_refused_total", "mismatch"), 1);
  v1::ReadInboxRequest read;
  *read.mutable_device() = Address("bob", 1);
  absl::StatusOr<v1::ReadInboxResponse> page = dispatcher.ReadInbox(read);
  ASSERT_TRUE(page.ok());
  EXPECT_EQ(MetricValue(registry, "padlock_inbox_depth"), 1);  // one observation
  v1::AckRequest ack;
  v1::DeviceAck* a = ack.add_acks();
  *a->mutable_device() = Address("bob", 1);
  a->set_up_to_server_id(page->envelopes(0).server_id());
  ASSERT_TRUE(dispatcher.Ack(ack).ok());
  EXPECT_EQ(MetricValue(registry, "padlock_envelopes_acked_total"), 1);
}

TEST(ServerId, AcceptsStreamIdsOnly) {
  EXPECT_TRUE(IsServerId("1700000000000-0"));
  EXPECT_FALSE(IsServerId(""));
  EXPECT_FALSE(IsServerId("-1"));
  EXPECT_FALSE(IsServerId("1-"));
  EXPECT_FALSE(IsServerId("1"));
  EXPECT_FALSE(IsServerId("1-2-3"));
  EXPECT_FALSE(IsServerId("+"));
}

}  // namespace
}  // namespace padlock::message_queue
