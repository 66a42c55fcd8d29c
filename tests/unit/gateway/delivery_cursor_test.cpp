// DeliveryCursor: when a stream pushes a wake-up's envelope and when it reads the inbox, which acks
// it accepts, back-pressure at the unacked limit, read retries and token expiry. No servers.

#include "services/gateway/delivery_cursor.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "tests/fakes/manual_clock.h"

namespace padlock::gateway {
namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;
using Read = DeliveryCursor::Read;
using Wakeup = DeliveryCursor::Wakeup;

constexpr absl::Duration kReadRetry = absl::Milliseconds(500);

// A cursor whose first inbox read has ended with an empty inbox: it follows wake-ups.
class Following {
 public:
  explicit Following(uint32_t max_unacked = 256) : cursor(&clock, max_unacked, kReadRetry) {
    cursor.OnSubscribed();
    EXPECT_EQ(cursor.BeginRead(), Read::kStart);
    cursor.EndRead();
    EXPECT_TRUE(cursor.InboxReadEnded(/*end_of_inbox=*/true));
  }
  testing::ManualClock clock;
  DeliveryCursor cursor;
};

std::string Id(uint64_t sequence) { return "1700000000000-" + std::to_string(sequence); }

padlock::v1::StreamAck AckOf(const std::string& up_to, const std::vector<std::string>& ids = {}) {
  padlock::v1::StreamAck ack;
  ack.set_up_to_server_id(up_to);
  for (const auto& id : ids) ack.add_server_ids(id);
  return ack;
}

// Applies `ack`; returns the refused ids.
std::vector<std::string> Apply(DeliveryCursor& cursor, const padlock::v1::StreamAck& ack,
                               size_t* acked = nullptr) {
  std::vector<std::string> refused;
  const size_t n = cursor.Ack(
      ack, [&](const std::string& id) { refused.push_back(id); }, [](absl::Duration) {});
  if (acked != nullptr) *acked = n;
  return refused;
}

TEST(DeliveryCursor, NextSequenceWithEnvelopeIsPushedWithoutARead) {
  Following f;
  bool gap_fill = true;
  EXPECT_EQ(f.cursor.OnWakeup(1, /*has_envelope=*/true, &gap_fill), Wakeup::kPush);
  EXPECT_FALSE(gap_fill);
  f.cursor.Track(Id(1), 1);
  EXPECT_EQ(f.cursor.BeginRead(), Read::kNone);
  EXPECT_EQ(f.cursor.OnWakeup(1, true, &gap_fill), Wakeup::kIgnore);  // already handed out
}

TEST(DeliveryCursor, JumpInSequenceFillsTheGapFromTheCursor) {
  Following f;
  bool gap_fill = false;
  ASSERT_EQ(f.cursor.OnWakeup(1, true, &gap_fill), Wakeup::kPush);
  f.cursor.Track(Id(1), 1);
  // Sequence 2 was lost: 3 must not be pushed, the inbox is read after 1.
  EXPECT_EQ(f.cursor.OnWakeup(3, true, &gap_fill), Wakeup::kRead);
  EXPECT_TRUE(gap_fill);
  ASSERT_EQ(f.cursor.BeginRead(), Read::kStart);
  EXPECT_EQ(f.cursor.after_server_id(), Id(1));
  EXPECT_EQ(f.cursor.after_sequence(), 1u);
  // Further wake-ups while the read is out are not gap fills of their own, and not pushed.
  EXPECT_EQ(f.cursor.OnWakeup(4, true, &gap_fill), Wakeup::kRead);
  EXPECT_FALSE(gap_fill);
  f.cursor.EndRead();
  EXPECT_TRUE(f.cursor.IsNew(2));
  f.cursor.Track(Id(2), 2);
  f.cursor.Track(Id(3), 3);
  EXPECT_FALSE(f.cursor.InboxReadEnded(true));  // QueueEmpty was told once already
  // Wake-up 4 came during the read: read again from 3.
  ASSERT_EQ(f.cursor.BeginRead(), Read::kStart);
  EXPECT_EQ(f.cursor.after_sequence(), 3u);
}

TEST(DeliveryCursor, WakeupWithoutEnvelopeReadsTheInbox) {
  Following f;
  bool gap_fill = true;
  EXPECT_EQ(f.cursor.OnWakeup(1, /*has_envelope=*/false, &gap_fill), Wakeup::kRead);
  EXPECT_FALSE(gap_fill);  // the next sequence: not a gap
  EXPECT_EQ(f.cursor.BeginRead(), Read::kStart);
}

TEST(DeliveryCursor, WakeupBeforeTheSubscriptionIsConfirmedWaitsForTheRead) {
  testing::ManualClock clock;
  DeliveryCursor cursor(&clock, 256, kReadRetry);
  bool gap_fill = false;
  EXPECT_EQ(cursor.OnWakeup(1, true, &gap_fill), Wakeup::kRead);
  EXPECT_EQ(cursor.BeginRead(), Read::kNone);
  cursor.OnSubscribed();
  ASSERT_EQ(cursor.BeginRead(), Read::kStart);
  EXPECT_EQ(cursor.after_sequence(), 0u);
}

TEST(DeliveryCursor, WakeupThatOvertakesTheFirstInboxReadIsReadNotPushed) {
  testing::ManualClock clock;
  DeliveryCursor cursor(&clock, 256, kReadRetry);
  cursor.OnSubscribed();
  ASSERT_EQ(cursor.BeginRead(), Read::kStart);
  // The first read is out and the wake-up of sequence 1 arrives before its answer: pushed now, it
  // would overtake what the read brings before it (gap markers, the backlog's order).
  bool gap_fill = true;
  EXPECT_EQ(cursor.OnWakeup(1, true, &gap_fill), Wakeup::kRead);
  EXPECT_FALSE(gap_fill);
  // A later one too, and it is not a gap fill of its own.
  EXPECT_EQ(cursor.OnWakeup(2, true, &gap_fill), Wakeup::kRead);
  EXPECT_FALSE(gap_fill);
  EXPECT_EQ(cursor.BeginRead(), Read::kNone);  // one read at a time
  // The read returns only sequence 1 (its snapshot predates 2) and the end of the inbox.
  cursor.EndRead();
  ASSERT_TRUE(cursor.IsNew(1));
  cursor.Track(Id(1), 1);
  cursor.AdvanceTo(Id(1), 1);
  EXPECT_TRUE(cursor.InboxReadEnded(true));
  // The overtaking wake-ups are not lost: the inbox is read again after 1.
  ASSERT_EQ(cursor.BeginRead(), Read::kStart);
  EXPECT_EQ(cursor.after_sequence(), 1u);
  EXPECT_EQ(cursor.after_server_id(), Id(1));
}

TEST(DeliveryCursor, ReadSkipsEnvelopesAlreadyHandedOut) {
  Following f;
  f.cursor.Track(Id(1), 1);
  f.cursor.Track(Id(2), 2);
  EXPECT_FALSE(f.cursor.IsNew(1));
  EXPECT_FALSE(f.cursor.IsNew(2));
  EXPECT_TRUE(f.cursor.IsNew(3));
  // A read's continuation point never moves the cursor back.
  f.cursor.AdvanceTo(Id(1), 1);
  EXPECT_EQ(f.cursor.after_sequence(), 2u);
  f.cursor.AdvanceTo(Id(9), 9);  // past expired entries
  EXPECT_EQ(f.cursor.after_sequence(), 9u);
  EXPECT_EQ(f.cursor.after_server_id(), Id(9));
}

TEST(DeliveryCursor, AcksBeyondTheCursorAreRefused) {
  Following f;
  f.cursor.Track(Id(1), 1);
  f.cursor.Track(Id(2), 2);
  size_t acked = 99;
  // Sequence 3 was never handed out on this stream: a cumulative ack up to it changes nothing.
  EXPECT_THAT(Apply(f.cursor, AckOf(Id(3)), &acked), ElementsAre(Id(3)));
  EXPECT_EQ(acked, 0u);
  EXPECT_EQ(f.cursor.unacked(), 2u);
  EXPECT_FALSE(f.cursor.HasPendingAcks());
  EXPECT_FALSE(f.cursor.TakeAcks(100).has_value());
  // Individual ids: the delivered one is taken, the unknown one refused.
  EXPECT_THAT(Apply(f.cursor, AckOf("", {Id(2), Id(7)}), &acked), ElementsAre(Id(7)));
  EXPECT_EQ(acked, 1u);
  // Acked twice: refused the second time.
  EXPECT_THAT(Apply(f.cursor, AckOf("", {Id(2)})), ElementsAre(Id(2)));
  std::optional<padlock::v1::DeviceAck> taken = f.cursor.TakeAcks(100);
  ASSERT_TRUE(taken.has_value());
  EXPECT_THAT(taken->server_ids(), ElementsAre(Id(2)));
  EXPECT_EQ(taken->up_to_server_id(), "");
  EXPECT_EQ(f.cursor.unacked(), 1u);
}

TEST(DeliveryCursor, CumulativeAckTakesEverythingUpToItAndTimesEach) {
  Following f;
  f.cursor.Track(Id(1), 1);
  f.clock.Advance(absl::Milliseconds(30));
  f.cursor.Track(Id(2), 2);
  f.cursor.Track(Id(3), 3);
  f.clock.Advance(absl::Milliseconds(20));
  std::vector<absl::Duration> latencies;
  const size_t acked = f.cursor.Ack(
      AckOf(Id(2)), [](const std::string& id) { ADD_FAILURE() << "refused " << id; },
      [&](absl::Duration d) { latencies.push_back(d); });
  EXPECT_EQ(acked, 2u);
  EXPECT_THAT(latencies, ElementsAre(absl::Milliseconds(50), absl::Milliseconds(20)));
  EXPECT_EQ(f.cursor.unacked(), 1u);
  std::optional<padlock::v1::DeviceAck> taken = f.cursor.TakeAcks(100);
  ASSERT_TRUE(taken.has_value());
  EXPECT_EQ(taken->up_to_server_id(), Id(2));
  EXPECT_THAT(taken->server_ids(), IsEmpty());
  EXPECT_FALSE(f.cursor.HasPendingAcks());
}

TEST(DeliveryCursor, TakeAcksLeavesIdsBeyondTheBudgetPending) {
  Following f;
  for (uint64_t s = 1; s <= 3; ++s) f.cursor.Track(Id(s), s);
  ASSERT_THAT(Apply(f.cursor, AckOf("", {Id(3), Id(1), Id(2)})), IsEmpty());
  std::optional<padlock::v1::DeviceAck> first = f.cursor.TakeAcks(2);
  ASSERT_TRUE(first.has_value());
  EXPECT_THAT(first->server_ids(), ElementsAre(Id(3), Id(1)));  // the oldest acks first
  EXPECT_TRUE(f.cursor.HasPendingAcks());
  std::optional<padlock::v1::DeviceAck> second = f.cursor.TakeAcks(2);
  ASSERT_TRUE(second.has_value());
  EXPECT_THAT(second->server_ids(), ElementsAre(Id(2)));
  EXPECT_FALSE(f.cursor.HasPendingAcks());
}

TEST(DeliveryCursor, BackPressureAtTheUnackedLimit) {
  Following f(/*max_unacked=*/2);
  bool gap_fill = false;
  ASSERT_EQ(f.cursor.OnWakeup(1, true, &gap_fill), Wakeup::kPush);
  f.cursor.Track(Id(1), 1);
  EXPECT_EQ(f.cursor.read_limit(), 1u);
  ASSERT_EQ(f.cursor.OnWakeup(2, true, &gap_fill), Wakeup::kPush);
  f.cursor.Track(Id(2), 2);
  EXPECT_FALSE(f.cursor.HasRoom());
  // Window full: the next envelope is neither pushed nor read until an ack frees a slot.
  EXPECT_EQ(f.cursor.OnWakeup(3, true, &gap_fill), Wakeup::kRead);
  EXPECT_EQ(f.cursor.BeginRead(), Read::kNone);
  EXPECT_TRUE(f.cursor.ReadWanted());
  ASSERT_THAT(Apply(f.cursor, AckOf(Id(1))), IsEmpty());
  ASSERT_EQ(f.cursor.BeginRead(), Read::kStart);
  EXPECT_EQ(f.cursor.read_limit(), 1u);
  EXPECT_EQ(f.cursor.after_sequence(), 2u);
}

TEST(DeliveryCursor, FailedReadIsRetriedOnlyAfterTheRetryDelay) {
  Following f;
  bool gap_fill = false;
  f.cursor.OnWakeup(1, false, &gap_fill);
  ASSERT_EQ(f.cursor.BeginRead(), Read::kStart);
  f.cursor.EndRead();
  f.cursor.RetryReadLater();
  EXPECT_TRUE(f.cursor.ReadWanted());
  EXPECT_EQ(f.cursor.BeginRead(), Read::kRetryLater);
  f.clock.Advance(kReadRetry - absl::Milliseconds(1));
  EXPECT_EQ(f.cursor.BeginRead(), Read::kRetryLater);
  f.clock.Advance(absl::Milliseconds(1));
  EXPECT_EQ(f.cursor.BeginRead(), Read::kStart);
}

TEST(DeliveryCursor, TokenExpiresAtItsExpiryTime) {
  testing::ManualClock clock;
  const absl::Time expires_at = clock.Now() + absl::Minutes(10);
  EXPECT_FALSE(DeliveryCursor::TokenExpired(expires_at, clock.Now()));
  clock.Advance(absl::Minutes(10) - absl::Milliseconds(1));
  EXPECT_FALSE(DeliveryCursor::TokenExpired(expires_at, clock.Now()));
  clock.Advance(absl::Milliseconds(1));
  EXPECT_TRUE(DeliveryCursor::TokenExpired(expires_at, clock.Now()));
}

TEST(DeliveryCursor, DropUnackedForgetsTheWindow) {
  Following f;
  f.cursor.Track(Id(1), 1);
  f.cursor.Track(Id(2), 2);
  EXPECT_EQ(f.cursor.DropUnacked(), 2u);
  EXPECT_EQ(f.cursor.unacked(), 0u);
  EXPECT_THAT(Apply(f.cursor, AckOf(Id(1))), ElementsAre(Id(1)));
}

}  // namespace
}  // namespace padlock::gateway
