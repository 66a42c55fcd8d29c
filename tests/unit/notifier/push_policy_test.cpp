#include "services/notifier/push_policy.h"

#include "gtest/gtest.h"
#include "tests/fakes/manual_clock.h"

namespace padlock::notifier {
namespace {

TEST(ClassifyResponse, MapsEachStatusClass) {
  EXPECT_EQ(ClassifyResponse(201), PushOutcome::kSent);
  EXPECT_EQ(ClassifyResponse(200), PushOutcome::kSent);
  EXPECT_EQ(ClassifyResponse(404), PushOutcome::kGone);
  EXPECT_EQ(ClassifyResponse(410), PushOutcome::kGone);
  EXPECT_EQ(ClassifyResponse(429), PushOutcome::kThrottled);
  EXPECT_EQ(ClassifyResponse(500), PushOutcome::kRetry);
  EXPECT_EQ(ClassifyResponse(503), PushOutcome::kRetry);
  EXPECT_EQ(ClassifyResponse(0), PushOutcome::kRetry);  // no answer
  // A redirect is a failure, never a new destination.
  EXPECT_EQ(ClassifyResponse(301), PushOutcome::kFailed);
  EXPECT_EQ(ClassifyResponse(307), PushOutcome::kFailed);
  EXPECT_EQ(ClassifyResponse(308), PushOutcome::kFailed);
  EXPECT_EQ(ClassifyResponse(400), PushOutcome::kFailed);
  EXPECT_EQ(ClassifyResponse(413), PushOutcome::kFailed);
  EXPECT_EQ(OutcomeLabel(PushOutcome::kGone), "gone");
}

TEST(RetryAfter, ReadsSecondsAndHttpDatesAndClamps) {
  const absl::Time now = absl::FromUnixSeconds(1'700'000'000);  // Tue, 14 Nov 2023 22:13:20 GMT
  EXPECT_EQ(RetryAfter("120", now), absl::Seconds(120));
  EXPECT_EQ(RetryAfter(" 5 ", now), absl::Seconds(5));
  EXPECT_EQ(RetryAfter("0", now), absl::ZeroDuration());
  EXPECT_EQ(RetryAfter("Tue, 14 Nov 2023 22:15:20 GMT", now), absl::Seconds(120));
  EXPECT_EQ(RetryAfter("Tue, 14 Nov 2023 22:00:00 GMT", now), absl::ZeroDuration());  // past
  EXPECT_EQ(RetryAfter("999999999999999999999", now), kMaxRetryAfter);
  EXPECT_EQ(RetryAfter("86400", now), kMaxRetryAfter);
  EXPECT_EQ(RetryAfter("", now), kDefaultRetryAfter);
  EXPECT_EQ(RetryAfter("soon", now), kDefaultRetryAfter);
  EXPECT_EQ(RetryAfter("-5", now), kDefaultRetryAfter);
}

TEST(RetryDelay, FullJitterUnderAnExponentialCeilingAndBounded) {
  RetryPolicy policy;
  policy.max_retries = 4;
  policy.base_delay = absl::Seconds(1);
  policy.max_delay = absl::Seconds(3);
  EXPECT_EQ(RetryDelay(policy, 1, 0.999999), absl::Seconds(0.999999));
  EXPECT_EQ(RetryDelay(policy, 2, 0.5), absl::Seconds(1));
  EXPECT_EQ(RetryDelay(policy, 3, 0.5), absl::Seconds(1.5));  // ceiling 4 s capped to 3 s
  EXPECT_EQ(RetryDelay(policy, 4, 0.0), absl::ZeroDuration());
  EXPECT_EQ(RetryDelay(policy, 5, 0.5), absl::InfiniteDuration());  // no retry left
  EXPECT_EQ(RetryDelay(policy, 0, 0.5), absl::InfiniteDuration());
}

TEST(OriginGate, BlocksAnOriginUntilItsTimeAndNeverShortens) {
  testing::ManualClock clock;
  OriginGate gate(&clock);
  const std::string a = "https://a.example";
  EXPECT_EQ(gate.BlockedUntil(a), absl::InfinitePast());
  const absl::Time until = clock.Now() + absl::Seconds(30);
  gate.BlockUntil(a, until);
  EXPECT_EQ(gate.BlockedUntil(a), until);
  EXPECT_EQ(gate.BlockedUntil("https://b.example"), absl::InfinitePast());
  gate.BlockUntil(a, clock.Now() + absl::Seconds(10));  // an earlier end does not shorten
  EXPECT_EQ(gate.BlockedUntil(a), until);
  clock.Advance(absl::Seconds(30) - absl::Milliseconds(1));
  EXPECT_EQ(gate.BlockedUntil(a), until);
  clock.Advance(absl::Milliseconds(1));
  EXPECT_EQ(gate.BlockedUntil(a), absl::InfinitePast());
}

TEST(OriginGate, StaysBounded) {
  testing::ManualClock clock;
  OriginGate gate(&clock);
  for (size_t i = 0; i < OriginGate::kMaxBlockedOrigins + 10; ++i) {
    gate.BlockUntil("https://o" + std::to_string(i) + ".example",
                    clock.Now() + absl::Seconds(static_cast<int64_t>(100 + i)));
  }
  EXPECT_EQ(gate.size(), OriginGate::kMaxBlockedOrigins);
  // The soonest to expire went first; the newest is kept.
  EXPECT_EQ(gate.BlockedUntil("https://o0.example"), absl::InfinitePast());
  EXPECT_NE(gate.BlockedUntil("https://o" + std::to_string(OriginGate::kMaxBlockedOrigins + 9) +
                              ".example"),
            absl::InfinitePast());
}

}  // namespace
}  // namespace padlock::notifier
