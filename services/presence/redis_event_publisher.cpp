#include "services/presence/redis_event_publisher.h"

#include <string>
#include <vector>

#include "padlock/v1/common.pb.h"
#include "services/common/channels/device_channel.h"

namespace padlock::presence {

absl::Status RedisEventPublisher::PublishPresence(absl::Span<const DeviceKey> to,
                                                  const PresenceView& view) {
  padlock::v1::DeviceChannelEvent event;
  padlock::v1::PresenceStatus* status = event.mutable_presence();
  status->set_user_id(view.user_id);
  status->set_online(view.online);
  status->set_last_seen_ms(static_cast<uint64_t>(view.last_seen_ms));
  const std::string payload = event.SerializeAsString();
  std::vector<redis::Command> commands;
  commands.reserve(to.size());
  for (const DeviceKey& device : to) {
    commands.push_back(redis::Command::Keyed(
        {"SPUBLISH", channels::DeviceChannel(device.user_id, device.device_id), payload}, 1));
  }
  absl::Status first = absl::OkStatus();
  for (absl::StatusOr<redis::RedisReply>& reply : redis_->ExecutePipeline(commands)) {
    absl::Status s = reply.ok() ? reply->ToStatus() : reply.status();
    if (first.ok() && !s.ok()) first = s;
  }
  return first;
}

absl::Status RedisEventPublisher::PublishDisplaced(const DeviceKey& device, uint64_t epoch) {
  padlock::v1::DeviceChannelEvent event;
  event.set_displaced_by_epoch(epoch);
  return channels::PublishDeviceEvent(*redis_, device.user_id, device.device_id, event).status();
}

}  // namespace padlock::presence
