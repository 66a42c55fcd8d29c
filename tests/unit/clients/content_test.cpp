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
  EXPECT_EQ(PaddedContentSize(kMaxContentBodySize), 5u * 65536u);
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
  EXPECT_EQ(EncodeContent({ContentKind::kText, big + "z"}).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(Content, RejectsMalformed) {
  absl::StatusOr<std::string> good = EncodeContent({ContentKind::kText, "hello"});
  ASSERT_TRUE(good.ok());
  auto code = [](std::string bytes) { return DecodeContent(bytes).status().code(); };
  std::string bad = *good;
  bad[0] = 2;  // version
  EXPECT_EQ(code(bad), absl::StatusCode::kDataLoss);
  bad = *good;
  bad[1] = 9;  // kind
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
