#pragma once
// Scheduler on a BoundedExecutor: a task with a delay waits on a timer thread, then goes to the
// executor like one without. A refused task (queue full, shutting down) is dropped and counted:
// a wake-up is best effort. Thread-safe.

#include <condition_variable>
#include <functional>
#include <map>
#include <mutex>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/time/time.h"
#include "services/common/runtime/executor.h"
#include "services/notifier/push_dispatcher.h"

namespace prometheus {
class Counter;
class Registry;
}  // namespace prometheus

namespace padlock::notifier {

class TimerScheduler final : public Scheduler {
 public:
  // `executor` must outlive this; `metrics` may be null.
  TimerScheduler(runtime::BoundedExecutor* executor, prometheus::Registry* metrics);
  // Stop().
  ~TimerScheduler() override;
  void RunAfter(absl::Duration delay, std::function<void()> task) override;
  // Drops the tasks still waiting for their time and joins the timer thread. Idempotent.
  void Stop();

 private:
  void Submit(std::function<void()> task);
  void Loop();

  runtime::BoundedExecutor* const executor_;
  prometheus::Counter* dropped_ = nullptr;
  std::mutex mu_;
  std::condition_variable changed_;
  std::multimap<absl::Time, std::function<void()>> waiting_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::thread thread_;
};

}  // namespace padlock::notifier
