// DedupeIds: the keyed ids that replace "<sender>:<device>:<message id>" in Redis.
#include "services/message_queue/dedupe_id.h"

#include <gtest/gtest.h>

#include <string>

#include "absl/strings/escaping.h"

namespace padlock::message_queue {
namespace {

const std::string kSecret(32, 's');
const std::string kOtherSecret(32, 't');
const std::string kMessageId(16, 'm');

TEST(DedupeIds, SameInputsGiveTheSameSixteenByteId) {
  DedupeIds a(kSecret);
  DedupeIds b(kSecret);  // another replica with the same secret
  const std::string id = a.ForSend("alice", 1, kMessageId);
  EXPECT_EQ(id.size(), DedupeIds::kIdBytes);
  EXPECT_EQ(a.ForSend("alice", 1, kMessageId), id);
  EXPECT_EQ(b.ForSend("alice", 1, kMessageId), id);
  EXPECT_EQ(a.key_id(), b.key_id());
}

TEST(DedupeIds, MatchesHmacSha256OfTheDocumentedInput) {
  // HMAC-SHA256(32 × 's', "padlock-dedupe-v1\0" · u32be(5) · "alice" · u32be(1) · 16 × 'm'),
  // first 16 bytes (computed with `openssl dgst -sha256 -mac HMAC`): pins the derivation, so a
  // change that would split replicas of two versions during an upgrade cannot go unnoticed.
  EXPECT_EQ(absl::BytesToHexString(DedupeIds(kSecret).ForSend("alice", 1, kMessageId)),
            "a9a8e6b7b563996828bc9380275a14dd");
}

TEST(DedupeIds, EachInputChangesTheId) {
  DedupeIds ids(kSecret);
  const std::string id = ids.ForSend("alice", 1, kMessageId);
  EXPECT_NE(DedupeIds(kOtherSecret).ForSend("alice", 1, kMessageId), id);
  EXPECT_NE(ids.ForSend("alicf", 1, kMessageId), id);
  EXPECT_NE(ids.ForSend("alice", 2, kMessageId), id);
  EXPECT_NE(ids.ForSend("alice", 1, std::string(15, 'm') + "n"), id);
  EXPECT_NE(DedupeIds(kOtherSecret).key_id(), DedupeIds(kSecret).key_id());
}

TEST(DedupeIds, FieldBoundariesCannotBeShifted) {
  // Moving a byte from the user to the message id changes the input: the user is
  // length-prefixed.
  DedupeIds ids(kSecret);
  EXPECT_NE(ids.ForSend("ab", 1, kMessageId), ids.ForSend("a", 1, "b" + kMessageId));
}

TEST(DedupeIds, IdRevealsNeitherSenderNorMessageId) {
  DedupeIds ids(kSecret);
  const std::string id = ids.ForSend("alice", 1, kMessageId);
  const std::string hex = absl::BytesToHexString(id);
  EXPECT_EQ(id.find("alice"), std::string::npos);
  EXPECT_EQ(hex.find(absl::BytesToHexString("alice")), std::string::npos);
  EXPECT_EQ(id.find(kMessageId.substr(0, 4)), std::string::npos);
}

TEST(DedupeIds, EmptySecretDrawsARandomOnePerObject) {
  DedupeIds a("");
  DedupeIds b("");
  EXPECT_EQ(a.ForSend("alice", 1, kMessageId), a.ForSend("alice", 1, kMessageId));
  EXPECT_NE(a.ForSend("alice", 1, kMessageId), b.ForSend("alice", 1, kMessageId));
}

}  // namespace
}  // namespace padlock::message_queue
