#pragma once
// The wall clock, injected: logic that reads the time takes a Clock* so that tests set the time
// instead of sleeping (tests/fakes/manual_clock.h). Header-only, so the client SDK uses it too
// without linking the server runtime. Implementations are thread-safe.

#include <cstdint>

#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace padlock::runtime {

class Clock {
 public:
  virtual ~Clock() = default;
  virtual absl::Time Now() const = 0;
  // Now() in Unix milliseconds.
  int64_t NowMs() const { return absl::ToUnixMillis(Now()); }
};

// absl::Now().
class SystemClock final : public Clock {
 public:
  absl::Time Now() const override { return absl::Now(); }

  // A process-wide instance (it has no state), for `clock != nullptr ? clock : SystemClock::Get()`.
  // Never destroyed: threads may read the time while static destructors run.
  static SystemClock* Get() {
    static SystemClock* const clock = new SystemClock;
    return clock;
  }
};

}  // namespace padlock::runtime
