#pragma once
// The gateway's rate limits are token buckets shared by every replica: the common RateLimiter
// (services/common/ratelimit; Redis in production, a fake in unit tests).

#include "services/common/ratelimit/rate_limiter.h"

namespace padlock::gateway {

using ratelimit::RateLimit;
using ratelimit::RateLimiter;

}  // namespace padlock::gateway
