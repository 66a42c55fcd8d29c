#include "common/statement/ids.h"

#include <string>

#include "gtest/gtest.h"

namespace padlock::statement {
namespace {

TEST(UserIds, AcceptsE164PhoneNumbers) {
  for (const char* id : {"+14155550123", "+4930123456", "+1234567", "+123456789012345"}) {
    EXPECT_TRUE(IsPhoneNumberUserId(id)) << id;
    EXPECT_TRUE(IsValidUserId(id)) << id;
    EXPECT_FALSE(IsUsernameUserId(id)) << id;
  }
}

TEST(UserIds, RejectsMalformedPhoneNumbers) {
  for (const char* id : {
           "+123456",           // 6 digits: too short
           "+1234567890123456", // 16 digits: too long
           "+0123456789",       // leading zero
           "+1415555012a",      // letter
           "+1 415555012",      // space
           "++14155550123",     // two plus signs
           "+",                 // nothing
       }) {
    EXPECT_FALSE(IsPhoneNumberUserId(id)) << id;
    EXPECT_FALSE(IsValidUserId(id)) << id;
  }
}

// The username syntax [a-z0-9._-]{3,32} (DESIGN.md §3) admits all-digit names, so a phone number
// without its "+" is a valid *username*, never a phone number.
TEST(UserIds, PhoneNumberWithoutPlusIsAUsernameNotAPhoneNumber) {
  EXPECT_FALSE(IsPhoneNumberUserId("14155550123"));
  EXPECT_TRUE(IsUsernameUserId("14155550123"));
  EXPECT_TRUE(IsValidUserId("14155550123"));
}

TEST(UserIds, AcceptsUsernames) {
  const std::string longest(32, 'z');
  for (const std::string& id :
       {std::string("bob"), std::string("alice.smith"), std::string("a_b-c.d"), std::string("123"),
        std::string("a.b"), longest}) {
    EXPECT_TRUE(IsUsernameUserId(id)) << id;
    EXPECT_TRUE(IsValidUserId(id)) << id;
    EXPECT_FALSE(IsPhoneNumberUserId(id)) << id;
  }
}

TEST(UserIds, RejectsMalformedUsernames) {
  const std::string too_long(33, 'a');
  for (const std::string& id : {
           std::string(""), std::string("ab"), too_long, std::string("Alice"),
           std::string("al ice"), std::string("al@ice"), std::string("alice/"),
           std::string("al\xc3\xa9""ce"), std::string("ali\0ce", 6), std::string("alice\n"),
       }) {
    EXPECT_FALSE(IsUsernameUserId(id)) << id;
    EXPECT_FALSE(IsValidUserId(id)) << id;
  }
}

}  // namespace
}  // namespace padlock::statement
