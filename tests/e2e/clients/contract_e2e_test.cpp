// The client contract end to end (docs/PROTOCOL.md "Unsupported content"): a message whose content
// kind the receiver does not know is not dropped silently — the receiver reports it, acks it, and
// answers with an unsupported receipt that the sender's SDK surfaces as an event and a history
// status. The whole real backend (its own stack), only through the public gateway.

#include <memory>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "clients/sdk/content.h"
#include "clients/sdk/messenger.h"
#include "gtest/gtest.h"
#include "tests/e2e/clients/e2e_stack.h"
#include "tests/e2e/clients/messenger_fixture.h"

namespace padlock::client::e2e {
namespace {

[[maybe_unused]] ::testing::Environment* const kStackEnv =
    ::testing::AddGlobalTestEnvironment(new StackEnvironment);

class ContractE2eTest : public MessengerFixture {
 protected:
  // Queues, through the SDK's lower layers (DeviceCrypto, the outbox), a message of content kind
  // `kind` from `from` to every device of `to` — as a newer client would send a kind this SDK's
  // Messenger has no API for. Returns its message id.
  static std::string QueueRawContent(Messenger& from, const std::string& to, uint8_t kind,
                                     const std::string& body, const std::string& message_id) {
    absl::StatusOr<padlock::v1::SignedDeviceList> list = from.RefreshDeviceList(to);
    EXPECT_TRUE(list.ok()) << list.status();
    if (!list.ok()) return "";
    padlock::v1::OutgoingMessage message;
    message.set_message_id(message_id);
    for (const padlock::v1::DeviceListEntry& entry : list->list().devices()) {
      absl::StatusOr<Ciphertext> ciphertext = from.crypto().Encrypt(
          {to, static_cast<int32_t>(entry.device_id())},
          Content{static_cast<ContentKind>(kind), body});
      EXPECT_TRUE(ciphertext.ok()) << ciphertext.status();
      if (!ciphertext.ok()) return "";
      padlock::v1::Recipient* r = message.add_recipients();
      r->mutable_device()->set_user_id(to);
      r->mutable_device()->set_device_id(entry.device_id());
      r->set_registration_id(entry.registration_id());
      r->set_type(ciphertext->type);
      r->set_ciphertext(ciphertext->bytes);
    }
    const int64_t now = absl::ToUnixMillis(absl::Now());
    EXPECT_TRUE(from.store()
                    .AddOutbox(OutboxEntry{message_id, to, kind, body,
                                           message.SerializeAsString(), now})
                    .ok());
    EXPECT_TRUE(from.store()
                    .AddMessage(HistoryMessage{message_id, to, from.account()->user_id,
                                               from.account()->device_id, kind, "(new kind)", now,
                                               now, true, MessageStatus::kPending})
                    .ok());
    EXPECT_TRUE(from.FlushOutbox().ok());
    return message_id;
  }
};

TEST_F(ContractE2eTest, UnknownContentKindIsAnsweredUnsupportedAndSurfacedToTheSender) {
  const std::string alice_id = UniqueUser("alice");
  const std::string bob_id = UniqueUser("bob");
  std::vector<padlock::v1::Envelope> bob_seen;
  std::unique_ptr<Messenger> alice = Join(alice_id);
  std::unique_ptr<Messenger> bob = Join(bob_id, &bob_seen);
  ASSERT_NE(alice, nullptr);
  ASSERT_NE(bob, nullptr);

  // A session first, the ordinary way.
  absl::StatusOr<std::string> hello = alice->SendText(bob_id, "hello", absl::Seconds(20));
  ASSERT_TRUE(hello.ok()) << hello.status();
  ASSERT_EQ(Await(*bob, Kind::kMessage, 1).size(), 1u);
  ASSERT_EQ(Await(*alice, Kind::kReceipt, 1).size(), 1u);

  // Content kind 0x42: no client knows it.
  const std::string future_id = "future-message-1";
  ASSERT_EQ(QueueRawContent(*alice, bob_id, 0x42, "from the future", future_id), future_id);

  // The receiver reports it (not silently dropped) ...
  std::vector<MessengerEvent> at_bob = Await(*bob, Kind::kUnsupportedContent, 1);
  ASSERT_EQ(at_bob.size(), 1u);
  EXPECT_EQ(at_bob[0].peer, alice_id);
  EXPECT_EQ(at_bob[0].message_id, future_id);
  EXPECT_TRUE(absl::StrContains(at_bob[0].detail, "content kind 66")) << at_bob[0].detail;
  size_t delivered = 0;
  for (const padlock::v1::Envelope& e : bob_seen) delivered += e.message_id() == future_id;
  EXPECT_EQ(delivered, 1u);

  // ... and the sender hears "unsupported" for exactly that message, with bob's capabilities.
  std::vector<MessengerEvent> at_alice = Await(*alice, Kind::kUnsupported, 1);
  ASSERT_EQ(at_alice.size(), 1u);
  EXPECT_EQ(at_alice[0].peer, bob_id);
  EXPECT_EQ(at_alice[0].receipt_status, MessageStatus::kUnsupported);
  EXPECT_EQ(at_alice[0].message_ids, std::vector<std::string>{future_id});
  EXPECT_TRUE(absl::StrContains(at_alice[0].detail, "content format 1, kinds 1,2,3,5,6,7"))
      << at_alice[0].detail;
  absl::StatusOr<std::vector<HistoryMessage>> history = alice->store().ListMessages(bob_id);
  ASSERT_TRUE(history.ok()) << history.status();
  bool found = false;
  for (const HistoryMessage& m : *history) {
    if (m.message_id != future_id) continue;
    found = true;
    EXPECT_EQ(m.status, MessageStatus::kUnsupported);
  }
  EXPECT_TRUE(found);

  // The session is intact both ways afterwards, and bob does not answer twice.
  ASSERT_TRUE(alice->SendText(bob_id, "still there?", absl::Seconds(20)).ok());
  std::vector<MessengerEvent> texts = Await(*bob, Kind::kMessage, 1);
  ASSERT_EQ(texts.size(), 1u);
  EXPECT_EQ(texts[0].text, "still there?");
  ASSERT_TRUE(bob->SendText(alice_id, "yes", absl::Seconds(20)).ok());
  std::vector<MessengerEvent> others;
  std::vector<MessengerEvent> replies = Await(*alice, Kind::kMessage, 1, absl::Seconds(20), &others);
  ASSERT_EQ(replies.size(), 1u);
  EXPECT_EQ(replies[0].text, "yes");
  for (const MessengerEvent& e : others) EXPECT_NE(e.kind, Kind::kUnsupported);
}

TEST_F(ContractE2eTest, TextTooLongForTheServerIsRefusedBeforeAnythingIsQueued) {
  const std::string alice_id = UniqueUser("alice");
  const std::string bob_id = UniqueUser("bob");
  std::unique_ptr<Messenger> alice = Join(alice_id);
  std::unique_ptr<Messenger> bob = Join(bob_id);
  ASSERT_NE(alice, nullptr);
  ASSERT_NE(bob, nullptr);
  // The example: 40 000 bytes would pad to the 64 KiB bucket, which the message-queue
  // refuses once encrypted (PADLOCK_MAX_CIPHERTEXT_BYTES).
  absl::StatusOr<std::string> refused = alice->ComposeText(bob_id, std::string(40000, 'x'));
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(absl::StrContains(refused.status().message(), "too long")) << refused.status();
  EXPECT_EQ(*alice->OutboxSize(), 0u);
  // The largest text that fits is accepted by the server and arrives whole.
  const std::string largest(kMaxContentBodySize - 2 - bob_id.size(), 'y');
  absl::StatusOr<std::string> sent = alice->SendText(bob_id, largest, absl::Seconds(20));
  ASSERT_TRUE(sent.ok()) << sent.status();
  std::vector<MessengerEvent> texts = Await(*bob, Kind::kMessage, 1);
  ASSERT_EQ(texts.size(), 1u);
  EXPECT_EQ(texts[0].text, largest);
}

}  // namespace
}  // namespace padlock::client::e2e
