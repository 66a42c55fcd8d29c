#pragma once
// Runs a callback once, `delay` after the first Arm since it last ran: the ack pump's short wait
// for more acks, or for an Enqueue call that carries them (stream_pumps.h). One thread, asleep
// while unarmed. Thread-safe. The destructor stops the thread: a callback already running
// finishes first, none starts after.

#include <chrono>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <optional>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/time/time.h"

namespace padlock::gateway {

class LingerTimer {
 public:
  LingerTimer(absl::Duration delay, std::function<void()> fire);
  ~LingerTimer();
  LingerTimer(const LingerTimer&) = delete;
  LingerTimer& operator=(const LingerTimer&) = delete;

  // Fires `delay` from now, unless it is armed already (then the earlier time stands).
  void Arm();

 private:
  void Loop();

  const std::chrono::steady_clock::duration delay_;
  const std::function<void()> fire_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::optional<std::chrono::steady_clock::time_point> due_ ABSL_GUARDED_BY(mu_);
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  std::thread thread_;  // last: started once the fields it reads exist
};

}  // namespace padlock::gateway
