#include "services/common/channels/device_channel.h"

#include "absl/strings/str_cat.h"

namespace padlock::channels {
namespace {

absl::string_view View(std::string_view s) { return absl::string_view(s.data(), s.size()); }

}  // namespace

std::string DeviceHashTag(std::string_view user_id, uint32_t device_id) {
  return absl::StrCat("{", View(user_id), ":", device_id, "}");
}

std::string DeviceChannel(std::string_view user_id, uint32_t device_id) {
  return absl::StrCat("ch:", DeviceHashTag(user_id, device_id));
}

std::string InboxKey(std::string_view user_id, uint32_t device_id) {
  return absl::StrCat("q:", DeviceHashTag(user_id, device_id));
}

std::string SequenceKey(std::string_view user_id, uint32_t device_id) {
  return absl::StrCat("seq:", DeviceHashTag(user_id, device_id));
}

std::vector<std::string> DeviceInboxKeys(std::string_view user_id, uint32_t device_id) {
  const std::string tag = DeviceHashTag(user_id, device_id);
  return {absl::StrCat("q:", tag), absl::StrCat("seq:", tag), absl::StrCat("qm:", tag),
          absl::StrCat("qd0:", tag), absl::StrCat("qd1:", tag)};
}

std::string PushSubscriptionKey(std::string_view user_id, uint32_t device_id) {
  return absl::StrCat("push:", DeviceHashTag(user_id, device_id));
}

std::string UserHashTag(std::string_view user_id) { return absl::StrCat("{", View(user_id), "}"); }

absl::StatusOr<int64_t> PublishDeviceEvent(redis::RedisClient& redis, std::string_view user_id,
                                           uint32_t device_id,
                                           const padlock::v1::DeviceChannelEvent& event) {
  return redis.Publish(DeviceChannel(user_id, device_id), event.SerializeAsString());
}

}  // namespace padlock::channels
