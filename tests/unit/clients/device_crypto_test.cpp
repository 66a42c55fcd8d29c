#include "clients/sdk/device_crypto.h"

#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "clients/sdk/content.h"
#include "gtest/gtest.h"
#include "tests/harness/harness.h"
#include "tests/unit/clients/test_device.h"

namespace padlock::client {
namespace {

using padlock::client::testing::TestDevice;
using padlock::v1::ENVELOPE_TYPE_MESSAGE;
using padlock::v1::ENVELOPE_TYPE_PREKEY_MESSAGE;
using padlock::v1::ENVELOPE_TYPE_SENDER_KEY_DISTRIBUTION;
using padlock::v1::ENVELOPE_TYPE_SENDER_KEY_MESSAGE;

Content Text(std::string body) { return Content{ContentKind::kText, std::move(body)}; }

class DeviceCryptoTest : public ::testing::Test {
 protected:
  void SetUp() override {
    absl::StatusOr<std::unique_ptr<SignalContext>> context = SignalContext::Create();
    ASSERT_TRUE(context.ok()) << context.status();
    context_ = *std::move(context);
    alice_ = std::make_unique<TestDevice>(*context_, dir_.path() + "/alice.db",
                                          RemoteAddress{"alice", 1});
    bob_ = std::make_unique<TestDevice>(*context_, dir_.path() + "/bob.db",
                                        RemoteAddress{"bob", 1});
    ASSERT_FALSE(HasFatalFailure());
  }
  void TearDown() override {
    carol_.reset();
    bob_.reset();
    alice_.reset();
  }

  Ciphertext MustEncrypt(TestDevice& from, TestDevice& to, const std::string& text) {
    absl::StatusOr<Ciphertext> c = from.crypto().Encrypt(to.address(), Text(text));
    EXPECT_TRUE(c.ok()) << c.status();
    return c.ok() ? *c : Ciphertext{};
  }
  std::string MustDecrypt(TestDevice& at, TestDevice& from, const Ciphertext& c) {
    absl::StatusOr<Content> content = at.crypto().Decrypt(from.address(), c);
    EXPECT_TRUE(content.ok()) << content.status();
    if (!content.ok()) return "<error>";
    EXPECT_EQ(content->kind, ContentKind::kText);
    return content->body;
  }
  // Alice starts a session with Bob from his bundle.
  void Connect() { ASSERT_TRUE(alice_->crypto().ProcessPreKeyBundle(bob_->ClaimBundle()).ok()); }

