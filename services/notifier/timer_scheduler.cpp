#include "services/notifier/timer_scheduler.h"

#include <utility>

#include "absl/time/clock.h"
#include "services/common/runtime/metrics_util.h"

namespace padlock::notifier {

TimerScheduler::TimerScheduler(runtime::BoundedExecutor* executor, prometheus::Registry* metrics)
    : executor_(executor) {
  dropped_ = runtime::MakeCounter(metrics, "padlock_notifier_tasks_dropped_total",
                                  "Push tasks dropped because the worker queue was full");
  thread_ = std::thread([this] { Loop(); });
}

TimerScheduler::~TimerScheduler() { Stop(); }

void TimerScheduler::Stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stopping_) return;
    stopping_ = true;
    waiting_.clear();
  }
  changed_.notify_all();
  thread_.join();
}

void TimerScheduler::Submit(std::function<void()> task) {
  if (!executor_->Submit([task = std::move(task)]() mutable { task(); }).ok()) {
    runtime::Increment(dropped_);
  }
}

void TimerScheduler::RunAfter(absl::Duration delay, std::function<void()> task) {
  if (delay <= absl::ZeroDuration()) {
    Submit(std::move(task));
    return;
  }
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stopping_) return;
    waiting_.emplace(absl::Now() + delay, std::move(task));
  }
  changed_.notify_all();
}

void TimerScheduler::Loop() {
  std::unique_lock<std::mutex> lock(mu_);
  while (!stopping_) {
    if (waiting_.empty()) {
      changed_.wait(lock);
      continue;
    }
    const absl::Time due = waiting_.begin()->first;
    const absl::Time now = absl::Now();
    if (due > now) {
      changed_.wait_for(lock, absl::ToChronoNanoseconds(due - now));
      continue;
    }
    std::function<void()> task = std::move(waiting_.begin()->second);
    waiting_.erase(waiting_.begin());
    lock.unlock();
    Submit(std::move(task));
    lock.lock();
  }
}

}  // namespace padlock::notifier
