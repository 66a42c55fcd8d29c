#pragma once
// End-to-end suites run once on a standalone Redis and once on a 3-master Redis Cluster
// (TEST_P over `bool cluster`) share one PadlockStack per mode for the whole test binary
// (starting one takes seconds). Tests on one stack keep apart by user names (TestUserSuffix).

#include <cctype>
#include <map>
#include <memory>
#include <string>
#include <utility>

#include "gtest/gtest.h"
#include "tests/harness/stack.h"

namespace padlock::testing {

// The stack of mode `cluster`: started by the first call with `options` (redis_cluster set to
// `cluster`), then the same one, kept until the process exits (later calls' options are not
// read). Null, with a test failure, when it did not start; the next call tries again.
inline PadlockStack* StackForMode(bool cluster, StackOptions options) {
  static std::map<bool, std::unique_ptr<PadlockStack>> stacks;
  auto it = stacks.find(cluster);
  if (it != stacks.end()) return it->second.get();
  options.redis_cluster = cluster;
  auto stack = PadlockStack::Start(std::move(options));
  EXPECT_TRUE(stack.ok()) << stack.status();
  if (!stack.ok()) return nullptr;
  return (stacks[cluster] = *std::move(stack)).get();
}

// The capitals of the running test's name in lower case (at most 12), then "-c" (cluster) or
// "-s": user ids allow [a-z0-9._-], and no two tests of a suite share it.
inline std::string TestUserSuffix(bool cluster) {
  std::string suffix;
  for (char c : std::string(::testing::UnitTest::GetInstance()->current_test_info()->name())) {
    if (std::isupper(static_cast<unsigned char>(c)) && suffix.size() < 12) {
      suffix += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    }
  }
  return suffix + (cluster ? "-c" : "-s");
}

}  // namespace padlock::testing
