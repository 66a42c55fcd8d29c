// Memory admission levels from polled memory plus what was appended since (no server needed).
#include "services/message_queue/memory_admission.h"

#include "gtest/gtest.h"

namespace padlock::message_queue {
namespace {

MemoryAdmissionOptions Options() {
  MemoryAdmissionOptions o;
  o.pressure_ratio = 0.60;
  o.high_water_ratio = 0.80;
  o.bytes_overhead = 2.0;
  return o;
}

TEST(MemoryAdmission, LevelFollowsThePolledRatioOfEachNode) {
  MemoryAdmission admission(Options());
  admission.Observe("a:1", 599, 1000);
  admission.Observe("b:1", 600, 1000);
  admission.Observe("c:1", 800, 1000);
  EXPECT_EQ(admission.Level("a:1"), MemoryLevel::kNormal);
  EXPECT_EQ(admission.Level("b:1"), MemoryLevel::kPressure);
  EXPECT_EQ(admission.Level("c:1"), MemoryLevel::kFull);
  EXPECT_EQ(admission.WorstLevel(), MemoryLevel::kFull);
  admission.Observe("c:1", 100, 1000);  // memory freed (reads, acks, expiry): admitted again
  EXPECT_EQ(admission.Level("c:1"), MemoryLevel::kNormal);
  EXPECT_EQ(admission.WorstLevel(), MemoryLevel::kPressure);
}

TEST(MemoryAdmission, UnknownNodeAndNoMaxmemoryAreNormal) {
  MemoryAdmission admission(Options());
  EXPECT_EQ(admission.Level("never-polled:1"), MemoryLevel::kNormal);
  admission.Observe("a:1", 1ull << 40, 0);  // no maxmemory: nothing to measure against
  EXPECT_EQ(admission.Level("a:1"), MemoryLevel::kNormal);
  admission.Charge("never-polled:1", 1ull << 40);  // ignored until a poll knows the node
  EXPECT_EQ(admission.Level("never-polled:1"), MemoryLevel::kNormal);
}

TEST(MemoryAdmission, AppendsSinceThePollRaiseTheLevelUntilTheNextPoll) {
  MemoryAdmission admission(Options());
  admission.Observe("a:1", 500, 1000);
  admission.Charge("a:1", 49);  // 98 estimated: 598
  EXPECT_EQ(admission.Level("a:1"), MemoryLevel::kNormal);
  admission.Charge("a:1", 1);  // 600
  EXPECT_EQ(admission.Level("a:1"), MemoryLevel::kPressure);
  admission.Charge("a:1", 100);  // 800
  EXPECT_EQ(admission.Level("a:1"), MemoryLevel::kFull);
  admission.Charge("b:1", 1000);  // another node's appends do not count here
  admission.Observe("a:1", 500, 1000);  // the poll replaces the estimate
  EXPECT_EQ(admission.Level("a:1"), MemoryLevel::kNormal);
}

}  // namespace
}  // namespace padlock::message_queue
