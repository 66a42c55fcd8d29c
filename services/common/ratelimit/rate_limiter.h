#pragma once
// Token buckets shared by every replica of a service (Redis in production, a fake in unit tests).
// This header is the interface only: logic that rate-limits includes it without Redis or hiredis.

#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace padlock::ratelimit {

struct RateLimit {
  double burst = 0;       // bucket capacity (tokens)
  double per_second = 0;  // refill rate (tokens per second), > 0
};

// Thread-safe.
class RateLimiter {
 public:
  virtual ~RateLimiter() = default;
  // Takes one token from `bucket`. Returns zero when taken, else how long until one is available
  // (nothing taken). Unavailable when the store is down.
  virtual absl::StatusOr<absl::Duration> Take(const std::string& bucket,
                                              const RateLimit& limit) = 0;
};

}  // namespace padlock::ratelimit
