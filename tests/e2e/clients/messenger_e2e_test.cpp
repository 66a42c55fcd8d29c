// The client SDK end to end: Messengers for alice and bob in one process, each with its own
// device folder, talking to the real backend through the public gateway.
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "clients/sdk/messenger.h"
#include "gtest/gtest.h"
#include "tests/e2e/clients/e2e_stack.h"
#include "tests/e2e/clients/messenger_fixture.h"
#include "tests/harness/harness.h"

namespace padlock::client::e2e {
namespace {

// Registered once for the binary (see e2e_stack.h).
[[maybe_unused]] ::testing::Environment* const kStackEnv =
    ::testing::AddGlobalTestEnvironment(new StackEnvironment);

class MessengerE2eTest : public MessengerFixture {};

TEST_F(MessengerE2eTest, OneToOneBothWaysWithDeliveryReceipts) {
  const std::string alice_id = UniqueUser("alice");
  const std::string bob_id = UniqueUser("bob");
  auto alice = Join(alice_id);
  auto bob = Join(bob_id);
  ASSERT_TRUE(alice && bob);

  absl::StatusOr<std::string> sent = alice->SendText(bob_id, "hello bob", absl::Seconds(20));
  ASSERT_TRUE(sent.ok()) << sent.status();
  std::vector<MessengerEvent> at_bob = Await(*bob, Kind::kMessage, 1);
  ASSERT_EQ(at_bob.size(), 1u);
  EXPECT_EQ(at_bob[0].text, "hello bob");
  EXPECT_EQ(at_bob[0].peer, alice_id);
  EXPECT_EQ(at_bob[0].conversation, alice_id);
  EXPECT_EQ(at_bob[0].message_id, *sent);

  // Bob's client sent a delivery receipt for it.
  std::vector<MessengerEvent> receipts = Await(*alice, Kind::kReceipt, 1);
  ASSERT_EQ(receipts.size(), 1u);
  EXPECT_EQ(receipts[0].message_ids, std::vector<std::string>{*sent});
  auto alice_history = alice->store().ListMessages(bob_id);
  ASSERT_TRUE(alice_history.ok());
  ASSERT_EQ(alice_history->size(), 1u);
  EXPECT_EQ((*alice_history)[0].status, MessageStatus::kDelivered);

  absl::StatusOr<std::string> reply = bob->SendText(alice_id, "hi alice", absl::Seconds(20));
  ASSERT_TRUE(reply.ok()) << reply.status();
  std::vector<MessengerEvent> at_alice = Await(*alice, Kind::kMessage, 1);
  ASSERT_EQ(at_alice.size(), 1u);
  EXPECT_EQ(at_alice[0].text, "hi alice");
  EXPECT_EQ(at_alice[0].peer, bob_id);

  auto bob_history = bob->store().ListMessages(alice_id);
  ASSERT_TRUE(bob_history.ok());
  ASSERT_EQ(bob_history->size(), 2u);
  EXPECT_FALSE((*bob_history)[0].outgoing);
  EXPECT_EQ((*bob_history)[0].body, "hello bob");
  EXPECT_TRUE((*bob_history)[1].outgoing);
  EXPECT_EQ((*bob_history)[1].body, "hi alice");
  EXPECT_EQ(*alice->OutboxSize(), 0u);
}

TEST_F(MessengerE2eTest, OfflineRecipientReceivesTheBacklogInOrder) {
  const std::string alice_id = UniqueUser("alice");
  const std::string bob_id = UniqueUser("bob");
  auto alice = Join(alice_id);
  auto bob = Join(bob_id);
  ASSERT_TRUE(alice && bob);
  bob->Disconnect();

  const std::vector<std::string> texts{"one", "two", "three"};
  for (const std::string& text : texts) {
    absl::StatusOr<std::string> sent = alice->SendText(bob_id, text, absl::Seconds(20));
    ASSERT_TRUE(sent.ok()) << sent.status();
  }
  ASSERT_TRUE(bob->Connect(absl::Seconds(20)).ok());
  std::vector<MessengerEvent> got = Await(*bob, Kind::kMessage, 3);
  ASSERT_EQ(got.size(), 3u);
  for (size_t i = 0; i < texts.size(); ++i) {
    EXPECT_EQ(got[i].text, texts[i]);
    if (i > 0) {
      EXPECT_GT(got[i].sequence, got[i - 1].sequence);
    }
  }
}

TEST_F(MessengerE2eTest, CrashBetweenStoringAndSendingResendsTheSameBytesOnce) {
  const std::string alice_id = UniqueUser("alice");
  const std::string bob_id = UniqueUser("bob");
  std::vector<padlock::v1::Envelope> bob_saw;
  auto bob = Join(bob_id, &bob_saw);
  ASSERT_TRUE(bob != nullptr);
  bob->Disconnect();

  std::string message_id;
  std::string stored_ciphertext;
  {
    auto alice = Join(alice_id);
    ASSERT_TRUE(alice != nullptr);
    alice->Disconnect();  // composed while offline: stored, not sent
    absl::StatusOr<std::string> id = alice->ComposeText(bob_id, "survives a crash");
    ASSERT_TRUE(id.ok()) << id.status();
    message_id = *id;
    auto outbox = alice->store().ListOutbox();
    ASSERT_TRUE(outbox.ok());
    ASSERT_EQ(outbox->size(), 1u);
    padlock::v1::OutgoingMessage stored;
    ASSERT_TRUE(stored.ParseFromString((*outbox)[0].payload));
    ASSERT_EQ(stored.recipients_size(), 1);
    stored_ciphertext = stored.recipients(0).ciphertext();
  }  // the process "dies" here: only the database remains

  // A copy of the folder as it was at the crash: the same entry will be sent twice (once by the
  // restarted client, once more by the copy, as after a lost SendResult).
  const std::string home = dir_.path() + "/" + alice_id;
  const std::string copy = dir_.path() + "/" + alice_id + "-copy";
  std::filesystem::copy(home, copy, std::filesystem::copy_options::recursive);

  {
    auto alice = Open(alice_id);
    ASSERT_TRUE(alice != nullptr);
    ASSERT_TRUE(alice->Connect(absl::Seconds(20)).ok());  // flushes the outbox
    std::vector<MessengerEvent> sent = Await(*alice, Kind::kSent, 1);
    ASSERT_EQ(sent.size(), 1u);
    EXPECT_EQ(sent[0].message_id, message_id);
    EXPECT_EQ(*alice->OutboxSize(), 0u);
  }
  {
    auto again = Open(alice_id + "-copy");
    ASSERT_TRUE(again != nullptr);
    ASSERT_TRUE(again->Connect(absl::Seconds(20)).ok());
    std::vector<MessengerEvent> sent = Await(*again, Kind::kSent, 1);
    ASSERT_EQ(sent.size(), 1u);  // accepted again (idempotent): nothing stays queued
    EXPECT_EQ(*again->OutboxSize(), 0u);
  }

  ASSERT_TRUE(bob->Connect(absl::Seconds(20)).ok());
  std::vector<MessengerEvent> got = Await(*bob, Kind::kMessage, 1);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].text, "survives a crash");
  // Nothing more arrives, whatever the server delivered: the message is seen once.
  bob->Pump(absl::Seconds(2));
  EXPECT_EQ(bob->store().ListMessages(alice_id)->size(), 1u);
  ASSERT_FALSE(bob_saw.empty());
  for (const padlock::v1::Envelope& e : bob_saw) {
    EXPECT_EQ(e.message_id(), message_id);
    EXPECT_EQ(e.ciphertext(), stored_ciphertext);  // the same bytes, never re-encrypted
  }
}

