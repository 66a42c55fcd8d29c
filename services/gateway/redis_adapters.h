#pragma once
// The gateway's Redis-backed interfaces: login challenges (single-use, with a TTL) and token
// buckets for rate limits. Thread-safe; `redis` must outlive each object.

#include <optional>
#include <string>

#include "services/common/redis/redis_client.h"
#include "services/common/redis/script.h"
#include "services/gateway/authenticator.h"
#include "services/gateway/rate_limiter.h"

namespace padlock::gateway {

// Key "gateway:challenge:{<user>:<device>}:<hex challenge>" → audience, PX = ttl. Consumed with
// GETDEL (Redis ≥ 6.2), so a challenge is handed to at most one Login.
class RedisChallengeStore final : public ChallengeStore {
 public:
  explicit RedisChallengeStore(redis::RedisClient* redis);
  absl::Status Put(const DeviceRef& device, const std::string& challenge,
                   const std::string& audience, absl::Duration ttl) override;
  absl::StatusOr<std::optional<std::string>> Consume(const DeviceRef& device,
                                                     const std::string& challenge) override;
  static std::string Key(const DeviceRef& device, const std::string& challenge);

 private:
  redis::RedisClient* const redis_;
};

// Bucket hash {t: tokens, ts: last refill ms} under the key given to Take (callers hash-tag it);
// refilled from Redis' own clock (TIME), so replicas with skewed clocks agree. Expires once it
// would be full again.
class RedisRateLimiter final : public RateLimiter {
 public:
  explicit RedisRateLimiter(redis::RedisClient* redis);
  absl::StatusOr<absl::Duration> Take(const std::string& bucket, const RateLimit& limit) override;

 private:
  redis::RedisClient* const redis_;
  redis::Script take_;
};

}  // namespace padlock::gateway
