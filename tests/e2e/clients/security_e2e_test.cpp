// The client's security promises against the whole real backend (tests/harness/stack.h), only
// through the public gateway except where a test plays a hostile or broken server by writing
// PostgreSQL itself:
// - 1 000 envelopes that reach the server (and so the recipient) in a shuffled order decrypt,
//   each exactly once, with the right text;
// - an identity change (bob's primary reinstalled; bob's linked device given a new key) is
//   surfaced as "security code changed" naming the device, holds alice's messages (those already
//   queued when a STALE answer reveals it, and those written after) until she accepts, sends
//   nothing to the new key before that, and everything after;
// - a device row inserted straight into PostgreSQL (not on the primary's signed list) never gets
//   a ciphertext: the client refuses with a clear error instead.
#include <algorithm>
#include <map>
#include <memory>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "clients/sdk/device_list.h"
#include "clients/sdk/identity.h"
#include "clients/sdk/messenger.h"
#include "common/statement/signed_statement.h"
#include "gtest/gtest.h"
#include "services/common/channels/device_channel.h"
#include "services/common/device_lists/device_list_summary.h"
#include "tests/e2e/clients/e2e_stack.h"
#include "tests/e2e/clients/messenger_fixture.h"
#include "tests/harness/harness.h"

namespace padlock::client::e2e {
namespace {

class SecurityE2eTest : public MessengerFixture {
 protected:
  // Every event `m` produces within `d` (the stream keeps running meanwhile).
  static std::vector<MessengerEvent> PumpFor(Messenger& m, absl::Duration d) {
    return m.Pump(d);
  }

  // Runs `sql` on the key-directory's database (psql, stops at the first error); returns the
  // unaligned output.
  absl::StatusOr<std::string> Sql(const std::string& sql) {
    const std::string log = absl::StrCat(dir_.path(), "/psql-", ++sql_runs_, ".log");
    absl::StatusOr<padlock::testing::Subprocess> psql = padlock::testing::Subprocess::Start(
        {.argv = {"/usr/lib/postgresql/15/bin/psql", "--no-psqlrc", "-v", "ON_ERROR_STOP=1",
                  "-At", "--dbname=" + SharedStack()->postgres_dsn(), "-c", sql},
         .log_path = log});
    if (!psql.ok()) return psql.status();
    absl::StatusOr<int> exit = psql->Wait(absl::Seconds(60));
    if (!exit.ok()) return exit.status();
    if (*exit != 0) return absl::InternalError(absl::StrCat("psql failed: ", psql->ReadLog()));
    return std::string(absl::StripAsciiWhitespace(psql->ReadLog()));
  }

  static std::string Bytea(const std::string& bytes) {
    return absl::StrCat("'\\x", absl::BytesToHexString(bytes), "'::bytea");
  }

  // Deletes `user`'s device-list summary in Redis, as the key-directory does around every change
  // it makes (docs/REDIS.md "Device-list summaries"). A test that writes PostgreSQL by hand must
  // call it afterwards; otherwise the message-queue keeps checking sends against the summary.
  static void ForgetDeviceListSummary(const std::string& user) {
    const std::string key = device_lists::SummaryKey(user);
    absl::StatusOr<std::string> out = SharedStack()->RedisCliForKey(key, {"DEL", key});
    ASSERT_TRUE(out.ok()) << out.status();
  }

  // Entries in the Redis inbox stream of `user`:`device` (0 when it does not exist).
  static int64_t InboxLength(const std::string& user, uint32_t device) {
    const std::string key = channels::InboxKey(user, device);
    absl::StatusOr<std::string> out = SharedStack()->RedisCliForKey(key, {"XLEN", key});
    EXPECT_TRUE(out.ok()) << out.status();
    int64_t n = -1;
    EXPECT_TRUE(out.ok() && absl::SimpleAtoi(absl::StripAsciiWhitespace(*out), &n)) << *out;
    return n;
  }

