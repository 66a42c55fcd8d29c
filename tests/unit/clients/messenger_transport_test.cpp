// The Messenger through its transport interface with a fake gateway (tests/fakes/fake_transport.h):
// real Signal sessions and SQLCipher stores in a temp folder, no network, no servers. Each test
// drives the stream itself — connects, breaks, answers sends — and checks what the SDK wrote.

#include <signal/signal_protocol.h>

#include <algorithm>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "clients/sdk/device_crypto.h"
#include "clients/sdk/errors.h"
#include "clients/sdk/messenger.h"
#include "gtest/gtest.h"
#include "tests/fakes/fake_transport.h"
#include "tests/harness/harness.h"

namespace padlock::client {
namespace {

using padlock::testing::Address;
using padlock::testing::DeliverFrame;
using padlock::testing::EnvelopeFor;
using padlock::testing::FakeDirectory;
using padlock::testing::FakeStreamControl;
using padlock::testing::FakeTransport;
using Kind = MessengerEvent::Kind;

constexpr absl::Duration kWait = absl::Seconds(10);

struct Device {
  FakeTransport* transport = nullptr;  // owned by the messenger
  std::unique_ptr<Messenger> m;
  std::shared_ptr<FakeStreamControl> stream() const { return transport->stream(); }
};

const padlock::v1::Recipient* RecipientOf(const padlock::v1::SendRequest& send,
                                          const std::string& user, uint32_t device) {
  for (const padlock::v1::Recipient& r : send.message().recipients()) {
    if (r.device().user_id() == user && r.device().device_id() == device) return &r;
  }
  return nullptr;
}

class MessengerTransportTest : public ::testing::Test {
 protected:
  MessengerOptions Options(const std::string& folder) {
    MessengerOptions options;
    options.home = dir_.path() + "/" + folder;
    options.prekey_batch = 5;
    options.link_poll_interval = absl::Milliseconds(10);
    return options;
  }

  Device Open(const std::string& folder) {
    auto transport = std::make_unique<FakeTransport>(directory_);
    Device d;
    d.transport = transport.get();
    absl::StatusOr<std::unique_ptr<Messenger>> m =
        Messenger::Open(Options(folder), std::move(transport));
    EXPECT_TRUE(m.ok()) << m.status();
    if (m.ok()) d.m = *std::move(m);
    return d;
  }

  // A registered, connected device of a new account `user`.
  Device Join(const std::string& user) {
    Device d = Open(user);
    if (d.m == nullptr) return d;
    absl::Status registered = d.m->Register(user);
    EXPECT_TRUE(registered.ok()) << registered;
    absl::Status connected = d.m->Connect(kWait);
    EXPECT_TRUE(connected.ok()) << connected;
    return d;
  }

  // Pumps `m` until `done` holds (checked after every pump) or kWait passes; returns every event.
  static std::vector<MessengerEvent> PumpUntil(
      Messenger& m, const std::function<bool(const std::vector<MessengerEvent>&)>& done) {
    std::vector<MessengerEvent> all;
    const absl::Time deadline = absl::Now() + kWait;
    while (!done(all) && absl::Now() < deadline) {
      for (MessengerEvent& e : m.Pump(absl::Milliseconds(20))) all.push_back(std::move(e));
    }
    return all;
  }
  static std::function<bool(const std::vector<MessengerEvent>&)> Saw(Kind kind) {
    return [kind](const std::vector<MessengerEvent>& events) {
      return std::any_of(events.begin(), events.end(),
                         [&](const MessengerEvent& e) { return e.kind == kind; });
    };
  }
  static const MessengerEvent* Find(const std::vector<MessengerEvent>& events, Kind kind) {
    for (const MessengerEvent& e : events) {
      if (e.kind == kind) return &e;
    }
    return nullptr;
  }
  // Pumps `sender` until the stream has at least `count` sends; returns them.
  static std::vector<padlock::v1::SendRequest> SendsAtLeast(Device& sender, size_t count) {
    PumpUntil(*sender.m, [&](const std::vector<MessengerEvent>&) {
      return sender.stream()->sends().size() >= count;
    });
    return sender.stream()->sends();
  }

