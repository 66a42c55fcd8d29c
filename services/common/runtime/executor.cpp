#include "services/common/runtime/executor.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"

namespace padlock::runtime {

BoundedExecutor::BoundedExecutor(std::string name, int threads, size_t max_queue)
    : name_(std::move(name)), max_queue_(std::max<size_t>(max_queue, 1)) {
  const int count = std::max(threads, 1);
  workers_.reserve(static_cast<size_t>(count));
  for (int i = 0; i < count; ++i) workers_.emplace_back([this] { WorkerLoop(); });
}

BoundedExecutor::~BoundedExecutor() { Shutdown(); }

absl::Status BoundedExecutor::Submit(absl::AnyInvocable<void() &&> task) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (shutting_down_) {
      return absl::UnavailableError(absl::StrCat("executor ", name_, " is shut down"));
    }
    if (queue_.size() >= max_queue_) {
      return absl::ResourceExhaustedError(
          absl::StrCat("executor ", name_, " queue is full (", max_queue_, " waiting)"));
    }
    queue_.push_back(std::move(task));
  }
  work_or_stop_.notify_one();
  return absl::OkStatus();
}

void BoundedExecutor::WorkerLoop() {
  while (true) {
    absl::AnyInvocable<void() &&> task;
    {
      std::unique_lock<std::mutex> lock(mu_);
      work_or_stop_.wait(lock, [this] { return shutting_down_ || !queue_.empty(); });
      // Drain before exiting: every accepted task runs exactly once.
      if (queue_.empty()) return;
      task = std::move(queue_.front());
      queue_.pop_front();
    }
    std::move(task)();
  }
}

void BoundedExecutor::Shutdown() {
  std::lock_guard<std::mutex> join_lock(join_mu_);
  {
    std::lock_guard<std::mutex> lock(mu_);
    shutting_down_ = true;
  }
  work_or_stop_.notify_all();
  for (std::thread& worker : workers_) {
    if (worker.joinable()) worker.join();
  }
}

size_t BoundedExecutor::queued() const {
  std::lock_guard<std::mutex> lock(mu_);
  return queue_.size();
}

}  // namespace padlock::runtime
