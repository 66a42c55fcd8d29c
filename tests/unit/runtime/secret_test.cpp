#include "services/common/runtime/secret.h"

#include <string>

#include "absl/strings/escaping.h"
#include "gtest/gtest.h"

namespace padlock::runtime {
namespace {

TEST(ParseSecret, AcceptsHexAndBase64OfAtLeast32Bytes) {
  const std::string bytes(32, '\x5a');
  EXPECT_EQ(*ParseSecret(absl::BytesToHexString(bytes), "V"), bytes);
  EXPECT_EQ(*ParseSecret(absl::Base64Escape(bytes), "V"), bytes);
  EXPECT_EQ(*ParseSecret(absl::WebSafeBase64Escape(bytes), "V"), bytes);
}

TEST(ParseSecret, RefusesShortOrMalformedValuesNamingTheVariableNotTheValue) {
  absl::StatusOr<std::string> short_secret =
      ParseSecret(absl::BytesToHexString(std::string(31, 'x')), "PADLOCK_TOKEN_SECRET");
  ASSERT_FALSE(short_secret.ok());
  EXPECT_EQ(short_secret.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(short_secret.status().message().find("PADLOCK_TOKEN_SECRET"), std::string::npos);
  EXPECT_NE(short_secret.status().message().find("31 bytes"), std::string::npos);
  absl::StatusOr<std::string> garbage = ParseSecret("not a secret!", "PADLOCK_DEDUPE_SECRET");
  ASSERT_FALSE(garbage.ok());
  EXPECT_EQ(garbage.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(garbage.status().message().find("PADLOCK_DEDUPE_SECRET"), std::string::npos);
  EXPECT_EQ(garbage.status().message().find("not a secret"), std::string::npos);
}

}  // namespace
}  // namespace padlock::runtime
