#pragma once
// The one fake Clock for tests: the time moves only when the test says so. Thread-safe.

#include <cstdint>
#include <mutex>

#include "absl/base/thread_annotations.h"
#include "absl/time/time.h"
#include "services/common/runtime/clock.h"

namespace padlock::testing {

class ManualClock final : public runtime::Clock {
 public:
  // 2023-11-14T22:13:20Z, a fixed start so that runs are repeatable.
  static constexpr int64_t kDefaultStartMs = 1'700'000'000'000;

  explicit ManualClock(absl::Time now = absl::FromUnixMillis(kDefaultStartMs)) : now_(now) {}
  explicit ManualClock(int64_t now_ms) : ManualClock(absl::FromUnixMillis(now_ms)) {}

  absl::Time Now() const override {
    std::lock_guard<std::mutex> lock(mu_);
    return now_;
  }
  void Advance(absl::Duration by) {
    std::lock_guard<std::mutex> lock(mu_);
    now_ += by;
  }
  void Set(absl::Time now) {
    std::lock_guard<std::mutex> lock(mu_);
    now_ = now;
  }

 private:
  mutable std::mutex mu_;  // std::mutex, not absl::Mutex: TSan cannot see Debian's absl::Mutex
  absl::Time now_ ABSL_GUARDED_BY(mu_);
};

}  // namespace padlock::testing
