#include "services/gateway/linger_timer.h"

#include <utility>

namespace padlock::gateway {

LingerTimer::LingerTimer(absl::Duration delay, std::function<void()> fire)
    : delay_(std::chrono::duration_cast<std::chrono::steady_clock::duration>(
          absl::ToChronoNanoseconds(delay))),
      fire_(std::move(fire)),
      thread_([this] { Loop(); }) {}

LingerTimer::~LingerTimer() {
  {
    std::lock_guard lock(mu_);
    stop_ = true;
  }
  cv_.notify_one();
  thread_.join();
}

void LingerTimer::Arm() {
  {
    std::lock_guard lock(mu_);
    if (due_.has_value()) return;
    due_ = std::chrono::steady_clock::now() + delay_;
  }
  cv_.notify_one();
}

void LingerTimer::Loop() {
  std::unique_lock lock(mu_);
  while (!stop_) {
    if (!due_.has_value()) {
      cv_.wait(lock);
      continue;
    }
    if (std::chrono::steady_clock::now() < *due_) {
      cv_.wait_until(lock, *due_);
      continue;
    }
    due_.reset();
    lock.unlock();
    fire_();
    lock.lock();
  }
}

}  // namespace padlock::gateway