TEST_F(MessengerE2eTest, TamperedCiphertextIsRejectedWithoutCorruptingTheSession) {
  const std::string alice_id = UniqueUser("alice");
  const std::string bob_id = UniqueUser("bob");
  auto alice = Join(alice_id);
  auto bob = Join(bob_id);
  ASSERT_TRUE(alice && bob);
  ASSERT_TRUE(alice->SendText(bob_id, "first", absl::Seconds(20)).ok());
  ASSERT_EQ(Await(*bob, Kind::kMessage, 1).size(), 1u);

  // Queue "second", then put a copy with one flipped byte (new message id) in front of it.
  alice->Disconnect();
  absl::StatusOr<std::string> id = alice->ComposeText(bob_id, "second");
  ASSERT_TRUE(id.ok());
  auto outbox = alice->store().ListOutbox();
  ASSERT_TRUE(outbox.ok());
  ASSERT_EQ(outbox->size(), 1u);
  OutboxEntry genuine = (*outbox)[0];
  padlock::v1::OutgoingMessage tampered;
  ASSERT_TRUE(tampered.ParseFromString(genuine.payload));
  std::string* bytes = tampered.mutable_recipients(0)->mutable_ciphertext();
  (*bytes)[bytes->size() / 2] ^= 0x01;
  tampered.set_message_id(std::string(16, '\x7e'));
  ASSERT_TRUE(alice->store().RemoveOutbox(genuine.message_id).ok());
  ASSERT_TRUE(alice->store()
                  .AddOutbox({tampered.message_id(), bob_id, genuine.content_kind, genuine.body,
                              tampered.SerializeAsString(), genuine.created_at_ms})
                  .ok());
  ASSERT_TRUE(alice->store().AddOutbox(genuine).ok());
  ASSERT_TRUE(alice->Connect(absl::Seconds(20)).ok());
  ASSERT_EQ(Await(*alice, Kind::kSent, 2).size(), 2u);

  std::vector<MessengerEvent> rejected;
  std::vector<MessengerEvent> messages;
  const absl::Time deadline = absl::Now() + absl::Seconds(20);
  while (messages.empty() && absl::Now() < deadline) {
    for (MessengerEvent& e : bob->Pump(absl::Milliseconds(200))) {
      if (e.kind == Kind::kRejected) rejected.push_back(e);
      if (e.kind == Kind::kMessage) messages.push_back(e);
    }
  }
  ASSERT_EQ(rejected.size(), 1u);
  EXPECT_EQ(rejected[0].peer, alice_id);
  ASSERT_EQ(messages.size(), 1u);
  EXPECT_EQ(messages[0].text, "second");

  // The session goes on both ways.
  ASSERT_TRUE(alice->SendText(bob_id, "third", absl::Seconds(20)).ok());
  std::vector<MessengerEvent> third = Await(*bob, Kind::kMessage, 1);
  ASSERT_EQ(third.size(), 1u);
  EXPECT_EQ(third[0].text, "third");
  ASSERT_TRUE(bob->SendText(alice_id, "still fine", absl::Seconds(20)).ok());
  std::vector<MessengerEvent> back = Await(*alice, Kind::kMessage, 1);
  ASSERT_EQ(back.size(), 1u);
  EXPECT_EQ(back[0].text, "still fine");
}

