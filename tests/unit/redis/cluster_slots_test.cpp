#include "services/common/redis/cluster_slots.h"

#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "services/common/redis/hiredis_reply.h"

namespace padlock::redis {
namespace {

using ::testing::ElementsAre;

TEST(Crc16, MatchesTheClusterSpecificationCheckValue) {
  // "The CRC16 output for the ASCII string 123456789 is 0x31C3" (Redis Cluster spec).
  EXPECT_EQ(Crc16("123456789"), 0x31C3);
  EXPECT_EQ(Crc16(""), 0);
}

TEST(KeySlot, MatchesValuesRedisReports) {
  EXPECT_EQ(KeySlot("123456789"), 0x31C3);  // 12739, below 16384 so unchanged by the mask
  EXPECT_EQ(KeySlot("somekey"), 11058);      // CLUSTER KEYSLOT documentation example
  EXPECT_EQ(KeySlot("foo{hash_tag}"), 2515); // same page
  EXPECT_EQ(KeySlot("foo"), 12182);
  EXPECT_EQ(KeySlot("bar"), 5061);
}

TEST(KeySlot, IsAlwaysInRange) {
  for (int i = 0; i < 2000; ++i) {
    const int slot = KeySlot("key:" + std::to_string(i));
    ASSERT_GE(slot, 0);
    ASSERT_LT(slot, kClusterSlots);
  }
}

TEST(HashTag, KeysWithTheSameTagShareASlot) {
  EXPECT_EQ(HashTag("{user1000}.following"), "user1000");
  EXPECT_EQ(HashTag("{user1000}.followers"), "user1000");
  EXPECT_EQ(KeySlot("{user1000}.following"), KeySlot("{user1000}.followers"));
  EXPECT_EQ(KeySlot("{user1000}.following"), KeySlot("user1000"));
  EXPECT_EQ(KeySlot("q:{alice:1}"), KeySlot("ch:{alice:1}"));
}

TEST(HashTag, EmptyTagHashesTheWholeKey) {
  EXPECT_EQ(HashTag("foo{}{bar}"), "foo{}{bar}");
  EXPECT_EQ(KeySlot("foo{}{bar}"), Crc16("foo{}{bar}") & 16383);
}

TEST(HashTag, TagEndsAtTheFirstClosingBrace) {
  EXPECT_EQ(HashTag("foo{{bar}}zap"), "{bar");
  EXPECT_EQ(KeySlot("foo{{bar}}zap"), KeySlot("{bar"));
  EXPECT_EQ(HashTag("foo{bar}{zap}"), "bar");
}

TEST(HashTag, UnclosedBraceHashesTheWholeKey) {
  EXPECT_EQ(HashTag("foo{bar"), "foo{bar");
  EXPECT_EQ(HashTag("plain"), "plain");
  EXPECT_EQ(HashTag("}{x}"), "x");
}

TEST(ParseNodeAddress, SplitsHostAndPort) {
  absl::StatusOr<NodeAddress> a = ParseNodeAddress("127.0.0.1:7000");
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_EQ(a->host, "127.0.0.1");
  EXPECT_EQ(a->port, 7000);
  EXPECT_EQ(a->ToString(), "127.0.0.1:7000");

  absl::StatusOr<NodeAddress> v6 = ParseNodeAddress("[::1]:6379");
  ASSERT_TRUE(v6.ok()) << v6.status();
  EXPECT_EQ(v6->host, "::1");
  EXPECT_EQ(v6->ToString(), "[::1]:6379");
}

TEST(ParseNodeAddress, RejectsMalformedAddresses) {
  for (const char* bad : {"", "redis", ":6379", "host:", "host:0", "host:65536", "host:x"}) {
    EXPECT_EQ(ParseNodeAddress(bad).status().code(), absl::StatusCode::kInvalidArgument) << bad;
  }
}

RedisReply Node(const std::string& ip, int port, const std::string& id) {
  return RedisReply::Array({RedisReply::String(ip), RedisReply::Integer(port),
                            RedisReply::String(id), RedisReply::Array({})});
}

TEST(ParseClusterSlots, ReadsRangesAndMasters) {
  RedisReply reply = RedisReply::Array({
      RedisReply::Array({RedisReply::Integer(0), RedisReply::Integer(5460),
                         Node("10.0.0.1", 7000, "a"), Node("10.0.0.4", 7003, "d")}),
      RedisReply::Array({RedisReply::Integer(5461), RedisReply::Integer(10922),
                         Node("10.0.0.2", 7001, "b")}),
      RedisReply::Array({RedisReply::Integer(10923), RedisReply::Integer(16383),
                         Node("10.0.0.3", 7002, "c")}),
  });
  absl::StatusOr<std::vector<SlotRange>> ranges = ParseClusterSlots(reply, "seed");
  ASSERT_TRUE(ranges.ok()) << ranges.status();
  EXPECT_THAT(*ranges, ElementsAre(SlotRange{0, 5460, {"10.0.0.1", 7000}},
                                   SlotRange{5461, 10922, {"10.0.0.2", 7001}},
                                   SlotRange{10923, 16383, {"10.0.0.3", 7002}}));
}

TEST(ParseClusterSlots, ReadsTheWireFormatOfRedis7) {
  // Captured shape of a redis-server 7.0 answer: node entries carry a 4th element (metadata).
  const std::string wire =
      "*2\r\n"
      "*3\r\n:0\r\n:8191\r\n*4\r\n$9\r\n127.0.0.1\r\n:30001\r\n$2\r\nid\r\n*0\r\n"
      "*3\r\n:8192\r\n:16383\r\n*4\r\n$0\r\n\r\n:30002\r\n$2\r\nid\r\n*0\r\n";
  absl::StatusOr<RedisReply> reply = internal::ParseResp(wire);
  ASSERT_TRUE(reply.ok()) << reply.status();
  absl::StatusOr<std::vector<SlotRange>> ranges = ParseClusterSlots(*reply, "10.1.1.1");
  ASSERT_TRUE(ranges.ok()) << ranges.status();
  // An empty ip means "the host you asked".
  EXPECT_THAT(*ranges, ElementsAre(SlotRange{0, 8191, {"127.0.0.1", 30001}},
                                   SlotRange{8192, 16383, {"10.1.1.1", 30002}}));
}

TEST(ParseClusterSlots, RejectsMalformedReplies) {
  EXPECT_EQ(ParseClusterSlots(RedisReply::Error("ERR cluster support disabled"), "h")
                .status()
                .code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ParseClusterSlots(RedisReply::Array({RedisReply::Integer(1)}), "h").status().code(),
            absl::StatusCode::kInvalidArgument);
  RedisReply out_of_range = RedisReply::Array({RedisReply::Array(
      {RedisReply::Integer(0), RedisReply::Integer(16384), Node("h", 1, "x")})});
  EXPECT_EQ(ParseClusterSlots(out_of_range, "h").status().code(),
            absl::StatusCode::kInvalidArgument);
  RedisReply reversed = RedisReply::Array({RedisReply::Array(
      {RedisReply::Integer(10), RedisReply::Integer(5), Node("h", 1, "x")})});
  EXPECT_EQ(ParseClusterSlots(reversed, "h").status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(ParseRedirect, ReadsMovedAndAsk) {
  absl::StatusOr<Redirect> moved = ParseRedirect("MOVED 3999 127.0.0.1:6381");
  ASSERT_TRUE(moved.ok()) << moved.status();
  EXPECT_EQ(moved->kind, Redirect::Kind::kMoved);
  EXPECT_EQ(moved->slot, 3999);
  EXPECT_EQ(moved->target, (NodeAddress{"127.0.0.1", 6381}));

  absl::StatusOr<Redirect> ask = ParseRedirect("ASK 12 10.0.0.2:7001");
  ASSERT_TRUE(ask.ok()) << ask.status();
  EXPECT_EQ(ask->kind, Redirect::Kind::kAsk);
  EXPECT_EQ(ask->slot, 12);
}

TEST(ParseRedirect, RejectsOtherErrors) {
  for (const char* bad : {"ERR unknown command", "MOVED 3999", "MOVED 16384 h:1", "ASK x h:1",
                          "MOVED 1 :6380"}) {
    EXPECT_EQ(ParseRedirect(bad).status().code(), absl::StatusCode::kInvalidArgument) << bad;
  }
}

}  // namespace
}  // namespace padlock::redis