  int sql_runs_ = 0;
};

std::set<std::string> MessageIdsFrom(const std::vector<padlock::v1::Envelope>& envelopes,
                                     const std::string& sender) {
  std::set<std::string> ids;
  for (const padlock::v1::Envelope& e : envelopes) {
    if (e.sender().user_id() == sender) ids.insert(e.message_id());
  }
  return ids;
}

// ---------------------------------------------------------------------------------------------
// 1. Out of order.

TEST_F(SecurityE2eTest, AThousandEnvelopesDeliveredOutOfOrderDecryptExactlyOnce) {
  constexpr int kCount = 1000;
  const std::string alice_id = UniqueUser("alice");
  const std::string bob_id = UniqueUser("bob");
  auto alice = Join(alice_id);
  auto bob = Join(bob_id);
  ASSERT_TRUE(alice && bob);
  bob->Disconnect();
  alice->Disconnect();

  // Composed offline: 1 000 ratchet steps on one sending chain, all in alice's outbox.
  std::map<std::string, std::string> text_of;  // message id → text
  std::vector<std::string> composed_order;
  for (int i = 0; i < kCount; ++i) {
    const std::string text = absl::StrCat("out of order #", i);
    absl::StatusOr<std::string> id = alice->ComposeText(bob_id, text);
    ASSERT_TRUE(id.ok()) << id.status();
    text_of[*id] = text;
    composed_order.push_back(*id);
  }
  absl::StatusOr<std::vector<OutboxEntry>> outbox = alice->store().ListOutbox();
  ASSERT_TRUE(outbox.ok()) << outbox.status();
  ASSERT_EQ(outbox->size(), static_cast<size_t>(kCount));

  // The test sends alice's stored entries itself, as alice's device, in a shuffled order (fixed
  // seed: a failure reproduces), so bob's inbox holds the ratchet messages out of order.
  std::vector<OutboxEntry> shuffled = *outbox;
  std::mt19937 rng(20261126);
  std::shuffle(shuffled.begin(), shuffled.end(), rng);
  std::unique_ptr<GatewayStream> raw = GatewayStream::Start(alice->gateway());
  const absl::Time connect_deadline = absl::Now() + absl::Seconds(20);
  while (!raw->connected() && absl::Now() < connect_deadline) {
    std::optional<StreamEvent> e = raw->Next(absl::Milliseconds(200));
    if (e.has_value() && e->kind == StreamEvent::Kind::kStopped) break;
  }
  ASSERT_TRUE(raw->connected());
  std::map<uint64_t, size_t> in_flight;  // request id → index in `shuffled`
  uint64_t next_request = 1;
  auto send = [&](size_t index) {
    padlock::v1::ClientFrame frame;
    frame.mutable_send()->set_request_id(next_request);
    ASSERT_TRUE(frame.mutable_send()->mutable_message()->ParseFromString(shuffled[index].payload));
    ASSERT_TRUE(raw->Write(frame).ok());
    in_flight[next_request++] = index;
  };
  for (size_t i = 0; i < shuffled.size(); ++i) send(i);
  std::vector<std::string> accepted_order;
  const absl::Time send_deadline = absl::Now() + absl::Seconds(120);
  while (accepted_order.size() < shuffled.size() && absl::Now() < send_deadline) {
    std::optional<StreamEvent> e = raw->Next(absl::Milliseconds(500));
    if (!e.has_value() || e->kind != StreamEvent::Kind::kFrame ||
        !e->frame.has_send_result()) {
      continue;
    }
    const padlock::v1::SendResult& result = e->frame.send_result();
    auto it = in_flight.find(result.request_id());
    ASSERT_TRUE(it != in_flight.end());
    const size_t index = it->second;
    in_flight.erase(it);
    if (result.has_accepted()) {
      accepted_order.push_back(shuffled[index].message_id);
    } else {
      // Only a rate limit is expected (test profile limits are high): send it again.
      ASSERT_TRUE(result.has_refused()) << result.DebugString();
      ASSERT_EQ(result.refused().code(), static_cast<int>(absl::StatusCode::kResourceExhausted))
          << result.DebugString();
      send(index);
    }
  }
  raw->Stop();
  ASSERT_EQ(accepted_order.size(), static_cast<size_t>(kCount));
  ASSERT_NE(accepted_order, composed_order);  // really out of order on the server

  std::vector<padlock::v1::Envelope> delivered;
  bob = nullptr;
  bob = Open(bob_id, &delivered);
  ASSERT_TRUE(bob != nullptr);
  ASSERT_TRUE(bob->Connect(absl::Seconds(20)).ok());
  std::vector<MessengerEvent> got = Await(*bob, Kind::kMessage, kCount, absl::Seconds(180));
  ASSERT_EQ(got.size(), static_cast<size_t>(kCount));
  std::set<std::string> ids;
  std::vector<std::string> arrival;
  for (const MessengerEvent& e : got) {
    ASSERT_TRUE(text_of.count(e.message_id) > 0);
    EXPECT_EQ(e.text, text_of[e.message_id]);
    EXPECT_EQ(e.peer, alice_id);
    EXPECT_TRUE(ids.insert(e.message_id).second) << "delivered twice";
    arrival.push_back(e.message_id);
  }
  EXPECT_EQ(ids.size(), static_cast<size_t>(kCount));
  // Bob decrypted them in the shuffled order (the inbox keeps the server's acceptance order),
  // i.e. skipping ahead and back along alice's chain.
  EXPECT_EQ(arrival, accepted_order);
  EXPECT_NE(arrival, composed_order);
  // Nothing more comes (no duplicate), and the history holds each text once.
  std::vector<MessengerEvent> later = PumpFor(*bob, absl::Seconds(2));
  for (const MessengerEvent& e : later) EXPECT_NE(e.kind, Kind::kMessage) << e.text;
  absl::StatusOr<std::vector<HistoryMessage>> history = bob->store().ListMessages(alice_id);
  ASSERT_TRUE(history.ok());
  EXPECT_EQ(history->size(), static_cast<size_t>(kCount));
  for (const padlock::v1::Envelope& e : delivered) {
    EXPECT_EQ(e.type(), padlock::v1::ENVELOPE_TYPE_PREKEY_MESSAGE);  // bob never replied
  }
}

// ---------------------------------------------------------------------------------------------
// 2. Identity changes.

TEST_F(SecurityE2eTest, PrimaryIdentityChangeHoldsMessagesUntilAccepted) {
  const std::string alice_id = UniqueUser("alice");
  const std::string bob_id = UniqueUser("bob");
  std::vector<padlock::v1::Envelope> alice_saw;
  auto alice = Join(alice_id, &alice_saw);
  auto bob = Join(bob_id);
  ASSERT_TRUE(alice && bob);
  ASSERT_TRUE(alice->SendText(bob_id, "before the reinstall", absl::Seconds(20)).ok());
  ASSERT_EQ(Await(*bob, Kind::kMessage, 1).size(), 1u);
  ASSERT_EQ(Await(*alice, Kind::kReceipt, 1).size(), 1u);  // a session both ways

  // Alice writes while offline: queued, encrypted for bob's current key.
  alice->Disconnect();
  absl::StatusOr<std::string> held1 = alice->ComposeText(bob_id, "held one");
  absl::StatusOr<std::string> held2 = alice->ComposeText(bob_id, "held two");
  ASSERT_TRUE(held1.ok() && held2.ok());

  // Bob reinstalls: a new identity key in a new folder, through ChangeIdentity.
  std::vector<padlock::v1::Envelope> bob2_saw;
  absl::StatusOr<std::unique_ptr<Messenger>> reinstalled =
      bob->ChangeIdentity(Options(bob_id + "-reinstalled", &bob2_saw));
  ASSERT_TRUE(reinstalled.ok()) << reinstalled.status();
  std::unique_ptr<Messenger> bob2 = *std::move(reinstalled);
  const std::string old_key = bob->store().LoadLocalIdentity()->public_key;
  const uint32_t new_registration = *bob2->store().LoadRegistrationId();
  const std::string new_key = bob2->store().LoadLocalIdentity()->public_key;
  ASSERT_NE(old_key, new_key);
  bob = nullptr;
  ASSERT_TRUE(bob2->Connect(absl::Seconds(20)).ok());
  absl::StatusOr<padlock::v1::SignedDeviceList> bob_list = bob2->RefreshDeviceList(bob_id);
  ASSERT_TRUE(bob_list.ok()) << bob_list.status();
  EXPECT_EQ(bob_list->list().version(), 2u);
  EXPECT_EQ(FindDevice(bob_list->list(), 1)->identity_key(), new_key);

  // Alice comes back: the server answers her queued entries STALE; her client finds the new key
  // on bob's list and says so, naming bob's device 1, and holds the entries.
  ASSERT_TRUE(alice->Connect(absl::Seconds(20)).ok());
  std::vector<MessengerEvent> alice_other;
  std::vector<MessengerEvent> changed =
      Await(*alice, Kind::kIdentityChanged, 1, absl::Seconds(20), &alice_other);
  ASSERT_EQ(changed.size(), 1u);
  EXPECT_EQ(changed[0].peer, bob_id);
  EXPECT_EQ(changed[0].peer_device, 1u);
  EXPECT_TRUE(absl::StrContains(changed[0].detail, "security code changed")) << changed[0].detail;
  EXPECT_TRUE(absl::StrContains(changed[0].detail, bob_id)) << changed[0].detail;
  EXPECT_TRUE(alice->IdentityHeld(bob_id));
  // A message written now is held too: queued, not lost, not sent.
  absl::StatusOr<std::string> held3 = alice->ComposeText(bob_id, "held three");
  ASSERT_TRUE(held3.ok()) << held3.status();
  EXPECT_EQ(*alice->OutboxSize(), 3u);

  // Nothing goes to the new identity before alice accepts it.
  for (const MessengerEvent& e : PumpFor(*alice, absl::Seconds(2))) alice_other.push_back(e);
  for (const MessengerEvent& e : alice_other) {
    EXPECT_NE(e.kind, Kind::kSent) << "sent before acceptance";
    EXPECT_NE(e.kind, Kind::kSendFailed) << e.detail;  // held, not failed
  }
  for (const MessengerEvent& e : PumpFor(*bob2, absl::Seconds(1))) {
    EXPECT_NE(e.kind, Kind::kMessage) << "bob's new install got " << e.text;
  }
  EXPECT_TRUE(MessageIdsFrom(bob2_saw, alice_id).empty());
  absl::StatusOr<std::vector<OutboxEntry>> outbox = alice->store().ListOutbox();
  ASSERT_TRUE(outbox.ok());
  ASSERT_EQ(outbox->size(), 3u);
  for (const OutboxEntry& entry : *outbox) {
    padlock::v1::OutgoingMessage message;
    ASSERT_TRUE(message.ParseFromString(entry.payload));
    for (const padlock::v1::Recipient& r : message.recipients()) {
      EXPECT_NE(r.registration_id(), new_registration) << "a ciphertext for the new key";
    }
  }
  absl::StatusOr<std::optional<std::string>> trusted =
      alice->store().LoadRemoteIdentity({bob_id, 1});
  ASSERT_TRUE(trusted.ok() && trusted->has_value());
  EXPECT_EQ(**trusted, old_key);

  // Both sides show the same new safety number (what they compare in person).
  absl::StatusOr<std::map<uint32_t, std::string>> alice_numbers = alice->SafetyNumbers(bob_id);
  absl::StatusOr<std::map<uint32_t, std::string>> bob_numbers = bob2->SafetyNumbers(alice_id);
  ASSERT_TRUE(alice_numbers.ok() && bob_numbers.ok());
  EXPECT_EQ(alice_numbers->at(1), bob_numbers->at(1));

  // Bob's new install writes first: alice's client neither reads it (the key is not accepted)
  // nor drops it.
  absl::StatusOr<std::string> early =
      bob2->SendText(alice_id, "written before the acceptance", absl::Seconds(20));
  ASSERT_TRUE(early.ok()) << early.status();
  const absl::Time deadline = absl::Now() + absl::Seconds(20);
  while (MessageIdsFrom(alice_saw, bob_id).count(*early) == 0 && absl::Now() < deadline) {
    for (const MessengerEvent& e : alice->Pump(absl::Milliseconds(200))) {
      EXPECT_NE(e.kind, Kind::kMessage) << "read before acceptance: " << e.text;
      EXPECT_NE(e.kind, Kind::kSent) << "sent before acceptance";
    }
  }
  ASSERT_EQ(MessageIdsFrom(alice_saw, bob_id).count(*early), 1u);
  EXPECT_TRUE(alice->IdentityHeld(bob_id));
  EXPECT_EQ(alice->store().ListMessages(bob_id)->size(), 4u);  // 1 sent + 3 held, no more

  // Accepted: the three held messages go out, to the new key, and bob reads each once; bob's
  // early message is read now.
  ASSERT_TRUE(alice->AcceptIdentity(bob_id).ok());
  EXPECT_FALSE(alice->IdentityHeld(bob_id));
  std::vector<MessengerEvent> after_accept;
  // (kSent also comes for alice's delivery receipt of bob's early message.)
  std::set<std::string> sent_ids;
  const absl::Time send_deadline = absl::Now() + absl::Seconds(20);
  while (!(sent_ids.count(*held1) && sent_ids.count(*held2) && sent_ids.count(*held3)) &&
         absl::Now() < send_deadline) {
    for (MessengerEvent& e : alice->Pump(absl::Milliseconds(200))) {
      if (e.kind == Kind::kSent) {
        sent_ids.insert(e.message_id);
      } else {
        after_accept.push_back(std::move(e));
      }
    }
  }
  EXPECT_TRUE(sent_ids.count(*held1) && sent_ids.count(*held2) && sent_ids.count(*held3));
  std::vector<MessengerEvent> early_read;
  for (MessengerEvent& e : after_accept) {
    if (e.kind == Kind::kMessage) early_read.push_back(std::move(e));
  }
  if (early_read.empty()) early_read = Await(*alice, Kind::kMessage, 1);
  ASSERT_EQ(early_read.size(), 1u);
  EXPECT_EQ(early_read[0].text, "written before the acceptance");
  EXPECT_EQ(early_read[0].message_id, *early);
  std::vector<MessengerEvent> got = Await(*bob2, Kind::kMessage, 3);
  ASSERT_EQ(got.size(), 3u);
  std::map<std::string, std::string> texts;
  for (const MessengerEvent& e : got) texts[e.message_id] = e.text;
  EXPECT_EQ(texts, (std::map<std::string, std::string>{
                       {*held1, "held one"}, {*held2, "held two"}, {*held3, "held three"}}));
  EXPECT_EQ(*alice->OutboxSize(), 0u);
  for (const MessengerEvent& e : PumpFor(*bob2, absl::Seconds(1))) {
    EXPECT_NE(e.kind, Kind::kMessage) << "again: " << e.text;
  }
  // And the conversation goes on both ways with the new key.
  ASSERT_TRUE(bob2->SendText(alice_id, "reinstalled and back", absl::Seconds(20)).ok());
  std::vector<MessengerEvent> reply = Await(*alice, Kind::kMessage, 1);
  ASSERT_EQ(reply.size(), 1u);
  EXPECT_EQ(reply[0].text, "reinstalled and back");
}

TEST_F(SecurityE2eTest, LinkedDeviceIdentityChangeHoldsMessagesUntilAccepted) {
  const std::string alice_id = UniqueUser("alice");
  const std::string bob_id = UniqueUser("bob");
  std::vector<padlock::v1::Envelope> bob_saw;
  auto alice = Join(alice_id);
  auto bob = Join(bob_id, &bob_saw);
  ASSERT_TRUE(alice && bob);
  auto laptop = Link(*bob, bob_id + "-laptop");
  ASSERT_TRUE(laptop != nullptr);
  ASSERT_TRUE(alice->SendText(bob_id, "to both", absl::Seconds(20)).ok());
  ASSERT_EQ(Await(*bob, Kind::kMessage, 1).size(), 1u);
  ASSERT_EQ(Await(*laptop, Kind::kMessage, 1).size(), 1u);

  // The key-directory lets only the primary change identity; the SDK says so up front.
  absl::StatusOr<std::unique_ptr<Messenger>> refused =
      laptop->ChangeIdentity(Options(bob_id + "-laptop-refused"));
  EXPECT_TRUE(absl::IsPermissionDenied(refused.status())) << refused.status();
  laptop = nullptr;

  // The laptop is reinstalled with a new key that keeps device id 2, on a list bob's primary
  // signs. No rpc takes such a list (the key-directory moves a linked device to a new id
  // instead), so the test writes what the key-directory would store — the primary's real
  // signature included — straight into PostgreSQL.
  std::vector<padlock::v1::Envelope> laptop2_saw;
  auto laptop2 = Open(bob_id + "-laptop-reinstalled", &laptop2_saw);
  ASSERT_TRUE(laptop2 != nullptr);
  absl::StatusOr<std::string> code = laptop2->CreateLinkRequest(bob_id);
  ASSERT_TRUE(code.ok()) << code.status();
  absl::StatusOr<LinkCodeContents> keys = ParseLinkCode(*code);
  ASSERT_TRUE(keys.ok()) << keys.status();
  absl::StatusOr<padlock::v1::SignedDeviceList> current = bob->RefreshDeviceList(bob_id);
  ASSERT_TRUE(current.ok()) << current.status();
  ASSERT_EQ(current->list().devices_size(), 2);
  const uint64_t version = current->list().version() + 1;
  const padlock::v1::DeviceListEntry old_laptop = current->list().devices(1);
  std::vector<statement::DeviceListEntry> entries{
      {1, current->list().devices(0).identity_key(), current->list().devices(0).registration_id()},
      {2, keys->identity_key, keys->registration_id}};
  absl::StatusOr<std::string> encoded = statement::EncodeDeviceList(bob_id, version, entries);
  ASSERT_TRUE(encoded.ok());
  absl::StatusOr<std::string> signature =
      Sign(bob->signal_context(), bob->store().LoadLocalIdentity()->private_key, *encoded);
  ASSERT_TRUE(signature.ok());
  absl::StatusOr<std::string> written = Sql(absl::StrCat(
      "BEGIN; UPDATE devices SET identity_key = ", Bytea(keys->identity_key),
      ", registration_id = ", keys->registration_id, ", signed_prekey_id = ",
      keys->signed_prekey_id, ", signed_prekey = ", Bytea(keys->signed_prekey_public),
      ", signed_prekey_signature = ", Bytea(keys->signed_prekey_signature), " WHERE user_id = '",
      bob_id, "' AND device_id = 2; DELETE FROM one_time_prekeys WHERE user_id = '", bob_id,
      "' AND device_id = 2; UPDATE accounts SET device_list_version = ", version,
      ", device_list_signature = ", Bytea(*signature), " WHERE user_id = '", bob_id,
      "'; COMMIT;"));
  ASSERT_TRUE(written.ok()) << written.status();
  ForgetDeviceListSummary(bob_id);
  ASSERT_TRUE(laptop2->CompleteLink(absl::Seconds(20)).ok());
  EXPECT_EQ(laptop2->account()->device_id, 2u);
  ASSERT_TRUE(laptop2->Connect(absl::Seconds(20)).ok());

  // Alice's client still has bob's previous list and sessions: her send is answered STALE for
  // device 2; the refreshed list (properly signed) carries a new key for device 2.
  absl::StatusOr<std::string> held = alice->ComposeText(bob_id, "after the laptop reinstall");
  ASSERT_TRUE(held.ok()) << held.status();
  absl::StatusOr<std::vector<OutboxEntry>> outbox = alice->store().ListOutbox();
  ASSERT_TRUE(outbox.ok());
  ASSERT_EQ(outbox->size(), 1u);
  padlock::v1::OutgoingMessage queued;
  ASSERT_TRUE(queued.ParseFromString((*outbox)[0].payload));
  std::string primary_ciphertext;
  for (const padlock::v1::Recipient& r : queued.recipients()) {
    EXPECT_NE(r.registration_id(), keys->registration_id) << "a ciphertext for the new key";
    if (r.device().device_id() == 1) primary_ciphertext = r.ciphertext();
  }
  ASSERT_FALSE(primary_ciphertext.empty());
  ASSERT_TRUE(alice->FlushOutbox().ok());
  std::vector<MessengerEvent> alice_other;
  std::vector<MessengerEvent> changed =
      Await(*alice, Kind::kIdentityChanged, 1, absl::Seconds(20), &alice_other);
  ASSERT_EQ(changed.size(), 1u);
  EXPECT_EQ(changed[0].peer, bob_id);
  EXPECT_EQ(changed[0].peer_device, 2u);
  EXPECT_TRUE(absl::StrContains(changed[0].detail, "security code changed")) << changed[0].detail;
  EXPECT_TRUE(alice->IdentityHeld(bob_id));

  // Held for every device of bob (the primary's copy included) and nothing to the new key.
  for (const MessengerEvent& e : PumpFor(*alice, absl::Seconds(2))) alice_other.push_back(e);
  for (const MessengerEvent& e : alice_other) {
    EXPECT_NE(e.kind, Kind::kSent) << "sent before acceptance";
    EXPECT_NE(e.kind, Kind::kSendFailed) << e.detail;
  }
  for (Messenger* m : {bob.get(), laptop2.get()}) {
    for (const MessengerEvent& e : PumpFor(*m, absl::Seconds(1))) {
      EXPECT_NE(e.kind, Kind::kMessage) << "got before acceptance: " << e.text;
    }
  }
  EXPECT_EQ(MessageIdsFrom(laptop2_saw, alice_id).count(*held), 0u);
  EXPECT_EQ(MessageIdsFrom(bob_saw, alice_id).count(*held), 0u);
  EXPECT_EQ(*alice->OutboxSize(), 1u);
  EXPECT_EQ(**alice->store().LoadRemoteIdentity({bob_id, 2}), old_laptop.identity_key());

  // The per-device number for the laptop is the new one on both sides.
  absl::StatusOr<std::map<uint32_t, std::string>> alice_numbers = alice->SafetyNumbers(bob_id);
  absl::StatusOr<std::map<uint32_t, std::string>> laptop_numbers =
      laptop2->SafetyNumbers(alice_id);
  ASSERT_TRUE(alice_numbers.ok() && laptop_numbers.ok());
  EXPECT_EQ(alice_numbers->at(2), laptop_numbers->at(1));

  ASSERT_TRUE(alice->AcceptIdentity(bob_id).ok());
  ASSERT_EQ(Await(*alice, Kind::kSent, 1).size(), 1u);
  for (Messenger* m : {bob.get(), laptop2.get()}) {
    std::vector<MessengerEvent> got = Await(*m, Kind::kMessage, 1);
    ASSERT_EQ(got.size(), 1u);
    EXPECT_EQ(got[0].text, "after the laptop reinstall");
    EXPECT_EQ(got[0].message_id, *held);
  }
  // The primary's ciphertext went out byte for byte as first queued; only device 2's was redone.
  bool primary_seen = false;
  for (const padlock::v1::Envelope& e : bob_saw) {
    if (e.message_id() != *held) continue;
    primary_seen = true;
    EXPECT_EQ(e.ciphertext(), primary_ciphertext);
  }
  EXPECT_TRUE(primary_seen);
}

// ---------------------------------------------------------------------------------------------
// 3. A device the primary never signed for.

TEST_F(SecurityE2eTest, ADeviceInsertedIntoPostgresNeverReceivesAnything) {
  const std::string alice_id = UniqueUser("alice");
  const std::string bob_id = UniqueUser("bob");
  std::vector<padlock::v1::Envelope> bob_saw;
  auto alice = Join(alice_id);
  auto bob = Join(bob_id, &bob_saw);
  ASSERT_TRUE(alice && bob);
  ASSERT_TRUE(alice->SendText(bob_id, "first", absl::Seconds(20)).ok());
  ASSERT_EQ(Await(*bob, Kind::kMessage, 1).size(), 1u);

  // The injected device's keys, held by the test (the "attacker").
  absl::StatusOr<IdentityKeyPair> injected = GenerateIdentityKeyPair(alice->signal_context());
  ASSERT_TRUE(injected.ok());
  absl::StatusOr<SignedPreKey> spk = GenerateSignedPreKey(alice->signal_context(), *injected, 7,
                                                          0);
  ASSERT_TRUE(spk.ok());
  absl::StatusOr<std::vector<PreKey>> otk = GeneratePreKeys(alice->signal_context(), 1, 1);
  ASSERT_TRUE(otk.ok());
  absl::StatusOr<std::string> inserted = Sql(absl::StrCat(
      "BEGIN; INSERT INTO devices (user_id, device_id, identity_key, registration_id, "
      "signed_prekey_id, signed_prekey, signed_prekey_signature) VALUES ('",
      bob_id, "', 2, ", Bytea(injected->public_key), ", 4242, 7, ", Bytea(spk->public_key), ", ",
      Bytea(spk->signature), "); INSERT INTO one_time_prekeys (user_id, device_id, key_id, "
      "public_key) VALUES ('", bob_id, "', 2, 1, ", Bytea((*otk)[0].public_key),
      "); UPDATE accounts SET max_device_id = 2 WHERE user_id = '", bob_id, "'; COMMIT;"));
  ASSERT_TRUE(inserted.ok()) << inserted.status();
  ForgetDeviceListSummary(bob_id);  // the attacker controls the server side entirely
  // The server now lists it (under the old signature, which cannot cover it).
  absl::StatusOr<padlock::v1::GetDeviceListResponse> served =
      alice->gateway().GetDeviceList(bob_id);
  ASSERT_TRUE(served.ok()) << served.status();
  ASSERT_EQ(served->device_list().list().devices_size(), 2);

  // alice (who verified bob's list before): the server wants a ciphertext for device 2; her
  // client refuses to make one and reports why.
  absl::StatusOr<std::string> second = alice->SendText(bob_id, "second", absl::Seconds(20));
  ASSERT_FALSE(second.ok());
  EXPECT_TRUE(absl::IsFailedPrecondition(second.status())) << second.status();
  EXPECT_TRUE(absl::StrContains(second.status().message(), "did not sign")) << second.status();
  EXPECT_TRUE(absl::StrContains(second.status().message(), bob_id)) << second.status();
  absl::StatusOr<std::vector<HistoryMessage>> history = alice->store().ListMessages(bob_id);
  ASSERT_TRUE(history.ok());
  ASSERT_EQ(history->size(), 2u);
  EXPECT_EQ(history->back().body, "second");
  EXPECT_EQ(history->back().status, MessageStatus::kFailed);
  EXPECT_EQ(*alice->OutboxSize(), 0u);
  // No session, no trusted key, no ciphertext for the injected device, ever.
  EXPECT_FALSE(*alice->store().ContainsSession({bob_id, 2}));
  EXPECT_FALSE(alice->store().LoadRemoteIdentity({bob_id, 2})->has_value());

  // carol, who never saw bob's list, cannot even queue a message to him.
  auto carol = Join(UniqueUser("carol"));
  ASSERT_TRUE(carol != nullptr);
  absl::StatusOr<std::string> from_carol = carol->ComposeText(bob_id, "hello bob");
  EXPECT_TRUE(absl::IsDataLoss(from_carol.status())) << from_carol.status();
  EXPECT_TRUE(absl::StrContains(from_carol.status().message(), "did not sign"));
  EXPECT_EQ(*carol->OutboxSize(), 0u);
  EXPECT_FALSE(*carol->store().ContainsSession({bob_id, 2}));

  // The injected device's inbox never got an envelope; bob's real device got nothing either
  // while the server lists a device the primary did not sign (the server refuses a send that
  // skips a device it lists, the clients refuse to encrypt to it).
  EXPECT_EQ(InboxLength(bob_id, 2), 0);
  for (const MessengerEvent& e : PumpFor(*bob, absl::Seconds(2))) {
    EXPECT_NE(e.kind, Kind::kMessage) << "bob got " << e.text;
  }
  EXPECT_EQ(MessageIdsFrom(bob_saw, alice_id).size(), 1u);  // only "first"

  // Once the row is gone, alice's next message reaches bob's real device (and only it).
  ASSERT_TRUE(Sql(absl::StrCat("DELETE FROM devices WHERE user_id = '", bob_id,
                               "' AND device_id = 2;"))
                  .ok());
  ForgetDeviceListSummary(bob_id);
  absl::StatusOr<std::string> third = alice->SendText(bob_id, "third", absl::Seconds(20));
  ASSERT_TRUE(third.ok()) << third.status();
  std::vector<MessengerEvent> got = Await(*bob, Kind::kMessage, 1);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].text, "third");
  EXPECT_EQ(InboxLength(bob_id, 2), 0);
}

}  // namespace
}  // namespace padlock::client::e2e
