#include "services/gateway/turn.h"

#include <gtest/gtest.h>

namespace padlock::gateway {
namespace {

TEST(Turn, UnconfiguredIsFailedPrecondition) {
  EXPECT_EQ(MakeTurnCredentials({}, "x", absl::Now()).status().code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(MakeTurnCredentials({.secret = "s"}, "x", absl::Now()).status().code(),
            absl::StatusCode::kFailedPrecondition);
}

TEST(Turn, CoturnSharedSecretScheme) {
  TurnOptions options{.secret = "north", .urls = {"turn:turn.example:3478"},
                      .ttl = absl::Seconds(600)};
  absl::StatusOr<TurnCredentials> c =
      MakeTurnCredentials(options, "0123abcd", absl::FromUnixSeconds(1000));
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->username, "1600:0123abcd");
  // printf '1600:0123abcd' | openssl dgst -sha1 -hmac north -binary | base64
  EXPECT_EQ(c->password, "2o68Knj3+Z5/O34FdIdJU5vLzro=");
  EXPECT_EQ(c->ttl_seconds, 600u);
  EXPECT_EQ(c->urls, options.urls);
}

}  // namespace
}  // namespace padlock::gateway