TEST_F(MessengerE2eTest, SendingToAnUnknownUserIsNotFound) {
  auto alice = Join(UniqueUser("alice"));
  ASSERT_TRUE(alice != nullptr);
  absl::StatusOr<std::string> sent = alice->SendText("nobody-here", "hello?", absl::Seconds(10));
  EXPECT_EQ(sent.status().code(), absl::StatusCode::kNotFound) << sent.status();
  EXPECT_EQ(*alice->OutboxSize(), 0u);
}

TEST_F(MessengerE2eTest, RegisteringATakenUserIdFails) {
  const std::string user = UniqueUser("alice");
  auto first = Join(user);
  ASSERT_TRUE(first != nullptr);
  auto second = Open(user + "-second-device-folder");
  ASSERT_TRUE(second != nullptr);
  EXPECT_EQ(second->Register(user).code(), absl::StatusCode::kAlreadyExists);
  EXPECT_FALSE(second->registered());
}

}  // namespace
}  // namespace padlock::client::e2e

namespace padlock::client::e2e {
namespace {

TEST_F(MessengerE2eTest, GroupOfThreeAndARemovedMemberCannotReadLaterMessages) {
  const std::string alice_id = UniqueUser("alice");
  const std::string bob_id = UniqueUser("bob");
  const std::string carol_id = UniqueUser("carol");
  auto alice = Join(alice_id);
  auto bob = Join(bob_id);
  std::vector<padlock::v1::Envelope> carol_saw;
  auto carol = Join(carol_id, &carol_saw);
  ASSERT_TRUE(alice && bob && carol);

  absl::StatusOr<std::string> group = alice->CreateGroup("friends", {bob_id, carol_id});
  ASSERT_TRUE(group.ok()) << group.status();
  ASSERT_EQ(Await(*bob, Kind::kGroupUpdated, 1).size(), 1u);
  ASSERT_EQ(Await(*carol, Kind::kGroupUpdated, 1).size(), 1u);

  ASSERT_TRUE(alice->SendGroupText(*group, "hello group", absl::Seconds(20)).ok());
  for (Messenger* m : {bob.get(), carol.get()}) {
    std::vector<MessengerEvent> got = Await(*m, Kind::kMessage, 1);
    ASSERT_EQ(got.size(), 1u);
    EXPECT_EQ(got[0].text, "hello group");
    EXPECT_EQ(got[0].peer, alice_id);
    EXPECT_EQ(got[0].conversation, GroupConversation(*group));
  }
  // One shared ciphertext: carol's copy is a sender-key message.
  bool saw_group_envelope = false;
  for (const padlock::v1::Envelope& e : carol_saw) {
    if (e.type() == padlock::v1::ENVELOPE_TYPE_SENDER_KEY_MESSAGE) saw_group_envelope = true;
  }
  EXPECT_TRUE(saw_group_envelope);

  ASSERT_TRUE(bob->SendGroupText(*group, "hi from bob", absl::Seconds(20)).ok());
  for (Messenger* m : {alice.get(), carol.get()}) {
    std::vector<MessengerEvent> got = Await(*m, Kind::kMessage, 1);
    ASSERT_EQ(got.size(), 1u);
    EXPECT_EQ(got[0].text, "hi from bob");
  }

  ASSERT_TRUE(alice->RemoveGroupMember(*group, carol_id).ok());
  ASSERT_EQ(Await(*bob, Kind::kGroupUpdated, 1).size(), 1u);
  ASSERT_EQ(Await(*carol, Kind::kGroupUpdated, 1).size(), 1u);
  EXPECT_FALSE(carol->store().LoadGroup(*group)->has_value());

  // Compose while offline to look at the shared ciphertext before it goes out.
  alice->Disconnect();
  absl::StatusOr<std::string> secret = alice->ComposeGroupText(*group, "after carol left");
  ASSERT_TRUE(secret.ok()) << secret.status();
  std::string shared;
  absl::StatusOr<std::vector<OutboxEntry>> queued = alice->store().ListOutbox();
  ASSERT_TRUE(queued.ok());
  for (const OutboxEntry& e : *queued) {
    padlock::v1::OutgoingMessage m;
    ASSERT_TRUE(m.ParseFromString(e.payload));
    if (e.message_id == *secret) {
      shared = m.shared_ciphertext();
      for (const padlock::v1::Recipient& r : m.recipients()) {
        EXPECT_NE(r.device().user_id(), carol_id);  // not even addressed to her
      }
    }
  }
  ASSERT_FALSE(shared.empty());
  // Even with the bytes, carol's old sender key of alice does not open the rotated one.
  absl::StatusOr<Content> stolen = carol->crypto().GroupDecrypt(
      *group, {alice_id, 1},
      Ciphertext{padlock::v1::ENVELOPE_TYPE_SENDER_KEY_MESSAGE, shared});
  EXPECT_FALSE(stolen.ok());

  ASSERT_TRUE(alice->Connect(absl::Seconds(20)).ok());
  std::vector<MessengerEvent> got = Await(*bob, Kind::kMessage, 1);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].text, "after carol left");
  EXPECT_TRUE(EventsWithin(*carol, Kind::kMessage, absl::Seconds(3)).empty());
}

}  // namespace
}  // namespace padlock::client::e2e

