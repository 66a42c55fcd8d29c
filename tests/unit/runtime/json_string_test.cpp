#include "services/common/runtime/json_string.h"

#include <google/protobuf/stubs/common.h>

#include <random>
#include <string>

#include "gtest/gtest.h"
#include "tests/unit/runtime/runtime_test_util.h"

namespace padlock::runtime {
namespace {

constexpr char kReplacement[] = "\xEF\xBF\xBD";  // U+FFFD

// The string `value` decodes to when escaped and read back by a JSON parser; a test failure when
// the escaped form is not valid JSON or not valid UTF-8 (checked by protobuf's own validator, not
// by the escaper's).
std::string RoundTrip(const std::string& value) {
  const std::string escaped = JsonString(value);
  EXPECT_TRUE(google::protobuf::internal::IsStructurallyValidUTF8(escaped.data(),
                                                                  static_cast<int>(escaped.size())))
      << "not UTF-8: " << escaped;
  const auto parsed = testing::ParseJsonObject("{\"v\":" + escaped + "}");
  EXPECT_TRUE(parsed.has_value()) << "not JSON: " << escaped;
  if (!parsed.has_value()) return "";
  return parsed->at("v");
}

TEST(JsonString, EscapesQuotesBackslashesAndControlCharacters) {
  EXPECT_EQ(JsonString(std::string("a\"b\\c\nd\re\tf\bg\fh\x01i\x1fj\x7fk\0l", 23)),
            "\"a\\\"b\\\\c\\nd\\re\\tf\\bg\\fh\\u0001i\\u001fj\\u007fk\\u0000l\"");
}

TEST(JsonString, KeepsValidUtf8AsItIs) {
  const std::string text = "h\xC3\xA9llo \xE2\x82\xAC \xF0\x9F\x94\x92 \xF4\x8F\xBF\xBF";
  EXPECT_EQ(JsonString(text), "\"" + text + "\"");
  EXPECT_EQ(RoundTrip(text), text);
}

TEST(JsonString, ReplacesEachInvalidByteWithOneReplacementCharacter) {
  const std::string r = kReplacement;
  EXPECT_EQ(JsonString("a\xFF" "b"), "\"a" + r + "b\"");                 // never valid in UTF-8
  EXPECT_EQ(JsonString("a\x80" "b"), "\"a" + r + "b\"");                 // stray continuation
  EXPECT_EQ(JsonString("a\xC3"), "\"a" + r + "\"");                      // cut at the end
  EXPECT_EQ(JsonString("\xE2\x82" "x"), "\"" + r + r + "x\"");           // cut before ASCII
  EXPECT_EQ(JsonString("\xC0\xAF"), "\"" + r + r + "\"");                // overlong '/'
  EXPECT_EQ(JsonString("\xE0\x80\xAF"), "\"" + r + r + r + "\"");        // overlong, 3 bytes
  EXPECT_EQ(JsonString("\xED\xA0\x80"), "\"" + r + r + r + "\"");        // surrogate U+D800
  EXPECT_EQ(JsonString("\xF4\x90\x80\x80"), "\"" + r + r + r + r + "\"");  // above U+10FFFF
}

TEST(JsonString, AppendsToWhatIsThereAndEscapesWithoutQuotesOnRequest) {
  std::string out = "x=";
  AppendJsonString(out, "\"");
  EXPECT_EQ(out, "x=\"\\\"\"");
  out.clear();
  AppendJsonEscaped(out, "a\nb");
  EXPECT_EQ(out, "a\\nb");
  EXPECT_EQ(JsonString(""), "\"\"");
}

TEST(JsonString, EveryOneAndTwoByteStringIsValidJson) {
  for (int a = 0; a < 256; ++a) {
    const std::string one(1, static_cast<char>(a));
    const std::string decoded = RoundTrip(one);
    if (a < 0x80) {
      ASSERT_EQ(decoded, one) << "byte " << a;
    } else {
      ASSERT_EQ(decoded, kReplacement) << "byte " << a;
    }
    for (int b = 0; b < 256; ++b) {
      const std::string two{static_cast<char>(a), static_cast<char>(b)};
      RoundTrip(two);
      if (::testing::Test::HasFailure()) FAIL() << "bytes " << a << " " << b;
    }
  }
}

TEST(JsonString, RandomBytesAlwaysGiveValidJson) {
  std::mt19937 rng(18);  // fixed seed: the same strings every run
  std::uniform_int_distribution<int> byte(0, 255);
  std::uniform_int_distribution<int> length(0, 24);
  for (int i = 0; i < 20000; ++i) {
    std::string value(static_cast<size_t>(length(rng)), '\0');
    for (char& c : value) c = static_cast<char>(byte(rng));
    const std::string decoded = RoundTrip(value);
    if (::testing::Test::HasFailure()) FAIL() << "input #" << i;
    // Valid input (ASCII or well-formed UTF-8) comes back unchanged.
    if (google::protobuf::internal::IsStructurallyValidUTF8(value.data(),
                                                            static_cast<int>(value.size()))) {
      ASSERT_EQ(decoded, value) << "input #" << i;
    }
  }
}

}  // namespace
}  // namespace padlock::runtime
