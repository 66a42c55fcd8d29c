#pragma once
// One stream's admission of sends: the per-device token bucket (kept in process: a device is on one
// gateway) and the request ids queued or in flight, which a new send may not reuse. No transport.
// Not thread-safe (the stream's mutex guards it).

#include <cstdint>
#include <set>

#include "absl/time/time.h"
#include "services/common/ratelimit/rate_limiter.h"
#include "services/common/runtime/clock.h"

namespace padlock::gateway {

class SendWindow {
 public:
  // Starts with a full bucket. `clock` must outlive the window.
  SendWindow(runtime::Clock* clock, ratelimit::RateLimit limit);

  // `request_id` is queued or in flight on this stream.
  bool IsOpen(uint64_t request_id) const { return open_.contains(request_id); }

  struct Admission {
    bool admitted = false;
    uint32_t retry_after_ms = 0;  // when refused: until the bucket holds a token again
  };
  // Takes a token and opens `request_id`; without a token nothing changes and the answer says when
  // to retry.
  Admission Admit(uint64_t request_id);
  // The request was answered (or dropped): its id may be used again.
  void Close(uint64_t request_id) { open_.erase(request_id); }
  size_t open() const { return open_.size(); }

 private:
  runtime::Clock* const clock_;
  const ratelimit::RateLimit limit_;
  double tokens_;
  absl::Time tokens_at_;
  std::set<uint64_t> open_;
};

}  // namespace padlock::gateway