  padlock::testing::TempDir dir_;
  std::unique_ptr<SignalContext> context_;
  std::unique_ptr<TestDevice> alice_;
  std::unique_ptr<TestDevice> bob_;
  std::unique_ptr<TestDevice> carol_;
};

TEST_F(DeviceCryptoTest, EncryptWithoutSessionIsFailedPrecondition) {
  EXPECT_EQ(alice_->crypto().Encrypt(bob_->address(), Text("hi")).status().code(),
            absl::StatusCode::kFailedPrecondition);
}

TEST_F(DeviceCryptoTest, FirstMessageIsPreKeyMessageAndConsumesOneTimePreKey) {
  Connect();
  const uint32_t claimed = bob_->pre_keys()[0].id;
  ASSERT_TRUE(*bob_->store().ContainsPreKey(claimed));
  const Ciphertext first = MustEncrypt(*alice_, *bob_, "hello bob");
  EXPECT_EQ(first.type, ENVELOPE_TYPE_PREKEY_MESSAGE);
  EXPECT_EQ(MustDecrypt(*bob_, *alice_, first), "hello bob");
  EXPECT_FALSE(*bob_->store().ContainsPreKey(claimed));
  EXPECT_EQ(*bob_->store().CountPreKeys(), 4);
  // Bob trusted Alice's identity on first use.
  EXPECT_EQ(bob_->store().LoadRemoteIdentity(alice_->address())->value_or(""),
            alice_->IdentityKey());
}

TEST_F(DeviceCryptoTest, SenderKeepsSendingPreKeyMessagesUntilReplyThenNormal) {
  Connect();
  const Ciphertext m1 = MustEncrypt(*alice_, *bob_, "one");
  const Ciphertext m2 = MustEncrypt(*alice_, *bob_, "two");
  EXPECT_EQ(m1.type, ENVELOPE_TYPE_PREKEY_MESSAGE);
  EXPECT_EQ(m2.type, ENVELOPE_TYPE_PREKEY_MESSAGE);
  EXPECT_EQ(MustDecrypt(*bob_, *alice_, m1), "one");
  EXPECT_EQ(MustDecrypt(*bob_, *alice_, m2), "two");
  const Ciphertext reply = MustEncrypt(*bob_, *alice_, "hi alice");
  EXPECT_EQ(reply.type, ENVELOPE_TYPE_MESSAGE);
  EXPECT_EQ(MustDecrypt(*alice_, *bob_, reply), "hi alice");
  const Ciphertext m3 = MustEncrypt(*alice_, *bob_, "three");
  EXPECT_EQ(m3.type, ENVELOPE_TYPE_MESSAGE);
  EXPECT_EQ(MustDecrypt(*bob_, *alice_, m3), "three");
}

TEST_F(DeviceCryptoTest, ManyMessagesBothWays) {
  Connect();
  for (int round = 0; round < 20; ++round) {
    const std::string a = absl::StrCat("a", round);
    const std::string b = absl::StrCat("b", round);
    EXPECT_EQ(MustDecrypt(*bob_, *alice_, MustEncrypt(*alice_, *bob_, a)), a);
    // Sometimes two in a row from the same side (no ratchet step in between).
    if (round % 3 == 0) {
      EXPECT_EQ(MustDecrypt(*bob_, *alice_, MustEncrypt(*alice_, *bob_, a + "x")), a + "x");
    }
    EXPECT_EQ(MustDecrypt(*alice_, *bob_, MustEncrypt(*bob_, *alice_, b)), b);
  }
}

TEST_F(DeviceCryptoTest, OutOfOrderDeliveryDecryptsEverything) {
  Connect();
  EXPECT_EQ(MustDecrypt(*bob_, *alice_, MustEncrypt(*alice_, *bob_, "start")), "start");
  EXPECT_EQ(MustDecrypt(*alice_, *bob_, MustEncrypt(*bob_, *alice_, "ack")), "ack");
  std::vector<Ciphertext> sent;
  for (int i = 0; i < 10; ++i) sent.push_back(MustEncrypt(*alice_, *bob_, absl::StrCat("m", i)));
  const std::vector<int> order = {9, 0, 5, 3, 1, 8, 2, 7, 4, 6};
  for (int i : order) EXPECT_EQ(MustDecrypt(*bob_, *alice_, sent[i]), absl::StrCat("m", i));
}

TEST_F(DeviceCryptoTest, ReplayIsAlreadyExists) {
  Connect();
  const Ciphertext first = MustEncrypt(*alice_, *bob_, "once");
  EXPECT_EQ(MustDecrypt(*bob_, *alice_, first), "once");
  EXPECT_EQ(bob_->crypto().Decrypt(alice_->address(), first).status().code(),
            absl::StatusCode::kAlreadyExists);
  const Ciphertext reply = MustEncrypt(*bob_, *alice_, "r");
  EXPECT_EQ(MustDecrypt(*alice_, *bob_, reply), "r");
  EXPECT_EQ(alice_->crypto().Decrypt(bob_->address(), reply).status().code(),
            absl::StatusCode::kAlreadyExists);
  // A normal (type 2) message replayed.
  const Ciphertext normal = MustEncrypt(*alice_, *bob_, "n");
  ASSERT_EQ(normal.type, ENVELOPE_TYPE_MESSAGE);
  EXPECT_EQ(MustDecrypt(*bob_, *alice_, normal), "n");
  EXPECT_EQ(bob_->crypto().Decrypt(alice_->address(), normal).status().code(),
            absl::StatusCode::kAlreadyExists);
}

TEST_F(DeviceCryptoTest, TamperedCiphertextIsDataLossAndSessionSurvives) {
  Connect();
  EXPECT_EQ(MustDecrypt(*bob_, *alice_, MustEncrypt(*alice_, *bob_, "start")), "start");
  EXPECT_EQ(MustDecrypt(*alice_, *bob_, MustEncrypt(*bob_, *alice_, "ack")), "ack");
  const Ciphertext good = MustEncrypt(*alice_, *bob_, "secret");
  ASSERT_EQ(good.type, ENVELOPE_TYPE_MESSAGE);
  // Flip a bit in the body (past the version byte and the protobuf header) and in the MAC.
  for (size_t position : {good.bytes.size() / 2, good.bytes.size() - 1}) {
    Ciphertext bad = good;
    bad.bytes[position] ^= 0x01;
    EXPECT_EQ(bob_->crypto().Decrypt(alice_->address(), bad).status().code(),
              absl::StatusCode::kDataLoss)
        << "position " << position;
  }
  Ciphertext truncated = good;
  truncated.bytes.resize(good.bytes.size() / 3);
  EXPECT_EQ(bob_->crypto().Decrypt(alice_->address(), truncated).status().code(),
            absl::StatusCode::kDataLoss);
  // The untouched message still decrypts, and the conversation goes on.
  EXPECT_EQ(MustDecrypt(*bob_, *alice_, good), "secret");
  EXPECT_EQ(MustDecrypt(*alice_, *bob_, MustEncrypt(*bob_, *alice_, "still here")), "still here");
}

TEST_F(DeviceCryptoTest, TamperedFirstMessageConsumesNothing) {
  Connect();
  const uint32_t claimed = bob_->pre_keys()[0].id;
  const Ciphertext first = MustEncrypt(*alice_, *bob_, "first");
  ASSERT_EQ(first.type, ENVELOPE_TYPE_PREKEY_MESSAGE);
  Ciphertext bad = first;
  // Inside the embedded signal message (the pre-key message's trailing fields are the unsigned
  // registration and signed-prekey ids, which libsignal does not authenticate).
  bad.bytes[bad.bytes.size() / 2] ^= 0x10;
  EXPECT_EQ(bob_->crypto().Decrypt(alice_->address(), bad).status().code(),
            absl::StatusCode::kDataLoss);
  // Nothing was written: no session, the one-time prekey is still there, no identity recorded.
  EXPECT_FALSE(*bob_->store().ContainsSession(alice_->address()));
  EXPECT_TRUE(*bob_->store().ContainsPreKey(claimed));
  EXPECT_FALSE(bob_->store().LoadRemoteIdentity(alice_->address())->has_value());
  EXPECT_EQ(MustDecrypt(*bob_, *alice_, first), "first");
  EXPECT_FALSE(*bob_->store().ContainsPreKey(claimed));
}

TEST_F(DeviceCryptoTest, ThousandEnvelopesOutOfOrderAllDecrypt) {
  Connect();
  EXPECT_EQ(MustDecrypt(*bob_, *alice_, MustEncrypt(*alice_, *bob_, "start")), "start");
  EXPECT_EQ(MustDecrypt(*alice_, *bob_, MustEncrypt(*bob_, *alice_, "ack")), "ack");
  constexpr int kCount = 1000;
  std::vector<Ciphertext> sent;
  sent.reserve(kCount);
  for (int i = 0; i < kCount; ++i) sent.push_back(MustEncrypt(*alice_, *bob_, absl::StrCat(i)));
  // A fixed permutation (multiplication by a unit mod 1000), so a failure is reproducible.
  int decrypted = 0;
  for (int k = 0; k < kCount; ++k) {
    const int i = (k * 337 + 11) % kCount;
    absl::StatusOr<Content> content = bob_->crypto().Decrypt(alice_->address(), sent[i]);
    ASSERT_TRUE(content.ok()) << i << ": " << content.status();
    EXPECT_EQ(content->body, absl::StrCat(i));
    ++decrypted;
  }
  EXPECT_EQ(decrypted, kCount);
}

TEST_F(DeviceCryptoTest, CiphertextDoesNotContainPlaintext) {
  Connect();
  const std::string secret = "the eagle lands at midnight";
  const Ciphertext first = MustEncrypt(*alice_, *bob_, secret);
  EXPECT_EQ(first.bytes.find(secret), std::string::npos);
  EXPECT_EQ(first.bytes.find("eagle"), std::string::npos);
  EXPECT_EQ(MustDecrypt(*bob_, *alice_, first), secret);
}

TEST_F(DeviceCryptoTest, WrongEnvelopeTypeIsRejected) {
  Connect();
  Ciphertext first = MustEncrypt(*alice_, *bob_, "x");
  first.type = ENVELOPE_TYPE_SENDER_KEY_MESSAGE;
  EXPECT_EQ(bob_->crypto().Decrypt(alice_->address(), first).status().code(),
            absl::StatusCode::kInvalidArgument);
  first.type = ENVELOPE_TYPE_MESSAGE;  // a pre-key message claimed as a normal one
  EXPECT_EQ(bob_->crypto().Decrypt(alice_->address(), first).status().code(),
            absl::StatusCode::kDataLoss);
}

TEST_F(DeviceCryptoTest, SessionsSurviveReopeningTheDatabase) {
  Connect();
  EXPECT_EQ(MustDecrypt(*bob_, *alice_, MustEncrypt(*alice_, *bob_, "before")), "before");
  const Ciphertext in_flight = MustEncrypt(*bob_, *alice_, "in flight");
  alice_->Reopen();
  bob_->Reopen();
  ASSERT_FALSE(HasFatalFailure());
  EXPECT_EQ(MustDecrypt(*alice_, *bob_, in_flight), "in flight");
  const Ciphertext after = MustEncrypt(*alice_, *bob_, "after");
  EXPECT_EQ(after.type, ENVELOPE_TYPE_MESSAGE);
  EXPECT_EQ(MustDecrypt(*bob_, *alice_, after), "after");
}

TEST_F(DeviceCryptoTest, EncryptedDatabaseSessionsSurviveReopen) {
  carol_ = std::make_unique<TestDevice>(*context_, dir_.path() + "/carol.db",
                                        RemoteAddress{"carol", 1}, 5, "carol's passphrase");
  ASSERT_FALSE(HasFatalFailure());
  ASSERT_TRUE(alice_->crypto().ProcessPreKeyBundle(carol_->ClaimBundle()).ok());
  EXPECT_EQ(MustDecrypt(*carol_, *alice_, MustEncrypt(*alice_, *carol_, "a")), "a");
  carol_->Reopen();
  ASSERT_FALSE(HasFatalFailure());
  EXPECT_EQ(MustDecrypt(*alice_, *carol_, MustEncrypt(*carol_, *alice_, "b")), "b");
}

TEST_F(DeviceCryptoTest, BundleWithoutOneTimePreKeyWorks) {
  bob_ = std::make_unique<TestDevice>(*context_, dir_.path() + "/bob2.db",
                                      RemoteAddress{"bob", 2}, /*prekeys=*/0);
  ASSERT_FALSE(HasFatalFailure());
  const padlock::v1::PreKeyBundle bundle = bob_->ClaimBundle();
  ASSERT_FALSE(bundle.has_one_time_prekey());
  ASSERT_TRUE(alice_->crypto().ProcessPreKeyBundle(bundle).ok());
  EXPECT_EQ(MustDecrypt(*bob_, *alice_, MustEncrypt(*alice_, *bob_, "no otk")), "no otk");
}

TEST_F(DeviceCryptoTest, BadSignedPreKeySignatureIsInvalidArgument) {
  padlock::v1::PreKeyBundle bundle = bob_->ClaimBundle();
  std::string signature = bundle.signed_prekey().signature();
  signature[10] ^= 0x40;
  bundle.mutable_signed_prekey()->set_signature(signature);
  EXPECT_EQ(alice_->crypto().ProcessPreKeyBundle(bundle).code(),
            absl::StatusCode::kInvalidArgument);
  bundle.set_identity_key("short");
  EXPECT_EQ(alice_->crypto().ProcessPreKeyBundle(bundle).code(),
            absl::StatusCode::kInvalidArgument);
}

TEST_F(DeviceCryptoTest, ChangedIdentityIsFailedPreconditionUntilAccepted) {
  Connect();
  EXPECT_EQ(MustDecrypt(*bob_, *alice_, MustEncrypt(*alice_, *bob_, "hi")), "hi");
  // Bob reinstalls: same address, new identity.
  bob_ = std::make_unique<TestDevice>(*context_, dir_.path() + "/bob-reinstalled.db",
                                      RemoteAddress{"bob", 1});
  ASSERT_FALSE(HasFatalFailure());
  const padlock::v1::PreKeyBundle bundle = bob_->ClaimBundle();
  EXPECT_EQ(alice_->crypto().ProcessPreKeyBundle(bundle).code(),
            absl::StatusCode::kFailedPrecondition);
  ASSERT_TRUE(alice_->store().AcceptRemoteIdentity(bob_->address(), bob_->IdentityKey()).ok());
  ASSERT_TRUE(alice_->crypto().ProcessPreKeyBundle(bundle).ok());
  EXPECT_EQ(MustDecrypt(*bob_, *alice_, MustEncrypt(*alice_, *bob_, "again")), "again");
}

TEST_F(DeviceCryptoTest, NonTextContentKindsTravelInsideTheCiphertext) {
  Connect();
  for (ContentKind kind : {ContentKind::kReceipt, ContentKind::kTyping, ContentKind::kCallSignal,
                           ContentKind::kGroupKeyDistribution}) {
    absl::StatusOr<Ciphertext> c = alice_->crypto().Encrypt(bob_->address(), {kind, "payload"});
    ASSERT_TRUE(c.ok()) << c.status();
    absl::StatusOr<Content> content = bob_->crypto().Decrypt(alice_->address(), *c);
    ASSERT_TRUE(content.ok()) << content.status();
    EXPECT_EQ(content->kind, kind);
    EXPECT_EQ(content->body, "payload");
  }
}

TEST_F(DeviceCryptoTest, CiphertextSizesFallIntoBucketClasses) {
  Connect();
  EXPECT_EQ(MustDecrypt(*bob_, *alice_, MustEncrypt(*alice_, *bob_, "start")), "start");
  EXPECT_EQ(MustDecrypt(*alice_, *bob_, MustEncrypt(*bob_, *alice_, "ack")), "ack");
  // Bodies 1..50 bytes all fit the 64-byte bucket: identical ciphertext sizes.
  size_t small_size = 0;
  for (size_t n = 1; n <= 50; n += 7) {
    const Ciphertext c = MustEncrypt(*alice_, *bob_, std::string(n, 'x'));
    ASSERT_EQ(c.type, ENVELOPE_TYPE_MESSAGE);
    if (small_size == 0) small_size = c.bytes.size();
    EXPECT_EQ(c.bytes.size(), small_size) << n;
    EXPECT_EQ(MustDecrypt(*bob_, *alice_, c), std::string(n, 'x'));
  }
  // 100..120 bytes: the 128 bucket, one size, larger than the small class.
  size_t medium_size = 0;
  for (size_t n = 100; n <= 120; n += 5) {
    const Ciphertext c = MustEncrypt(*alice_, *bob_, std::string(n, 'y'));
    if (medium_size == 0) medium_size = c.bytes.size();
    EXPECT_EQ(c.bytes.size(), medium_size) << n;
  }
  EXPECT_GT(medium_size, small_size);
}

TEST_F(DeviceCryptoTest, GroupOfThreeWithSenderKeys) {
  carol_ = std::make_unique<TestDevice>(*context_, dir_.path() + "/carol.db",
                                        RemoteAddress{"carol", 1});
  ASSERT_FALSE(HasFatalFailure());
  const std::string group = "group-1234";
  std::vector<TestDevice*> members = {alice_.get(), bob_.get(), carol_.get()};
  // Each member distributes its sender key to the others (in reality inside 1:1 messages).
  for (TestDevice* sender : members) {
    absl::StatusOr<Ciphertext> skdm = sender->crypto().GroupDistribution(group);
    ASSERT_TRUE(skdm.ok()) << skdm.status();
    EXPECT_EQ(skdm->type, ENVELOPE_TYPE_SENDER_KEY_DISTRIBUTION);
    for (TestDevice* receiver : members) {
      if (receiver == sender) continue;
      ASSERT_TRUE(
          receiver->crypto().ProcessGroupDistribution(group, sender->address(), *skdm).ok());
    }
  }
  for (int round = 0; round < 3; ++round) {
    for (TestDevice* sender : members) {
      const std::string text = absl::StrCat(sender->address().user_id, " says ", round);
      absl::StatusOr<Ciphertext> c = sender->crypto().GroupEncrypt(group, Text(text));
      ASSERT_TRUE(c.ok()) << c.status();
      EXPECT_EQ(c->type, ENVELOPE_TYPE_SENDER_KEY_MESSAGE);
      for (TestDevice* receiver : members) {
        if (receiver == sender) continue;
        absl::StatusOr<Content> content =
            receiver->crypto().GroupDecrypt(group, sender->address(), *c);
        ASSERT_TRUE(content.ok()) << content.status();
        EXPECT_EQ(content->body, text);
        // Replays are rejected.
        EXPECT_EQ(receiver->crypto().GroupDecrypt(group, sender->address(), *c).status().code(),
                  absl::StatusCode::kAlreadyExists);
      }
    }
  }
}

TEST_F(DeviceCryptoTest, GroupMessageWithoutSenderKeyIsFailedPrecondition) {
  const std::string group = "g";
  absl::StatusOr<Ciphertext> skdm = alice_->crypto().GroupDistribution(group);
  ASSERT_TRUE(skdm.ok());
  absl::StatusOr<Ciphertext> c = alice_->crypto().GroupEncrypt(group, Text("hi"));
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(bob_->crypto().GroupDecrypt(group, alice_->address(), *c).status().code(),
            absl::StatusCode::kFailedPrecondition);
  ASSERT_TRUE(bob_->crypto().ProcessGroupDistribution(group, alice_->address(), *skdm).ok());
  Ciphertext tampered = *c;
  tampered.bytes[tampered.bytes.size() / 2] ^= 0x01;
  EXPECT_EQ(bob_->crypto().GroupDecrypt(group, alice_->address(), tampered).status().code(),
            absl::StatusCode::kDataLoss);
  absl::StatusOr<Content> content = bob_->crypto().GroupDecrypt(group, alice_->address(), *c);
  ASSERT_TRUE(content.ok()) << content.status();
  EXPECT_EQ(content->body, "hi");
}

}  // namespace
}  // namespace padlock::client
