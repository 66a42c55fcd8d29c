#pragma once
// gMock matchers for absl::Status and absl::StatusOr<T>:
//
//   EXPECT_THAT(store.Get("x"), StatusIs(absl::StatusCode::kNotFound));
//   EXPECT_THAT(store.Put("x", ""), StatusIs(absl::StatusCode::kInvalidArgument,
//                                            HasSubstr("value")));
//   EXPECT_THAT(Parse("12"), IsOkAndHolds(12));
//   EXPECT_THAT(Save(thing), IsOk());
//
// A failure prints the status (code and message).

#include <gmock/gmock.h>

#include <ostream>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace padlock::testing {
namespace status_internal {

inline const absl::Status& GetStatus(const absl::Status& s) { return s; }
template <typename T>
const absl::Status& GetStatus(const absl::StatusOr<T>& s) {
  return s.status();
}

}  // namespace status_internal

MATCHER_P(StatusIsMatcherCode, code,
          std::string(negation ? "is not" : "is") + " a status with code " +
              absl::StatusCodeToString(code)) {
  const absl::Status& s = status_internal::GetStatus(arg);
  *result_listener << "whose status is " << s.ToString();
  return s.code() == code;
}

MATCHER_P2(StatusIsMatcherCodeMessage, code, message_matcher,
           std::string(negation ? "is not" : "is") + " a status with code " +
               absl::StatusCodeToString(code) + " and a message that " +
               ::testing::DescribeMatcher<std::string>(message_matcher, negation)) {
  const absl::Status& s = status_internal::GetStatus(arg);
  *result_listener << "whose status is " << s.ToString();
  return s.code() == code &&
         ::testing::Matches(message_matcher)(std::string(s.message().data(), s.message().size()));
}

// The status (of a Status or a StatusOr) has `code`.
inline auto StatusIs(absl::StatusCode code) { return StatusIsMatcherCode(code); }
// ... and its message matches `message_matcher` (a string or a matcher such as HasSubstr).
template <typename M>
auto StatusIs(absl::StatusCode code, M message_matcher) {
  return StatusIsMatcherCodeMessage(code,
                                    ::testing::MatcherCast<std::string>(message_matcher));
}

MATCHER(IsOk, std::string(negation ? "is not" : "is") + " OK") {
  const absl::Status& s = status_internal::GetStatus(arg);
  *result_listener << "whose status is " << s.ToString();
  return s.ok();
}

// A StatusOr that is OK and whose value matches `value_matcher`.
MATCHER_P(IsOkAndHolds, value_matcher,
          std::string(negation ? "is not" : "is") + " OK and holds a value that " +
              ::testing::DescribeMatcher<typename std::remove_reference_t<
                  arg_type>::value_type>(value_matcher, negation)) {
  if (!arg.ok()) {
    *result_listener << "whose status is " << arg.status().ToString();
    return false;
  }
  return ::testing::ExplainMatchResult(value_matcher, *arg, result_listener);
}

}  // namespace padlock::testing
