#include "services/gateway/redis_adapters.h"

#include <algorithm>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "padlock/v1/gateway.pb.h"
#include "services/common/channels/device_channel.h"
#include "services/gateway/lua_scripts.h"

namespace padlock::gateway {

RedisChallengeStore::RedisChallengeStore(redis::RedisClient* redis)
    : redis_(redis), consume_(lua::kConsume) {}

std::string RedisChallengeStore::Key(const DeviceRef& device) {
  return absl::StrCat("gateway:challenge:{", device.user_id, ":", device.device_id, "}");
}

absl::Status RedisChallengeStore::Put(const DeviceRef& device, const std::string& challenge,
                                      const std::string& audience, absl::Duration ttl) {
  // Overwrites the device's earlier challenge. Resending after an unknown outcome writes the same
  // value again: harmless.
  absl::StatusOr<redis::RedisReply> reply = redis_->Execute(redis::Command::Keyed(
      {"SET", Key(device), absl::StrCat(absl::BytesToHexString(challenge), audience), "PX",
       absl::StrCat(std::max<int64_t>(1, absl::ToInt64Milliseconds(ttl)))},
      1, /*idempotent=*/true));
  if (!reply.ok()) return reply.status();
  return reply->ToStatus();
}

absl::StatusOr<std::optional<std::string>> RedisChallengeStore::Consume(
    const DeviceRef& device, const std::string& challenge) {
  // Not idempotent: a resend after an unknown outcome would find nothing and fail the login,
  // which is the safe direction (the client asks for a new challenge).
  // An empty challenge would match any stored one: Authenticator::Login refuses other sizes
  // before it gets here, and this refuses it again.
  if (challenge.empty()) return std::optional<std::string>();
  absl::StatusOr<redis::RedisReply> reply = redis_->Execute(
      consume_.Call({Key(device)}, {absl::BytesToHexString(challenge)}));
  if (!reply.ok()) return reply.status();
  if (reply->is_error()) return reply->ToStatus();
  if (reply->is_nil()) return std::optional<std::string>();
  if (!reply->is_string()) return absl::InternalError("challenge consume: unexpected reply");
  return std::optional<std::string>(reply->str());
}

namespace {

absl::Status Done(const absl::StatusOr<redis::RedisReply>& reply) {
  if (!reply.ok()) return reply.status();
  return reply->ToStatus();
}

std::string Seconds(absl::Duration ttl) {
  return absl::StrCat(std::max<int64_t>(1, absl::ToInt64Seconds(ttl)));
}

}  // namespace

RedisPushSubscriptionStore::RedisPushSubscriptionStore(redis::RedisClient* redis)
    : redis_(redis) {}

absl::Status RedisPushSubscriptionStore::Put(const DeviceRef& device,
                                             const PushSubscription& subscription,
                                             absl::Duration ttl) {
  padlock::v1::PushSubscription value;
  value.set_endpoint(subscription.endpoint);
  value.set_p256dh(subscription.p256dh);
  value.set_auth(subscription.auth);
  return Done(redis_->Execute(redis::Command::Keyed(
      {"SET", channels::PushSubscriptionKey(device.user_id, device.device_id),
       value.SerializeAsString(), "EX", Seconds(ttl)},
      1, /*idempotent=*/true)));
}

absl::Status RedisPushSubscriptionStore::Delete(const DeviceRef& device) {
  return Done(redis_->Execute(redis::Command::Keyed(
      {"DEL", channels::PushSubscriptionKey(device.user_id, device.device_id)}, 1,
      /*idempotent=*/true)));
}

absl::Status RedisPushSubscriptionStore::Refresh(const DeviceRef& device, absl::Duration ttl) {
  // One round trip, both keys on the device's slot. Deleting the coalescing mark lets the next
  // message after this connect push again (a mark left from before the connect would hold it back
  // for up to the push interval).
  const std::vector<redis::Command> commands = {
      redis::Command::Keyed(
          {"EXPIRE", channels::PushSubscriptionKey(device.user_id, device.device_id), Seconds(ttl)},
          1, /*idempotent=*/true),
      redis::Command::Keyed({"DEL", channels::PushCoalesceKey(device.user_id, device.device_id)},
                            1, /*idempotent=*/true)};
  for (const absl::StatusOr<redis::RedisReply>& reply : redis_->ExecutePipeline(commands)) {
    if (absl::Status s = Done(reply); !s.ok()) return s;
  }
  return absl::OkStatus();
}

}  // namespace padlock::gateway
