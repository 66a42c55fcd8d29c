#include "services/key_directory/redis_adapters.h"

#include <cmath>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "padlock/v1/common.pb.h"
#include "services/common/channels/device_channel.h"

namespace padlock::key_directory {
namespace {

constexpr char kConsumeLua[] = R"lua(
local v = redis.call('GET', KEYS[1])
if not v then return false end
local ttl = redis.call('PTTL', KEYS[1])
redis.call('DEL', KEYS[1])
return {v, ttl}
)lua";


}  // namespace

RedisInviteStore::RedisInviteStore(redis::RedisClient* redis)
    : redis_(redis), consume_(kConsumeLua) {}

std::string RedisInviteStore::Key(const std::string& token) {
  return absl::StrCat("invite:{", token, "}");
}

absl::Status RedisInviteStore::Create(const std::string& token, const std::string& for_user_id,
                                      absl::Duration ttl) {
  absl::StatusOr<redis::RedisReply> reply = redis_->Execute(redis::Command::Keyed(
      {"SET", Key(token), for_user_id, "PX", absl::StrCat(absl::ToInt64Milliseconds(ttl)), "NX"},
      1, /*idempotent=*/true));
  if (!reply.ok()) return reply.status();
  if (reply->is_error()) return reply->ToStatus();
  if (reply->is_nil()) return absl::AlreadyExistsError("invite token collision");
  return absl::OkStatus();
}

absl::StatusOr<InviteStore::Invite> RedisInviteStore::Consume(const std::string& token) {
  absl::StatusOr<redis::RedisReply> reply = redis_->Execute(consume_.Call({Key(token)}, {}));
  if (!reply.ok()) return reply.status();
  if (reply->is_error()) return reply->ToStatus();
  if (!reply->is_array() || reply->elements().size() != 2) {
    return absl::NotFoundError("invite unknown, used or expired");
  }
  return Invite{reply->elements()[0].str(),
                absl::Milliseconds(std::max<int64_t>(1, reply->elements()[1].integer()))};
}

absl::Status RedisInviteStore::Restore(const std::string& token, const Invite& invite) {
  return Create(token, invite.for_user_id, invite.ttl_left);
}

RedisDeviceEventPublisher::RedisDeviceEventPublisher(redis::RedisClient* redis) : redis_(redis) {}

absl::Status RedisDeviceEventPublisher::DeviceRevoked(const std::string& user_id,
                                                      uint32_t device_id) {
  padlock::v1::DeviceChannelEvent event;
  event.set_revoked(true);
  absl::Status published =
      channels::PublishDeviceEvent(*redis_, user_id, device_id, event).status();
  // Every inbox key shares the device's hash tag: one DEL on one shard.
  std::vector<std::string> del = {"DEL"};
  for (std::string& key : channels::DeviceInboxKeys(user_id, device_id)) {
    del.push_back(std::move(key));
  }
  absl::StatusOr<redis::RedisReply> deleted =
      redis_->Execute(redis::Command::Keyed(std::move(del), 1, /*idempotent=*/true));
  if (!published.ok()) return published;
  if (!deleted.ok()) return deleted.status();
  if (deleted->is_error()) return deleted->ToStatus();
  return absl::OkStatus();
}

absl::Status RedisDeviceEventPublisher::PreKeysLow(const std::string& user_id, uint32_t device_id,
                                                   uint32_t remaining) {
  padlock::v1::DeviceChannelEvent event;
  event.set_prekeys_remaining(remaining);
  return channels::PublishDeviceEvent(*redis_, user_id, device_id, event).status();
}

}  // namespace padlock::key_directory