  padlock::testing::TempDir dir_;
  FakeDirectory directory_;
};

TEST_F(MessengerTransportTest, OutboxResendsTheSameBytesAfterTheStreamBreaks) {
  Device alice = Join("alice");
  Device bob = Join("bob");
  ASSERT_NE(alice.m, nullptr);
  ASSERT_NE(bob.m, nullptr);

  absl::StatusOr<std::string> id = alice.m->ComposeText("bob", "hello");
  ASSERT_TRUE(id.ok()) << id.status();
  ASSERT_TRUE(alice.m->FlushOutbox().ok());
  ASSERT_TRUE(alice.m->FlushOutbox().ok());  // in flight on this connection: not sent twice
  std::vector<padlock::v1::SendRequest> sends = alice.stream()->sends();
  ASSERT_EQ(sends.size(), 1u);
  EXPECT_EQ(sends[0].message().message_id(), *id);
  ASSERT_NE(RecipientOf(sends[0], "bob", 1), nullptr);

  // The connection breaks before the result arrives; the stream reconnects.
  alice.stream()->Break();
  EXPECT_NE(Find(PumpUntil(*alice.m, Saw(Kind::kDisconnected)), Kind::kDisconnected), nullptr);
  EXPECT_TRUE(alice.m->FlushOutbox().ok());  // disconnected: a no-op
  EXPECT_EQ(alice.stream()->sends().size(), 1u);
  alice.stream()->Connect(2);

  sends = SendsAtLeast(alice, 2);
  ASSERT_EQ(sends.size(), 2u);
  EXPECT_NE(sends[1].request_id(), sends[0].request_id());
  EXPECT_EQ(sends[1].message().message_id(), *id);
  // The same bytes: not encrypted again (a second ciphertext would advance the ratchet).
  EXPECT_EQ(sends[1].message().SerializeAsString(), sends[0].message().SerializeAsString());

  alice.stream()->Accept(sends[1].request_id());
  std::vector<MessengerEvent> events = PumpUntil(*alice.m, Saw(Kind::kSent));
  const MessengerEvent* sent = Find(events, Kind::kSent);
  ASSERT_NE(sent, nullptr);
  EXPECT_EQ(sent->message_id, *id);
  EXPECT_EQ(*alice.m->OutboxSize(), 0u);
}

TEST_F(MessengerTransportTest, MismatchAddsTheMissingDeviceAndKeepsTheOtherCiphertexts) {
  Device alice = Join("alice");
  Device bob = Join("bob");
  ASSERT_NE(alice.m, nullptr);
  ASSERT_NE(bob.m, nullptr);
  absl::StatusOr<std::string> id = alice.m->ComposeText("bob", "to both of you");
  ASSERT_TRUE(id.ok()) << id.status();

  // Bob links a second device after alice encrypted for his list version 1.
  Device laptop = Open("bob-laptop");
  ASSERT_NE(laptop.m, nullptr);
  absl::StatusOr<std::string> code = laptop.m->CreateLinkRequest("bob");
  ASSERT_TRUE(code.ok()) << code.status();
  absl::StatusOr<uint32_t> linked = bob.m->ApproveLink(*code);
  ASSERT_TRUE(linked.ok()) << linked.status();
  ASSERT_EQ(*linked, 2u);
  ASSERT_TRUE(laptop.m->CompleteLink(kWait).ok());

  ASSERT_TRUE(alice.m->FlushOutbox().ok());
  std::vector<padlock::v1::SendRequest> sends = alice.stream()->sends();
  ASSERT_EQ(sends.size(), 1u);
  ASSERT_EQ(sends[0].message().recipients_size(), 1);
  padlock::v1::Mismatch mismatch;
  padlock::v1::DeviceMismatch* user = mismatch.add_users();
  user->set_user_id("bob");
  user->add_missing_device_ids(2);
  user->set_device_list_version(2);
  alice.stream()->Mismatch(sends[0].request_id(), mismatch);

  sends = SendsAtLeast(alice, 2);
  ASSERT_EQ(sends.size(), 2u);
  EXPECT_EQ(sends[1].message().message_id(), *id);
  ASSERT_EQ(sends[1].message().recipients_size(), 2);
  const padlock::v1::Recipient* phone = RecipientOf(sends[1], "bob", 1);
  ASSERT_NE(phone, nullptr);
  EXPECT_EQ(phone->ciphertext(), RecipientOf(sends[0], "bob", 1)->ciphertext());
  ASSERT_NE(RecipientOf(sends[1], "bob", 2), nullptr);

  // The new device reads its copy.
  ASSERT_TRUE(laptop.m->Connect(kWait).ok());
  std::optional<padlock::v1::Envelope> envelope =
      EnvelopeFor(sends[1], Address("alice", 1), Address("bob", 2), "inbox-1");
  ASSERT_TRUE(envelope.has_value());
  laptop.stream()->Push(DeliverFrame({*envelope}));
  std::vector<MessengerEvent> events = PumpUntil(*laptop.m, Saw(Kind::kMessage));
  const MessengerEvent* message = Find(events, Kind::kMessage);
  ASSERT_NE(message, nullptr);
  EXPECT_EQ(message->text, "to both of you");
  EXPECT_EQ(message->message_id, *id);
}

TEST_F(MessengerTransportTest, ChangedIdentityHoldsMessagesUntilAccepted) {
  Device alice = Join("alice");
  Device bob = Join("bob");
  ASSERT_NE(alice.m, nullptr);
  ASSERT_NE(bob.m, nullptr);
  absl::StatusOr<std::string> first = alice.m->ComposeText("bob", "before");
  ASSERT_TRUE(first.ok()) << first.status();
  ASSERT_TRUE(alice.m->FlushOutbox().ok());
  alice.stream()->Accept(alice.stream()->sends().at(0).request_id());
  ASSERT_NE(Find(PumpUntil(*alice.m, Saw(Kind::kSent)), Kind::kSent), nullptr);

  // Bob reinstalls: a new identity key for device 1.
  auto new_transport = std::make_unique<FakeTransport>(directory_);
  FakeTransport* bob_new_transport = new_transport.get();
  absl::StatusOr<std::unique_ptr<Messenger>> bob_new =
      bob.m->ChangeIdentity(Options("bob-new"), std::move(new_transport));
  ASSERT_TRUE(bob_new.ok()) << bob_new.status();

  // Alice still encrypts to the old session; the server answers "stale".
  absl::StatusOr<std::string> second = alice.m->ComposeText("bob", "after");
  ASSERT_TRUE(second.ok()) << second.status();
  ASSERT_TRUE(alice.m->FlushOutbox().ok());
  std::vector<padlock::v1::SendRequest> sends = alice.stream()->sends();
  ASSERT_EQ(sends.size(), 2u);
  padlock::v1::Mismatch mismatch;
  padlock::v1::DeviceMismatch* user = mismatch.add_users();
  user->set_user_id("bob");
  user->add_stale_device_ids(1);
  user->set_device_list_version(2);
  alice.stream()->Mismatch(sends[1].request_id(), mismatch);

  std::vector<MessengerEvent> events = PumpUntil(*alice.m, Saw(Kind::kIdentityChanged));
  const MessengerEvent* changed = Find(events, Kind::kIdentityChanged);
  ASSERT_NE(changed, nullptr);
  EXPECT_EQ(changed->peer, "bob");
  EXPECT_EQ(changed->peer_device, 1u);
  EXPECT_TRUE(alice.m->IdentityHeld("bob"));

  // Held: neither that message nor a new one goes anywhere until alice accepts.
  absl::StatusOr<std::string> third = alice.m->ComposeText("bob", "still held");
  ASSERT_TRUE(third.ok()) << third.status();
  ASSERT_TRUE(alice.m->FlushOutbox().ok());
  alice.m->Pump(absl::Milliseconds(50));
  EXPECT_EQ(alice.stream()->sends().size(), 2u);
  EXPECT_EQ(*alice.m->OutboxSize(), 2u);

  ASSERT_TRUE(alice.m->AcceptIdentity("bob").ok());
  EXPECT_FALSE(alice.m->IdentityHeld("bob"));
  sends = SendsAtLeast(alice, 4);
  ASSERT_EQ(sends.size(), 4u);
  std::optional<padlock::v1::SendRequest> resent;
  for (size_t i = 2; i < sends.size(); ++i) {
    if (sends[i].message().message_id() == *second) resent = sends[i];
  }
  ASSERT_TRUE(resent.has_value());
  const padlock::v1::Recipient* to_bob = RecipientOf(*resent, "bob", 1);
  ASSERT_NE(to_bob, nullptr);
  EXPECT_EQ(to_bob->type(), padlock::v1::ENVELOPE_TYPE_PREKEY_MESSAGE);  // a fresh session

  // Bob's new install reads it: it was encrypted to the new key.
  Device bob2{bob_new_transport, *std::move(bob_new)};
  ASSERT_TRUE(bob2.m->Connect(kWait).ok());
  bob2.stream()->Push(
      DeliverFrame({*EnvelopeFor(*resent, Address("alice", 1), Address("bob", 1), "inbox-2")}));
  events = PumpUntil(*bob2.m, Saw(Kind::kMessage));
  const MessengerEvent* message = Find(events, Kind::kMessage);
  ASSERT_NE(message, nullptr);
  EXPECT_EQ(message->text, "after");
}

TEST_F(MessengerTransportTest, EnvelopeFromAnUnacceptedKeyIsKeptUnreadUntilAccepted) {
  Device alice = Join("alice");
  Device bob = Join("bob");
  ASSERT_NE(alice.m, nullptr);
  ASSERT_NE(bob.m, nullptr);
  ASSERT_TRUE(alice.m->ComposeText("bob", "hi").ok());  // alice now trusts bob's first key

  auto new_transport = std::make_unique<FakeTransport>(directory_);
  FakeTransport* bob_new_transport = new_transport.get();
  absl::StatusOr<std::unique_ptr<Messenger>> reinstalled =
      bob.m->ChangeIdentity(Options("bob-new"), std::move(new_transport));
  ASSERT_TRUE(reinstalled.ok()) << reinstalled.status();
  Device bob2{bob_new_transport, *std::move(reinstalled)};
  ASSERT_TRUE(bob2.m->Connect(kWait).ok());
  ASSERT_TRUE(bob2.m->ComposeText("alice", "new phone").ok());
  ASSERT_TRUE(bob2.m->FlushOutbox().ok());
  ASSERT_EQ(bob2.stream()->sends().size(), 1u);

  const size_t written_before = alice.stream()->written().size();
  alice.stream()->Push(DeliverFrame(
      {*EnvelopeFor(bob2.stream()->sends()[0], Address("bob", 1), Address("alice", 1), "s-9")}));
  std::vector<MessengerEvent> events = PumpUntil(*alice.m, Saw(Kind::kIdentityChanged));
  ASSERT_NE(Find(events, Kind::kIdentityChanged), nullptr);
  EXPECT_EQ(Find(events, Kind::kMessage), nullptr);   // not read
  EXPECT_EQ(Find(events, Kind::kRejected), nullptr);  // nor dropped
  EXPECT_TRUE(alice.m->IdentityHeld("bob"));
  for (size_t i = written_before; i < alice.stream()->written().size(); ++i) {
    EXPECT_FALSE(alice.stream()->written()[i].has_ack()) << "acknowledged before acceptance";
  }

  ASSERT_TRUE(alice.m->AcceptIdentity("bob").ok());
  events = PumpUntil(*alice.m, Saw(Kind::kMessage));
  const MessengerEvent* message = Find(events, Kind::kMessage);
  ASSERT_NE(message, nullptr);
  EXPECT_EQ(message->text, "new phone");
  bool acked = false;
  for (const padlock::v1::ClientFrame& f : alice.stream()->written()) {
    if (f.has_ack()) acked = acked || f.ack().server_ids(0) == "s-9";
  }
  EXPECT_TRUE(acked);
}

TEST_F(MessengerTransportTest, ReceiptThatCannotBeComposedIsReportedNotDropped) {
  Device alice = Join("alice");
  Device bob = Join("bob");
  ASSERT_NE(alice.m, nullptr);
  ASSERT_NE(bob.m, nullptr);
  absl::StatusOr<std::string> id = bob.m->ComposeText("alice", "ping");
  ASSERT_TRUE(id.ok()) << id.status();
  ASSERT_TRUE(bob.m->FlushOutbox().ok());
  ASSERT_EQ(bob.stream()->sends().size(), 1u);

  // Alice has never fetched bob's device list, and now cannot: the receipt cannot be addressed.
  directory_.FailRpc("GetDeviceList", absl::UnavailableError("key directory down"));
  alice.stream()->Push(DeliverFrame(
      {*EnvelopeFor(bob.stream()->sends()[0], Address("bob", 1), Address("alice", 1), "s-1")}));
  std::vector<MessengerEvent> events = PumpUntil(*alice.m, Saw(Kind::kError));

  const MessengerEvent* message = Find(events, Kind::kMessage);
  ASSERT_NE(message, nullptr);
  EXPECT_EQ(message->text, "ping");
  const MessengerEvent* error = Find(events, Kind::kError);
  ASSERT_NE(error, nullptr);
  EXPECT_EQ(error->peer, "bob");
  EXPECT_TRUE(absl::StrContains(error->detail, "receipt")) << error->detail;
  EXPECT_TRUE(absl::StrContains(error->detail, "key directory down")) << error->detail;
  EXPECT_EQ(alice.m->receipt_failures(), 1u);
  EXPECT_EQ(*alice.m->OutboxSize(), 0u);
  // The message itself was stored and acknowledged.
  bool acked = false;
  for (const padlock::v1::ClientFrame& f : alice.stream()->written()) {
    if (f.has_ack()) acked = acked || f.ack().server_ids(0) == "s-1";
  }
  EXPECT_TRUE(acked);
}

TEST(SdkErrors, UntrustedIdentityIsATypeNotAMessage) {
  EXPECT_TRUE(IsUntrustedIdentity(SignalError(SG_ERR_UNTRUSTED_IDENTITY, "decrypt")));
  EXPECT_FALSE(IsUntrustedIdentity(SignalError(SG_ERR_NO_SESSION, "decrypt")));
  // The words alone do not make one (the old check matched the message text).
  EXPECT_FALSE(IsUntrustedIdentity(absl::FailedPreconditionError("untrusted identity")));
  // The mark survives a rewording.
  absl::Status marked = UntrustedIdentityError("a different message");
  EXPECT_TRUE(IsUntrustedIdentity(marked));
  EXPECT_TRUE(absl::IsFailedPrecondition(marked));
}

TEST(SdkErrors, IdentityChangedCarriesUserAndDevices) {
  absl::Status status = IdentityChangedError("bob", {1, 3});
  auto change = IdentityChanged(status);
  ASSERT_TRUE(change.has_value());
  EXPECT_EQ(change->first, "bob");
  EXPECT_EQ(change->second, (std::vector<uint32_t>{1, 3}));
  EXPECT_FALSE(IdentityChanged(absl::FailedPreconditionError(status.message())).has_value());
}

}  // namespace
}  // namespace padlock::client