namespace padlock::client::e2e {
namespace {

TEST_F(MessengerE2eTest, TypingReachesOnlyConnectedDevicesAndIsNeverStored) {
  const std::string alice_id = UniqueUser("alice");
  const std::string bob_id = UniqueUser("bob");
  auto alice = Join(alice_id);
  auto bob = Join(bob_id);
  ASSERT_TRUE(alice && bob);
  // A first real message establishes the session both ways.
  ASSERT_TRUE(alice->SendText(bob_id, "hi", absl::Seconds(20)).ok());
  ASSERT_EQ(Await(*bob, Kind::kMessage, 1).size(), 1u);

  ASSERT_TRUE(alice->SendTyping(bob_id, true).ok());
  std::vector<MessengerEvent> typing = Await(*bob, Kind::kTyping, 1);
  ASSERT_EQ(typing.size(), 1u);
  EXPECT_EQ(typing[0].peer, alice_id);
  EXPECT_EQ(typing[0].text, "1");

  bob->Disconnect();
  ASSERT_TRUE(alice->SendTyping(bob_id, false).ok());
  ASSERT_TRUE(alice->SendText(bob_id, "after typing", absl::Seconds(20)).ok());
  ASSERT_TRUE(bob->Connect(absl::Seconds(20)).ok());
  std::vector<MessengerEvent> later;
  const absl::Time deadline = absl::Now() + absl::Seconds(20);
  bool got_text = false;
  while (!got_text && absl::Now() < deadline) {
    for (MessengerEvent& e : bob->Pump(absl::Milliseconds(200))) {
      if (e.kind == Kind::kMessage) got_text = true;
      later.push_back(std::move(e));
    }
  }
  ASSERT_TRUE(got_text);
  for (const MessengerEvent& e : later) EXPECT_NE(e.kind, Kind::kTyping);
}

}  // namespace
}  // namespace padlock::client::e2e

