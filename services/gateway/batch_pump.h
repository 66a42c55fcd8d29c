#pragma once
// The batching loop shared by the send and ack pumps: items with work wait in a ready list; while
// fewer than `max_in_flight` batches are out, the next batch takes what it can from the list and
// starts. An answered batch may put items back (they have more work) and starts the next ones.
//
// A pump derives from it and implements the three hooks (called by Flush, once per batch).
// Lock order: the pump's mutex is held while Fill takes work from the items (pump → item), never
// while Start runs. Thread-safe.

#include <deque>
#include <memory>
#include <mutex>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"

namespace padlock::gateway {

template <typename Item, typename Batch>
class BatchPump {
 public:
  explicit BatchPump(int max_in_flight) : max_in_flight_(max_in_flight) {}
  BatchPump(const BatchPump&) = delete;
  BatchPump& operator=(const BatchPump&) = delete;

  // `item` has work: it joins the ready list and batches start as far as the limit allows.
  void Ready(Item item) {
    {
      std::lock_guard lock(mu_);
      ready_.push_back(std::move(item));
    }
    Flush();
  }

  // Nothing waits and no batch is out.
  bool Idle() const {
    std::lock_guard lock(mu_);
    return ready_.empty() && in_flight_ == 0;
  }

 protected:
  virtual ~BatchPump() = default;

  // Under the pump's mutex: moves work from `ready` into `batch` (an item with work left may stay
  // in `ready`). Must not call into the pump.
  virtual void Fill(Batch& batch, std::deque<Item>& ready) = 0;
  // Nothing was taken: the batch is dropped, not started.
  virtual bool Empty(const Batch& batch) const = 0;
  // Outside the mutex: starts the call; once it is answered the pump must call Done.
  virtual void Start(std::unique_ptr<Batch> batch) = 0;

  void Flush() {
    while (true) {
      auto batch = std::make_unique<Batch>();
      {
        std::lock_guard lock(mu_);
        if (in_flight_ >= max_in_flight_) return;
        Fill(*batch, ready_);
        if (Empty(*batch)) return;
        ++in_flight_;
      }
      Start(std::move(batch));
    }
  }

  // Queues `item` without starting a batch: the pump flushes later (a linger).
  void Add(Item item) {
    std::lock_guard lock(mu_);
    ready_.push_back(std::move(item));
  }

  // `take(ready)` may move work out of the ready list under the pump's mutex (another pump's
  // batch carrying it). Lock order: the caller's pump → this pump → item.
  template <typename Take>
  void TakeFromReady(Take take) {
    std::lock_guard lock(mu_);
    take(ready_);
  }

  // A batch started outside Flush counts as in flight too (until its Done).
  void AddInFlight() {
    std::lock_guard lock(mu_);
    ++in_flight_;
  }

  // A batch was answered: `again` (may be null) rejoin the ready list, then the next batches start.
  void Done(std::vector<Item>* again) {
    {
      std::lock_guard lock(mu_);
      --in_flight_;
      if (again != nullptr) {
        for (Item& item : *again) ready_.push_back(std::move(item));
      }
    }
    Flush();
  }

 private:
  const int max_in_flight_;
  mutable std::mutex mu_;
  std::deque<Item> ready_ ABSL_GUARDED_BY(mu_);
  int in_flight_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace padlock::gateway
