#pragma once
// Token buckets shared by every replica of a service (Redis in production, a fake in unit tests).
// This header is the interface only: logic that rate-limits includes it without Redis or hiredis.

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "absl/types/span.h"

namespace padlock::ratelimit {

struct RateLimit {
  double burst = 0;       // bucket capacity (tokens)
  double per_second = 0;  // refill rate (tokens per second), > 0
};

// One bucket of a TakeEach call: its key and its limit.
struct BucketTake {
  std::string bucket;
  RateLimit limit;
};

// Thread-safe.
class RateLimiter {
 public:
  virtual ~RateLimiter() = default;
  // Takes one token from `bucket`. Returns zero when taken, else how long until one is available
  // (nothing taken). Unavailable when the store is down.
  virtual absl::StatusOr<absl::Duration> Take(const std::string& bucket,
                                              const RateLimit& limit) = 0;

  // Takes one token from each of `takes`, in one round trip to the store. Each bucket decides on
  // its own, exactly as Take would: one with a token gives it even when another bucket has none
  // (nothing is given back), so a refused caller is still charged wherever it could be. Returns
  // one wait per entry, in order: zero when that bucket gave a token, else how long until it has
  // one. Unavailable when the store is down or did not answer for some bucket; the other
  // buckets may then have been charged (as with Take called once per bucket).
  virtual absl::StatusOr<std::vector<absl::Duration>> TakeEach(
      absl::Span<const BucketTake> takes) = 0;
};

}  // namespace padlock::ratelimit
