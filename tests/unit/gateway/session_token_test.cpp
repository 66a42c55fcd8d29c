#include "services/gateway/session_token.h"

#include <gtest/gtest.h>

#include <string>

#include "absl/strings/escaping.h"

namespace padlock::gateway {
namespace {

const std::string kSecret(32, 'a');
const std::string kOther(32, 'b');
const absl::Time kNow = absl::FromUnixSeconds(1'800'000'000);

SessionClaims Claims() {
  SessionClaims c;
  c.user_id = "alice";
  c.device_id = 2;
  c.device_list_version = 7;
  c.expires_at = kNow + absl::Hours(1);
  return c;
}

void ExpectInvalid(const absl::StatusOr<SessionClaims>& result) {
  ASSERT_FALSE(result.ok());
  EXPECT_EQ(result.status().code(), absl::StatusCode::kUnauthenticated);
  EXPECT_EQ(result.status().message(), kInvalidTokenMessage);
}

TEST(SessionTokens, ValidTokenRoundTrips) {
  SessionTokens tokens(kSecret, "");
  const std::string token = tokens.Issue(Claims());
  absl::StatusOr<SessionClaims> claims = tokens.Verify(token, kNow);
  ASSERT_TRUE(claims.ok()) << claims.status();
  EXPECT_EQ(claims->user_id, "alice");
  EXPECT_EQ(claims->device_id, 2u);
  EXPECT_EQ(claims->device_list_version, 7u);
  EXPECT_EQ(claims->expires_at, kNow + absl::Hours(1));
  EXPECT_EQ(claims->key_id, tokens.current_key_id());
  // base64url alphabet only.
  EXPECT_EQ(token.find_first_of("+/="), std::string::npos);
}

TEST(SessionTokens, ExpiredTokenIsRefused) {
  SessionTokens tokens(kSecret, "");
  const std::string token = tokens.Issue(Claims());
  EXPECT_TRUE(tokens.Verify(token, kNow + absl::Hours(1) - absl::Milliseconds(1)).ok());
  ExpectInvalid(tokens.Verify(token, kNow + absl::Hours(1)));
}

TEST(SessionTokens, EveryTamperedByteIsRefused) {
  SessionTokens tokens(kSecret, "");
  std::string raw;
  ASSERT_TRUE(absl::WebSafeBase64Unescape(tokens.Issue(Claims()), &raw));
  for (size_t i = 0; i < raw.size(); ++i) {
    std::string tampered = raw;
    tampered[i] = static_cast<char>(tampered[i] ^ 0x01);
    ExpectInvalid(tokens.Verify(absl::WebSafeBase64Escape(tampered), kNow));
  }
}

TEST(SessionTokens, WrongSecretIsRefused) {
  SessionTokens issuer(kOther, "");
  SessionTokens verifier(kSecret, "");
  ExpectInvalid(verifier.Verify(issuer.Issue(Claims()), kNow));
}

TEST(SessionTokens, PreviousSecretIsAcceptedAfterRotation) {
  SessionTokens before(kOther, "");
  SessionTokens after(kSecret, kOther);
  const std::string old_token = before.Issue(Claims());
  absl::StatusOr<SessionClaims> claims = after.Verify(old_token, kNow);
  ASSERT_TRUE(claims.ok()) << claims.status();
  EXPECT_EQ(claims->key_id, before.current_key_id());
  // New tokens are signed with the new secret, which the old replica does not know.
  ExpectInvalid(before.Verify(after.Issue(Claims()), kNow));
  // Once the previous secret is dropped, old tokens stop working.
  SessionTokens later(kSecret, "");
  ExpectInvalid(later.Verify(old_token, kNow));
}

TEST(SessionTokens, MalformedTokensAreRefused) {
  SessionTokens tokens(kSecret, "");
  const std::string good = tokens.Issue(Claims());
  ExpectInvalid(tokens.Verify("", kNow));
  ExpectInvalid(tokens.Verify("not base64 !!", kNow));
  ExpectInvalid(tokens.Verify(good.substr(0, good.size() - 4), kNow));
  ExpectInvalid(tokens.Verify(good + "AAAA", kNow));
  ExpectInvalid(tokens.Verify(std::string(5000, 'A'), kNow));
  ExpectInvalid(tokens.Verify(absl::WebSafeBase64Escape(std::string(60, '\0')), kNow));
}

}  // namespace
}  // namespace padlock::gateway
