#pragma once
// The gateway's Redis-backed interfaces: login challenges (single-use, with a TTL) and token
// buckets for rate limits. Thread-safe; `redis` must outlive each object.

#include <optional>
#include <string>

#include "services/common/redis/redis_client.h"
#include "services/common/redis/script.h"
#include "services/gateway/authenticator.h"
#include "services/gateway/push_registry.h"

namespace padlock::gateway {

// Key "gateway:challenge:{<user>:<device>}" → <hex challenge><audience>, PX = ttl: one key per
// device, so a new challenge replaces the last one and what a device id can make Redis hold is
// one key of ~150 bytes, however often it asks. Consumed by a script that compares and deletes
// in one step, so a challenge is handed to at most one Login.
class RedisChallengeStore final : public ChallengeStore {
 public:
  explicit RedisChallengeStore(redis::RedisClient* redis);
  absl::Status Put(const DeviceRef& device, const std::string& challenge,
                   const std::string& audience, absl::Duration ttl) override;
  absl::StatusOr<std::optional<std::string>> Consume(const DeviceRef& device,
                                                     const std::string& challenge) override;
  static std::string Key(const DeviceRef& device);

 private:
  redis::RedisClient* const redis_;
  const redis::Script consume_;
};

// Key channels::PushSubscriptionKey ("push:{<user>:<device>}", the device's hash tag) → a
// serialized padlock.v1.PushSubscription, EX = ttl: one key per device, replaced by SET,
// refreshed by EXPIRE (nothing when the key is gone) together with a DEL of the push coalescing
// mark "pn:{<user>:<device>}", removed by DEL. The key-directory deletes it
// with the device (RedisDeviceEventPublisher::DeviceRevoked).
class RedisPushSubscriptionStore final : public PushSubscriptionStore {
 public:
  explicit RedisPushSubscriptionStore(redis::RedisClient* redis);
  absl::Status Put(const DeviceRef& device, const PushSubscription& subscription,
                   absl::Duration ttl) override;
  absl::Status Delete(const DeviceRef& device) override;
  absl::Status Refresh(const DeviceRef& device, absl::Duration ttl) override;

 private:
  redis::RedisClient* const redis_;
};

}  // namespace padlock::gateway
