// RETURN_IF_ERROR / ASSIGN_OR_RETURN (services/common/runtime/status_macros.h) and the status
// matchers (tests/unit/runtime/status_matchers.h).
#include "services/common/runtime/status_macros.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <memory>
#include <string>

#include "tests/unit/runtime/status_matchers.h"

namespace padlock::runtime {
namespace {

using ::padlock::testing::IsOk;
using ::padlock::testing::IsOkAndHolds;
using ::padlock::testing::StatusIs;
using ::testing::HasSubstr;
using ::testing::Not;

absl::StatusOr<int> Parse(const std::string& s) {
  if (s.empty()) return absl::InvalidArgumentError("empty");
  return static_cast<int>(s.size());
}

absl::Status Check(int n) {
  return n > 2 ? absl::OutOfRangeError("too long") : absl::OkStatus();
}

int steps = 0;

absl::StatusOr<int> Twice(const std::string& s) {
  ASSIGN_OR_RETURN(const int n, Parse(s));
  ++steps;
  RETURN_IF_ERROR(Check(n));
  ++steps;
  return 2 * n;
}

absl::Status Assign(const std::string& s, int* out) {
  ASSIGN_OR_RETURN(*out, Parse(s));
  RETURN_IF_ERROR(Parse(s));  // a StatusOr works too
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<int>> Boxed(int n) { return std::make_unique<int>(n); }

absl::StatusOr<int> Unbox(int n) {
  ASSIGN_OR_RETURN(std::unique_ptr<int> box, Boxed(n));  // move-only values
  return *box;
}

TEST(StatusMacros, ReturnTheFirstErrorUnchangedAndStopThere) {
  steps = 0;
  EXPECT_THAT(Twice(""), StatusIs(absl::StatusCode::kInvalidArgument, "empty"));
  EXPECT_EQ(steps, 0);
  EXPECT_THAT(Twice("abc"), StatusIs(absl::StatusCode::kOutOfRange, HasSubstr("long")));
  EXPECT_EQ(steps, 1);
  EXPECT_THAT(Twice("ab"), IsOkAndHolds(4));
  EXPECT_EQ(steps, 3);
}

TEST(StatusMacros, AssignToAnExistingLvalueAndMoveOnlyValues) {
  int out = -1;
  EXPECT_THAT(Assign("", &out), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_EQ(out, -1);
  EXPECT_THAT(Assign("xyz", &out), IsOk());
  EXPECT_EQ(out, 3);
  EXPECT_THAT(Unbox(7), IsOkAndHolds(7));
}

TEST(StatusMatchers, MatchCodesMessagesAndValues) {
  EXPECT_THAT(absl::OkStatus(), IsOk());
  EXPECT_THAT(absl::NotFoundError("x"), Not(IsOk()));
  EXPECT_THAT(absl::NotFoundError("no such user"),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("user")));
  EXPECT_THAT(absl::NotFoundError("no such user"),
              Not(StatusIs(absl::StatusCode::kNotFound, HasSubstr("device"))));
  EXPECT_THAT(absl::NotFoundError("x"), Not(StatusIs(absl::StatusCode::kInternal)));
  EXPECT_THAT(absl::StatusOr<int>(5), IsOkAndHolds(::testing::Gt(4)));
  EXPECT_THAT(absl::StatusOr<int>(5), Not(IsOkAndHolds(6)));
  EXPECT_THAT(absl::StatusOr<int>(absl::UnknownError("u")), Not(IsOkAndHolds(5)));
  // The explanation names the status, so a failure says what came back.
  ::testing::StringMatchResultListener listener;
  EXPECT_FALSE(::testing::ExplainMatchResult(StatusIs(absl::StatusCode::kOk),
                                             absl::NotFoundError("gone"), &listener));
  EXPECT_THAT(listener.str(), HasSubstr("NOT_FOUND: gone"));
}

}  // namespace
}  // namespace padlock::runtime
