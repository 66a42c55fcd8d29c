#pragma once
// SubscriptionStore on Redis: push:{user:device} as the gateway writes it (a serialized
// padlock.v1.PushSubscription; docs/PUSH.md). Thread-safe; `redis` must outlive it.

#include "services/common/redis/redis_client.h"
#include "services/notifier/push_dispatcher.h"

namespace padlock::notifier {

class RedisSubscriptionStore final : public SubscriptionStore {
 public:
  explicit RedisSubscriptionStore(redis::RedisClient* redis) : redis_(redis) {}
  // A value that does not parse counts as no subscription (Internal is not retried for ever).
  absl::StatusOr<std::optional<StoredSubscription>> Get(const PushDevice& device) override;
  absl::Status Delete(const PushDevice& device) override;

 private:
  redis::RedisClient* const redis_;
};

}  // namespace padlock::notifier
