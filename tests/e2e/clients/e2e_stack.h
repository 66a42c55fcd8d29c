#pragma once
// One PadlockStack for every test of the binary (starting it takes seconds), started by a gtest
// environment and stopped in its TearDown, so that no server outlives the test binary. Each test
// uses fresh user names, so tests do not see each other's accounts or inboxes.
#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "tests/harness/stack.h"

namespace padlock::client::e2e {

class StackEnvironment : public ::testing::Environment {
 public:
  void SetUp() override {
    // The tests link and send at once from clients that may hold the old list: the message-queue
    // checks every send against the current list (no cache, docs/MESSAGE_QUEUE.md), so they need
    // no setting for it.
    absl::StatusOr<std::unique_ptr<testing::PadlockStack>> started =
        testing::PadlockStack::Start(testing::StackOptions{});
    ASSERT_TRUE(started.ok()) << "stack did not start: " << started.status();
    stack_ = *std::move(started);
  }
  void TearDown() override { stack_.reset(); }
  static testing::PadlockStack* stack() { return stack_.get(); }

 private:
  static inline std::unique_ptr<testing::PadlockStack> stack_;
};

inline testing::PadlockStack* SharedStack() { return StackEnvironment::stack(); }

// A user name unique within this process: <prefix>-<n>.
inline std::string UniqueUser(const std::string& prefix) {
  static int counter = 0;
  return absl::StrCat(prefix, "-", ++counter);
}

}  // namespace padlock::client::e2e