namespace padlock::client::e2e {
namespace {

TEST_F(MessengerE2eTest, PreKeysLowIsAnsweredWithFreshPrekeys) {
  const std::string alice_id = UniqueUser("alice");
  const std::string bob_id = UniqueUser("bob");
  auto alice = Join(alice_id);
  MessengerOptions bob_options = Options(bob_id);
  bob_options.prekey_batch = 12;
  auto bob = Open(bob_options);
  ASSERT_TRUE(alice && bob);
  ASSERT_TRUE(bob->Register(bob_id).ok());
  ASSERT_TRUE(bob->Connect(absl::Seconds(20)).ok());

  // Three claims leave 9 of bob's 12 one-time prekeys: below the key-directory's threshold (10).
  for (int i = 0; i < 3; ++i) {
    absl::StatusOr<padlock::v1::ClaimBundlesResponse> claimed =
        alice->gateway().ClaimBundles(bob_id, 1);
    ASSERT_TRUE(claimed.ok()) << claimed.status();
    ASSERT_EQ(claimed->bundles_size(), 1);
    EXPECT_TRUE(claimed->bundles(0).has_one_time_prekey());
  }
  std::vector<MessengerEvent> replenished = Await(*bob, Kind::kPreKeysReplenished, 1);
  ASSERT_EQ(replenished.size(), 1u);
  EXPECT_EQ(replenished[0].detail, "21 one-time prekeys on the server");
  EXPECT_EQ(*bob->store().CountPreKeys(), 24);  // private halves of all 24 kept locally

  // A session built on one of the new keys works.
  for (int i = 0; i < 9; ++i) ASSERT_TRUE(alice->gateway().ClaimBundles(bob_id, 1).ok());
  ASSERT_TRUE(alice->SendText(bob_id, "on a fresh prekey", absl::Seconds(20)).ok());
  std::vector<MessengerEvent> got = Await(*bob, Kind::kMessage, 1);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].text, "on a fresh prekey");
}

}  // namespace
}  // namespace padlock::client::e2e

