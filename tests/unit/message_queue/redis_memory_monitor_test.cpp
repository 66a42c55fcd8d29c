// Parsing of INFO memory for the maxmemory early-warning gauge (no server needed).
#include "services/message_queue/redis_memory_monitor.h"

#include "gtest/gtest.h"

namespace padlock::message_queue {
namespace {

TEST(ParseInfoMemory, ReadsUsedMemoryAndMaxmemoryFromCrlfLines) {
  absl::StatusOr<RedisMemory> m = ParseInfoMemory(
      "# Memory\r\nused_memory:1048576\r\nused_memory_human:1.00M\r\nused_memory_rss:3000000\r\n"
      "maxmemory:4194304\r\nmaxmemory_human:4.00M\r\nmaxmemory_policy:noeviction\r\n");
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_EQ(m->used_bytes, 1048576u);
  EXPECT_EQ(m->max_bytes, 4194304u);
}

TEST(ParseInfoMemory, ZeroMaxmemoryMeansNoLimit) {
  absl::StatusOr<RedisMemory> m = ParseInfoMemory("used_memory:10\nmaxmemory:0\n");
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_EQ(m->max_bytes, 0u);
}

TEST(ParseInfoMemory, MissingOrMalformedFieldIsInvalidArgument) {
  EXPECT_EQ(ParseInfoMemory("used_memory_rss:10\r\nmaxmemory:0\r\n").status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ParseInfoMemory("used_memory:10\r\nmaxmemory_policy:noeviction\r\n").status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ParseInfoMemory("used_memory:ten\r\nmaxmemory:0\r\n").status().code(),
            absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace padlock::message_queue
