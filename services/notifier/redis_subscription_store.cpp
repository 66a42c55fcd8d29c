#include "services/notifier/redis_subscription_store.h"

#include "padlock/v1/gateway.pb.h"
#include "services/common/channels/device_channel.h"

namespace padlock::notifier {

absl::StatusOr<std::optional<StoredSubscription>> RedisSubscriptionStore::Get(
    const PushDevice& device) {
  absl::StatusOr<redis::RedisReply> reply = redis_->Execute(redis::Command::Keyed(
      {"GET", channels::PushSubscriptionKey(device.user_id, device.device_id)}, 1,
      /*idempotent=*/true));
  if (!reply.ok()) return reply.status();
  if (reply->is_error()) return reply->ToStatus();
  if (reply->is_nil() || !reply->is_string()) return std::optional<StoredSubscription>();
  padlock::v1::PushSubscription value;
  if (!value.ParseFromString(reply->str())) return std::optional<StoredSubscription>();
  return std::optional<StoredSubscription>(
      StoredSubscription{value.endpoint(), value.p256dh(), value.auth()});
}

absl::Status RedisSubscriptionStore::Delete(const PushDevice& device) {
  absl::StatusOr<redis::RedisReply> reply = redis_->Execute(redis::Command::Keyed(
      {"DEL", channels::PushSubscriptionKey(device.user_id, device.device_id)}, 1,
      /*idempotent=*/true));
  if (!reply.ok()) return reply.status();
  return reply->ToStatus();
}

}  // namespace padlock::notifier