namespace padlock::client::e2e {
namespace {

TEST_F(MessengerE2eTest, ALinkedDeviceReceivesOnEveryPath) {
  const std::string alice_id = UniqueUser("alice");
  const std::string bob_id = UniqueUser("bob");
  auto alice = Join(alice_id);
  auto bob = Join(bob_id);
  ASSERT_TRUE(alice && bob);
  // Bob knows alice's one-device list before she links a second device.
  ASSERT_TRUE(bob->SendText(alice_id, "before the link", absl::Seconds(20)).ok());
  ASSERT_EQ(Await(*alice, Kind::kMessage, 1).size(), 1u);

  auto laptop = Open(alice_id + "-laptop");
  ASSERT_TRUE(laptop != nullptr);
  absl::StatusOr<std::string> code = laptop->CreateLinkRequest(alice_id);
  ASSERT_TRUE(code.ok()) << code.status();
  EXPECT_EQ(*laptop->CreateLinkRequest(alice_id), *code);  // stable until approved
  absl::StatusOr<uint32_t> device = alice->ApproveLink(*code);
  ASSERT_TRUE(device.ok()) << device.status();
  EXPECT_EQ(*device, 2u);
  EXPECT_EQ(*alice->ApproveLink(*code), 2u);  // idempotent
  ASSERT_TRUE(laptop->CompleteLink(absl::Seconds(20)).ok());
  ASSERT_TRUE(laptop->account().ok());
  EXPECT_EQ(laptop->account()->device_id, 2u);
  ASSERT_TRUE(laptop->Connect(absl::Seconds(20)).ok());

  // bob → alice: bob's client learns of the new device from the server's mismatch and re-checks
  // the primary's signature on the new list.
  ASSERT_TRUE(bob->SendText(alice_id, "to both of your devices", absl::Seconds(20)).ok());
  for (Messenger* m : {alice.get(), laptop.get()}) {
    std::vector<MessengerEvent> got = Await(*m, Kind::kMessage, 1);
    ASSERT_EQ(got.size(), 1u);
    EXPECT_EQ(got[0].text, "to both of your devices");
    EXPECT_EQ(got[0].peer, bob_id);
  }

  // alice's primary → bob, with a copy for the laptop filed under bob.
  ASSERT_TRUE(alice->SendText(bob_id, "from the phone", absl::Seconds(20)).ok());
  std::vector<MessengerEvent> at_bob = Await(*bob, Kind::kMessage, 1);
  ASSERT_EQ(at_bob.size(), 1u);
  EXPECT_EQ(at_bob[0].text, "from the phone");
  std::vector<MessengerEvent> copy = Await(*laptop, Kind::kMessage, 1);
  ASSERT_EQ(copy.size(), 1u);
  EXPECT_EQ(copy[0].conversation, bob_id);
  EXPECT_EQ(copy[0].peer, alice_id);

  // The laptop → bob, with a copy for the primary.
  ASSERT_TRUE(laptop->SendText(bob_id, "from the laptop", absl::Seconds(20)).ok());
  at_bob = Await(*bob, Kind::kMessage, 1);
  ASSERT_EQ(at_bob.size(), 1u);
  EXPECT_EQ(at_bob[0].text, "from the laptop");
  EXPECT_EQ(at_bob[0].peer_device, 2u);
  copy = Await(*alice, Kind::kMessage, 1);
  ASSERT_EQ(copy.size(), 1u);
  EXPECT_EQ(copy[0].text, "from the laptop");
  EXPECT_EQ(copy[0].conversation, bob_id);

  auto laptop_history = laptop->store().ListMessages(bob_id);
  ASSERT_TRUE(laptop_history.ok());
  EXPECT_EQ(laptop_history->size(), 3u);
}

}  // namespace
}  // namespace padlock::client::e2e
