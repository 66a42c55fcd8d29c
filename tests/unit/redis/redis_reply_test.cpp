#include "services/common/redis/redis_reply.h"

#include <string>

#include "gtest/gtest.h"
#include "services/common/redis/hiredis_reply.h"

namespace padlock::redis {
namespace {

using internal::ParseResp;

TEST(RedisReply, ConvertsEveryRespType) {
  EXPECT_EQ(*ParseResp("$-1\r\n"), RedisReply::Nil());
  EXPECT_EQ(*ParseResp("*-1\r\n"), RedisReply::Nil());
  EXPECT_EQ(*ParseResp(":-42\r\n"), RedisReply::Integer(-42));
  EXPECT_EQ(*ParseResp("+OK\r\n"), RedisReply::Status("OK"));
  EXPECT_EQ(*ParseResp("-ERR wrong\r\n"), RedisReply::Error("ERR wrong"));
  EXPECT_EQ(*ParseResp("$5\r\nhello\r\n"), RedisReply::String("hello"));
  EXPECT_EQ(*ParseResp("*0\r\n"), RedisReply::Array({}));
}

TEST(RedisReply, KeepsBinaryBulkStrings) {
  const std::string payload("a\0b\r\nc", 6);
  absl::StatusOr<RedisReply> reply = ParseResp("$6\r\n" + payload + "\r\n");
  ASSERT_TRUE(reply.ok()) << reply.status();
  ASSERT_TRUE(reply->is_string());
  EXPECT_EQ(reply->str(), payload);
  EXPECT_EQ(reply->str().size(), 6u);
}

TEST(RedisReply, ConvertsNestedArrays) {
  absl::StatusOr<RedisReply> reply =
      ParseResp("*3\r\n$8\r\nsmessage\r\n*2\r\n:1\r\n$-1\r\n-NOSCRIPT x\r\n");
  ASSERT_TRUE(reply.ok()) << reply.status();
  EXPECT_EQ(*reply, RedisReply::Array({RedisReply::String("smessage"),
                                       RedisReply::Array({RedisReply::Integer(1),
                                                          RedisReply::Nil()}),
                                       RedisReply::Error("NOSCRIPT x")}));
  EXPECT_EQ(reply->elements()[1].elements()[0].integer(), 1);
}

TEST(RedisReply, RejectsIncompleteOrTrailingWire) {
  EXPECT_EQ(ParseResp("$5\r\nhel").status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ParseResp(":1\r\n:2\r\n").status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ParseResp("?what\r\n").status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(RedisReply, AccessorsOfTheWrongTypeAreEmpty) {
  RedisReply integer = RedisReply::Integer(7);
  EXPECT_EQ(integer.str(), "");
  EXPECT_TRUE(integer.elements().empty());
  EXPECT_EQ(RedisReply::String("x").integer(), 0);
  EXPECT_EQ(RedisReply::String("MOVED 1 h:1").error_code(), "");
}

TEST(RedisReply, ErrorCodeIsTheFirstWord) {
  EXPECT_EQ(RedisReply::Error("MOVED 3999 127.0.0.1:6381").error_code(), "MOVED");
  EXPECT_EQ(RedisReply::Error("NOSCRIPT No matching script").error_code(), "NOSCRIPT");
  EXPECT_EQ(RedisReply::Error("INBOX_FULL").error_code(), "INBOX_FULL");
}

TEST(RedisReply, ToStatusMapsErrorsByWhatTheCallerShouldDo) {
  EXPECT_TRUE(RedisReply::Status("OK").ToStatus().ok());
  EXPECT_TRUE(RedisReply::Nil().ToStatus().ok());
  EXPECT_EQ(RedisReply::Error("OOM command not allowed").ToStatus().code(),
            absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(RedisReply::Error("LOADING Redis is loading").ToStatus().code(),
            absl::StatusCode::kUnavailable);
  EXPECT_EQ(RedisReply::Error("CLUSTERDOWN The cluster is down").ToStatus().code(),
            absl::StatusCode::kUnavailable);
  EXPECT_EQ(RedisReply::Error("WRONGTYPE Operation against a key").ToStatus().code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(RedisReply::Error("CROSSSLOT Keys in request").ToStatus().code(),
            absl::StatusCode::kFailedPrecondition);
  absl::Status script = RedisReply::Error("ERR user_script:1: boom").ToStatus();
  EXPECT_EQ(script.code(), absl::StatusCode::kInternal);
  EXPECT_EQ(script.message(), "redis: ERR user_script:1: boom");
}

TEST(RedisReply, DebugStringTruncatesLongStrings) {
  EXPECT_EQ(RedisReply::Array({RedisReply::Integer(1), RedisReply::String("a"),
                               RedisReply::Nil(), RedisReply::Error("ERR x"),
                               RedisReply::Status("OK")})
                .DebugString(),
            "[(integer) 1, \"a\", (nil), -ERR x, +OK]");
  const std::string shown = RedisReply::String(std::string(1000, 'x')).DebugString();
  EXPECT_LT(shown.size(), 100u);
  EXPECT_NE(shown.find("1000 bytes"), std::string::npos);
}

}  // namespace
}  // namespace padlock::redis
