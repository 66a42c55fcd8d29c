#pragma once
// RateLimiter on Redis: one Lua script per bucket (Take: one call; TakeEach: one pipeline). The
// bucket is a hash {t: tokens, ts: last refill ms} under the caller's key (give it a hash tag if
// it must share a slot with other keys), refilled from Redis' own clock (TIME) so that replicas
// with skewed clocks agree; it expires once it would be full again, so idle buckets cost nothing.
// Thread-safe; `redis` must outlive the object.

#include <string>
#include <vector>

#include "services/common/ratelimit/rate_limiter.h"
#include "services/common/redis/redis_client.h"
#include "services/common/redis/script.h"

namespace padlock::ratelimit {

class RedisRateLimiter final : public RateLimiter {
 public:
  explicit RedisRateLimiter(redis::RedisClient* redis);
  absl::StatusOr<absl::Duration> Take(const std::string& bucket, const RateLimit& limit) override;
  // One EVALSHA per bucket, all in one RedisClient pipeline: one round trip on a standalone
  // server; on a Cluster, where the buckets usually live in different slots, one batch per node
  // with every node's batch in flight at once. Each bucket is its own script call, so buckets
  // need no common hash tag.
  absl::StatusOr<std::vector<absl::Duration>> TakeEach(
      absl::Span<const BucketTake> takes) override;

 private:
  redis::Command TakeCommand(const std::string& bucket, const RateLimit& limit) const;

  redis::RedisClient* const redis_;
  redis::Script take_;
};

}  // namespace padlock::ratelimit
