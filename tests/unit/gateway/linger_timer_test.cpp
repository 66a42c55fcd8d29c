// LingerTimer: the ack pump's wait for more acks. Real time, short delays; every wait has a
// deadline far above the delay, so a slow machine cannot fail it.
#include "services/gateway/linger_timer.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <memory>
#include <thread>

#include "tests/harness/harness.h"

namespace padlock::gateway {
namespace {

TEST(LingerTimer, FiresOnceAfterArmAndNotBefore) {
  std::atomic<int> fired{0};
  LingerTimer timer(absl::Milliseconds(50), [&] { ++fired; });
  const auto armed = std::chrono::steady_clock::now();
  timer.Arm();
  timer.Arm();  // already armed: the first time stands, still one run
  ASSERT_TRUE(testing::WaitFor([&] { return fired.load() >= 1; }, absl::Seconds(10)));
  EXPECT_GE(std::chrono::steady_clock::now() - armed, std::chrono::milliseconds(50));
  // Unarmed now: no second run. The sleep is the observation window (three delays), not a wait
  // for a condition.
  std::this_thread::sleep_for(std::chrono::milliseconds(150));
  EXPECT_EQ(fired.load(), 1);
}

TEST(LingerTimer, ArmAfterARunFiresAgain) {
  std::atomic<int> fired{0};
  LingerTimer timer(absl::Milliseconds(5), [&] { ++fired; });
  timer.Arm();
  ASSERT_TRUE(testing::WaitFor([&] { return fired.load() == 1; }, absl::Seconds(10)));
  timer.Arm();
  ASSERT_TRUE(testing::WaitFor([&] { return fired.load() == 2; }, absl::Seconds(10)));
}

TEST(LingerTimer, DestroyedWhileArmedNeverFires) {
  auto fired = std::make_shared<std::atomic<int>>(0);
  {
    LingerTimer timer(absl::Seconds(30), [fired] { ++*fired; });
    timer.Arm();
  }  // joins its thread
  EXPECT_EQ(fired->load(), 0);
}

}  // namespace
}  // namespace padlock::gateway
