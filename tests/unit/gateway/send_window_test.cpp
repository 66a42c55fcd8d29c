// SendWindow: the per-device token bucket and the request ids in flight. No servers.

#include "services/gateway/send_window.h"

#include <gtest/gtest.h>

#include "tests/fakes/manual_clock.h"

namespace padlock::gateway {
namespace {

TEST(SendWindow, AdmitsTheBurstThenRefusesWithTheTimeToTheNextToken) {
  testing::ManualClock clock;
  SendWindow window(&clock, {.burst = 2, .per_second = 4});
  EXPECT_TRUE(window.Admit(1).admitted);
  EXPECT_TRUE(window.Admit(2).admitted);
  const SendWindow::Admission refused = window.Admit(3);
  EXPECT_FALSE(refused.admitted);
  EXPECT_EQ(refused.retry_after_ms, 250u);  // one token at 4/s
  EXPECT_FALSE(window.IsOpen(3));           // a refused send opens nothing
  clock.Advance(absl::Milliseconds(125));
  const SendWindow::Admission half = window.Admit(3);
  EXPECT_FALSE(half.admitted);
  EXPECT_EQ(half.retry_after_ms, 125u);
  clock.Advance(absl::Milliseconds(125));
  EXPECT_TRUE(window.Admit(3).admitted);
}

TEST(SendWindow, RefillIsCappedAtTheBurst) {
  testing::ManualClock clock;
  SendWindow window(&clock, {.burst = 2, .per_second = 100});
  clock.Advance(absl::Hours(1));
  EXPECT_TRUE(window.Admit(1).admitted);
  EXPECT_TRUE(window.Admit(2).admitted);
  EXPECT_FALSE(window.Admit(3).admitted);
}

TEST(SendWindow, RequestIdsStayOpenUntilClosed) {
  testing::ManualClock clock;
  SendWindow window(&clock, {.burst = 10, .per_second = 1});
  ASSERT_TRUE(window.Admit(7).admitted);
  EXPECT_TRUE(window.IsOpen(7));
  EXPECT_FALSE(window.IsOpen(8));
  EXPECT_EQ(window.open(), 1u);
  window.Close(7);
  EXPECT_FALSE(window.IsOpen(7));
  EXPECT_EQ(window.open(), 0u);
}

}  // namespace
}  // namespace padlock::gateway
