// BatchPump: the batching loop of the send and ack pumps, on a fake pump whose calls the test
// answers. No servers.

#include "services/gateway/batch_pump.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <deque>
#include <memory>
#include <vector>

namespace padlock::gateway {
namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;

// Batches of at most `per_batch` ints; started batches wait in `started` until Answer.
class FakePump final : public BatchPump<int, std::vector<int>> {
 public:
  FakePump(int max_in_flight, size_t per_batch) : BatchPump(max_in_flight), per_batch_(per_batch) {}

  // Answers the oldest started batch; `again` rejoin the ready list.
  // Queued without a batch, then flushed later (the ack pump's linger).
  void AddOnly(int item) { Add(item); }
  void FlushNow() { Flush(); }
  // Another pump's batch takes the waiting items it wants.
  std::vector<int> TakeEven() {
    std::vector<int> taken;
    TakeFromReady([&](std::deque<int>& ready) {
      for (auto it = ready.begin(); it != ready.end();) {
        if (*it % 2 == 0) {
          taken.push_back(*it);
          it = ready.erase(it);
        } else {
          ++it;
        }
      }
    });
    return taken;
  }

  void Answer(std::vector<int> again = {}) {
    ASSERT_FALSE(started.empty());
    started.erase(started.begin());
    Done(&again);
  }

  std::vector<std::vector<int>> started;

 private:
  void Fill(std::vector<int>& batch, std::deque<int>& ready) override {
    while (!ready.empty() && batch.size() < per_batch_) {
      batch.push_back(ready.front());
      ready.pop_front();
    }
  }
  bool Empty(const std::vector<int>& batch) const override { return batch.empty(); }
  void Start(std::unique_ptr<std::vector<int>> batch) override { started.push_back(*batch); }

  const size_t per_batch_;
};

TEST(BatchPump, ReadyItemStartsABatchAtOnce) {
  FakePump pump(/*max_in_flight=*/2, /*per_batch=*/10);
  EXPECT_TRUE(pump.Idle());
  pump.Ready(1);
  ASSERT_EQ(pump.started.size(), 1u);
  EXPECT_THAT(pump.started[0], ElementsAre(1));
  EXPECT_FALSE(pump.Idle());  // a batch is out
  pump.Answer();
  EXPECT_TRUE(pump.Idle());
}

TEST(BatchPump, AtMostMaxInFlightThenWhatWaitedGoesInOneBatch) {
  FakePump pump(/*max_in_flight=*/2, /*per_batch=*/10);
  pump.Ready(1);
  pump.Ready(2);
  pump.Ready(3);
  pump.Ready(4);
  ASSERT_EQ(pump.started.size(), 2u);  // 3 and 4 wait for a free slot
  pump.Answer();
  ASSERT_EQ(pump.started.size(), 2u);
  EXPECT_THAT(pump.started[1], ElementsAre(3, 4));
  pump.Answer();
  pump.Answer();
  EXPECT_TRUE(pump.Idle());
}

TEST(BatchPump, BatchIsBoundedAndTheRestFollows) {
  FakePump pump(/*max_in_flight=*/1, /*per_batch=*/2);
  pump.Ready(1);  // starts alone
  pump.Ready(2);
  pump.Ready(3);
  pump.Ready(4);
  pump.Answer();
  ASSERT_EQ(pump.started.size(), 1u);
  EXPECT_THAT(pump.started[0], ElementsAre(2, 3));
  pump.Answer();
  ASSERT_EQ(pump.started.size(), 1u);
  EXPECT_THAT(pump.started[0], ElementsAre(4));
}

TEST(BatchPump, ItemsWithMoreWorkRejoinWhenTheirBatchIsAnswered) {
  FakePump pump(/*max_in_flight=*/1, /*per_batch=*/10);
  pump.Ready(7);
  pump.Answer(/*again=*/{7});
  ASSERT_EQ(pump.started.size(), 1u);
  EXPECT_THAT(pump.started[0], ElementsAre(7));
  pump.Answer();
  EXPECT_THAT(pump.started, IsEmpty());
  EXPECT_TRUE(pump.Idle());
}

TEST(BatchPump, AddedItemsWaitForAFlushAndGoInOneBatch) {
  FakePump pump(/*max_in_flight=*/2, /*per_batch=*/10);
  pump.AddOnly(1);
  pump.AddOnly(2);
  EXPECT_THAT(pump.started, IsEmpty());
  EXPECT_FALSE(pump.Idle());  // work waits
  pump.FlushNow();
  ASSERT_EQ(pump.started.size(), 1u);
  EXPECT_THAT(pump.started[0], ElementsAre(1, 2));
}

TEST(BatchPump, WorkTakenByAnotherBatchIsNotStartedAgain) {
  FakePump pump(/*max_in_flight=*/2, /*per_batch=*/10);
  pump.AddOnly(1);
  pump.AddOnly(2);
  pump.AddOnly(4);
  EXPECT_THAT(pump.TakeEven(), ElementsAre(2, 4));
  pump.FlushNow();
  ASSERT_EQ(pump.started.size(), 1u);
  EXPECT_THAT(pump.started[0], ElementsAre(1));
  pump.Answer();
  EXPECT_TRUE(pump.Idle());
}

}  // namespace
}  // namespace padlock::gateway
