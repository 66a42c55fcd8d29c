#include "services/common/runtime/executor.h"

#include <atomic>
#include <latch>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace padlock::runtime {
namespace {

TEST(BoundedExecutor, RunsSubmittedTasks) {
  BoundedExecutor executor("test", 2, 8);
  std::atomic<int> ran{0};
  std::latch done(3);
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE(executor.Submit([&ran, &done] {
                  ran.fetch_add(1);
                  done.count_down();
                }).ok());
  }
  done.wait();
  EXPECT_EQ(ran.load(), 3);
}

TEST(BoundedExecutor, RejectsWithResourceExhaustedWhenTheQueueIsFull) {
  BoundedExecutor executor("redis", 1, 2);
  // Latches, not absl::Notification: TSan sees through std::latch (see executor.h).
  std::latch running(1);
  std::latch release(1);
  // Occupies the only worker until released.
  ASSERT_TRUE(executor.Submit([&] {
                running.count_down();
                release.wait();
              }).ok());
  running.wait();
  std::atomic<int> queued_ran{0};
  ASSERT_TRUE(executor.Submit([&] { queued_ran.fetch_add(1); }).ok());
  ASSERT_TRUE(executor.Submit([&] { queued_ran.fetch_add(1); }).ok());
  EXPECT_EQ(executor.queued(), 2u);

  const absl::Status full = executor.Submit([&] { queued_ran.fetch_add(100); });
  EXPECT_EQ(full.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(std::string(full.message()), ::testing::HasSubstr("redis"));

  release.count_down();
  executor.Shutdown();
  EXPECT_EQ(queued_ran.load(), 2);  // the rejected task never ran
}

TEST(BoundedExecutor, ShutdownRunsEveryQueuedTask) {
  BoundedExecutor executor("drain", 1, 100);
  std::latch running(1);
  std::latch release(1);
  ASSERT_TRUE(executor.Submit([&] {
                running.count_down();
                release.wait();
              }).ok());
  running.wait();
  std::vector<int> order;  // written by the single worker only
  for (int i = 0; i < 50; ++i) ASSERT_TRUE(executor.Submit([&order, i] { order.push_back(i); }).ok());
  release.count_down();
  executor.Shutdown();
  ASSERT_EQ(order.size(), 50u);
  for (int i = 0; i < 50; ++i) EXPECT_EQ(order[static_cast<size_t>(i)], i);
}

TEST(BoundedExecutor, SubmitAfterShutdownIsUnavailable) {
  BoundedExecutor executor("closed", 2, 4);
  executor.Shutdown();
  bool ran = false;
  EXPECT_EQ(executor.Submit([&] { ran = true; }).code(), absl::StatusCode::kUnavailable);
  executor.Shutdown();  // idempotent
  EXPECT_FALSE(ran);
}

TEST(BoundedExecutor, DestructorDrainsLikeShutdown) {
  std::atomic<int> ran{0};
  {
    BoundedExecutor executor("scoped", 1, 16);
    for (int i = 0; i < 10; ++i) ASSERT_TRUE(executor.Submit([&] { ran.fetch_add(1); }).ok());
  }
  EXPECT_EQ(ran.load(), 10);
}

}  // namespace
}  // namespace padlock::runtime
