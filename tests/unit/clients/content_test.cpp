#include "clients/sdk/content.h"

#include <string>

#include "absl/status/status.h"
#include "gtest/gtest.h"

namespace padlock::client {
namespace {

TEST(Content, BucketsArePowersOfTwoFrom64ThenMultiplesOf64KiB) {
  EXPECT_EQ(PaddedContentSize(0), 64u);
  EXPECT_EQ(PaddedContentSize(58), 64u);
  EXPECT_EQ(PaddedContentSize(59), 128u);
  EXPECT_EQ(PaddedContentSize(122), 128u);
  EXPECT_EQ(PaddedContentSize(123), 256u);
  EXPECT_EQ(PaddedContentSize(65536 - 6), 65536u);
  EXPECT_EQ(PaddedContentSize(65536 - 5), 2u * 65536u);
  EXPECT_EQ(PaddedContentSize(256 * 1024), 5u * 65536u);
}

TEST(Content, LargestBodyFillsThe32KiBBucket) {
  EXPECT_EQ(PaddedContentSize(kMaxContentBodySize), 32768u);
  EXPECT_EQ(PaddedContentSize(kMaxContentBodySize + 1), 65536u);
}

TEST(Content, RoundTripsEveryKind) {
  for (ContentKind kind : {ContentKind::kText, ContentKind::kReceipt, ContentKind::kTyping,
                           ContentKind::kCallSignal, ContentKind::kGroupKeyDistribution,
                           ContentKind::kGroupUpdate}) {
    const Content content{kind, std::string("body\0with nul", 13)};
    absl::StatusOr<std::string> encoded = EncodeContent(content);
    ASSERT_TRUE(encoded.ok()) << encoded.status();
    EXPECT_EQ(encoded->size(), 64u);
    absl::StatusOr<Content> decoded = DecodeContent(*encoded);
    ASSERT_TRUE(decoded.ok()) << decoded.status();
    EXPECT_EQ(*decoded, content);
  }
}

TEST(Content, ExactLayout) {
  absl::StatusOr<std::string> encoded = EncodeContent({ContentKind::kReceipt, "ab"});
  ASSERT_TRUE(encoded.ok());
  std::string expected("\x01\x02\x00\x00\x00\x02" "ab", 8);
  expected.resize(64, '\0');
  EXPECT_EQ(*encoded, expected);
}

TEST(Content, EmptyBodyAndMaximumBody) {
  absl::StatusOr<std::string> empty = EncodeContent({ContentKind::kTyping, ""});
  ASSERT_TRUE(empty.ok());
  EXPECT_EQ(DecodeContent(*empty)->body, "");
  const std::string big(kMaxContentBodySize, 'z');
  absl::StatusOr<std::string> max = EncodeContent({ContentKind::kText, big});
  ASSERT_TRUE(max.ok());
  EXPECT_EQ(DecodeContent(*max)->body, big);
  absl::Status too_long = EncodeContent({ContentKind::kText, big + "z"}).status();
  EXPECT_EQ(too_long.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(too_long.message().find("too long"), std::string::npos) << too_long;
}

TEST(Content, DecodesBodiesOlderClientsPaddedUpTo256KiB) {
  // Before the 32 KiB cap a client could send larger bodies (if the server let them through).
  std::string padded(PaddedContentSize(100000), '\0');
  padded[0] = 1;
  padded[1] = 1;
  padded[2] = 0x00;
  padded[3] = 0x01;
  padded[4] = static_cast<char>(0x86);
  padded[5] = static_cast<char>(0xa0);  // 100000
  absl::StatusOr<Content> decoded = DecodeContent(padded);
  ASSERT_TRUE(decoded.ok()) << decoded.status();
  EXPECT_EQ(decoded->body.size(), 100000u);
}

TEST(Content, UnknownKindIsEncodedAndDecodedNotRefused) {
  absl::StatusOr<std::string> encoded = EncodeContent({static_cast<ContentKind>(0x42), "future"});
  ASSERT_TRUE(encoded.ok()) << encoded.status();
  EXPECT_EQ((*encoded)[1], 0x42);
  absl::StatusOr<Content> decoded = DecodeContent(*encoded);
  ASSERT_TRUE(decoded.ok()) << decoded.status();
  EXPECT_EQ(static_cast<int>(decoded->kind), 0x42);
  EXPECT_EQ(decoded->body, "future");
  EXPECT_FALSE(IsKnownContentKind(0x42));
  EXPECT_TRUE(IsKnownContentKind(7));
  EXPECT_FALSE(IsKnownContentKind(8));
  EXPECT_FALSE(IsKnownContentKind(0));
}

TEST(Content, NewerFormatVersionIsReturnedWithoutReadingItsLayout) {
  // Version 2 may lay out the rest differently: only bytes 0 and 1 are read.
  const std::string future("\x02\x01whatever follows", 18);
  absl::StatusOr<Content> decoded = DecodeContent(future);
  ASSERT_TRUE(decoded.ok()) << decoded.status();
  EXPECT_EQ(decoded->format_version, 2);
  EXPECT_EQ(decoded->kind, ContentKind::kText);
  EXPECT_EQ(decoded->body, "");
  Content v2{ContentKind::kText, "x", 2};
  EXPECT_EQ(EncodeContent(v2).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(Content, RejectsMalformed) {
  absl::StatusOr<std::string> good = EncodeContent({ContentKind::kText, "hello"});
  ASSERT_TRUE(good.ok());
  auto code = [](std::string bytes) { return DecodeContent(bytes).status().code(); };
  std::string bad = *good;
  bad[0] = 0;  // version 0
  EXPECT_EQ(code(bad), absl::StatusCode::kDataLoss);
  bad = *good;
  bad[1] = 0;  // kind 0
  EXPECT_EQ(code(bad), absl::StatusCode::kDataLoss);
  bad = *good;
  bad[5] = 60;  // length beyond the payload
  EXPECT_EQ(code(bad), absl::StatusCode::kDataLoss);
  bad = *good;
  bad[63] = 1;  // non-zero padding
  EXPECT_EQ(code(bad), absl::StatusCode::kDataLoss);
  EXPECT_EQ(code(good->substr(0, 32)), absl::StatusCode::kDataLoss);  // not a bucket size
  EXPECT_EQ(code("\x01\x01"), absl::StatusCode::kDataLoss);
  EXPECT_EQ(EncodeContent({static_cast<ContentKind>(0), "x"}).status().code(),
            absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace padlock::client
