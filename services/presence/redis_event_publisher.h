#pragma once
// EventPublisher on Redis device channels: serialized padlock.v1.DeviceChannelEvent messages
// SPUBLISHed on `ch:{user:device}` (services/common/channels), where the gateway holding the
// device listens.

#include "services/common/redis/redis_client.h"
#include "services/presence/presence_store.h"

namespace padlock::presence {

class RedisEventPublisher final : public EventPublisher {
 public:
  // `redis` must outlive the publisher.
  explicit RedisEventPublisher(redis::RedisClient* redis) : redis_(redis) {}

  // One pipeline of SPUBLISH commands (one per subscriber channel, routed by its slot).
  absl::Status PublishPresence(absl::Span<const DeviceKey> to, const PresenceView& view) override;
  absl::Status PublishDisplaced(const DeviceKey& device, uint64_t epoch) override;

 private:
  redis::RedisClient* const redis_;
};

}  // namespace padlock::presence
