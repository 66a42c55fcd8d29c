#include "clients/sdk/safety_number.h"

#include <memory>
#include <string>

#include "absl/status/status.h"
#include "clients/sdk/identity.h"
#include "gtest/gtest.h"

namespace padlock::client {
namespace {

// libsignal-protocol-c's own fingerprint test vectors (tests/test_fingerprint.c).
const std::string kAliceIdentity(
    "\x05\x06\x86\x3b\xc6\x6d\x02\xb4\x0d\x27\xb8\xd4\x9c\xa7\xc0\x9e\x92\x39\x23\x6f\x9d\x7d"
    "\x25\xd6\xfc\xca\x5c\xe1\x3c\x70\x64\xd8\x68",
    33);
const std::string kBobIdentity(
    "\x05\xf7\x81\xb6\xfb\x32\xfe\xd9\xba\x1c\xf2\xde\x97\x8d\x4d\x5d\xa2\x8d\xc3\x40\x46\xae"
    "\x81\x44\x02\xb5\xc0\xdb\xd9\x6f\xda\x90\x7b",
    33);
constexpr char kDisplayable[] = "300354477692869396892869876765458257569162576843440918079131";

class SafetyNumberTest : public ::testing::Test {
 protected:
  void SetUp() override {
    absl::StatusOr<std::unique_ptr<SignalContext>> context = SignalContext::Create();
    ASSERT_TRUE(context.ok()) << context.status();
    context_ = *std::move(context);
  }
  std::unique_ptr<SignalContext> context_;
};

TEST_F(SafetyNumberTest, MatchesLibsignalKnownAnswer) {
  absl::StatusOr<std::string> alice =
      SafetyNumber(*context_, "+14152222222", kAliceIdentity, "+14153333333", kBobIdentity);
  ASSERT_TRUE(alice.ok()) << alice.status();
  EXPECT_EQ(*alice, kDisplayable);
  absl::StatusOr<std::string> bob =
      SafetyNumber(*context_, "+14153333333", kBobIdentity, "+14152222222", kAliceIdentity);
  ASSERT_TRUE(bob.ok()) << bob.status();
  EXPECT_EQ(*bob, kDisplayable);
}

TEST_F(SafetyNumberTest, BothSidesAgreeOnSixtyDigitsAndChangedIdentityChangesIt) {
  absl::StatusOr<IdentityKeyPair> alice = GenerateIdentityKeyPair(*context_);
  absl::StatusOr<IdentityKeyPair> bob = GenerateIdentityKeyPair(*context_);
  absl::StatusOr<IdentityKeyPair> bob_new = GenerateIdentityKeyPair(*context_);
  ASSERT_TRUE(alice.ok() && bob.ok() && bob_new.ok());
  absl::StatusOr<std::string> at_alice =
      SafetyNumber(*context_, "alice", alice->public_key, "bob", bob->public_key);
  absl::StatusOr<std::string> at_bob =
      SafetyNumber(*context_, "bob", bob->public_key, "alice", alice->public_key);
  ASSERT_TRUE(at_alice.ok() && at_bob.ok());
  EXPECT_EQ(*at_alice, *at_bob);
  ASSERT_EQ(at_alice->size(), 60u);
  for (char c : *at_alice) EXPECT_TRUE(c >= '0' && c <= '9') << c;
  absl::StatusOr<std::string> changed =
      SafetyNumber(*context_, "alice", alice->public_key, "bob", bob_new->public_key);
  ASSERT_TRUE(changed.ok());
  EXPECT_NE(*changed, *at_alice);
}

TEST_F(SafetyNumberTest, RejectsBadInput) {
  EXPECT_EQ(SafetyNumber(*context_, "a", "short", "b", kBobIdentity).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(SafetyNumber(*context_, "", kAliceIdentity, "b", kBobIdentity).status().code(),
            absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace padlock::client
