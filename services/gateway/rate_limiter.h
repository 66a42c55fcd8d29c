#pragma once
// Token buckets shared by every gateway replica (Redis in production). No grpc/hiredis here.

#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace padlock::gateway {

struct RateLimit {
  double burst = 0;       // bucket capacity (tokens)
  double per_second = 0;  // refill rate (tokens per second)
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

}  // namespace padlock::gateway
