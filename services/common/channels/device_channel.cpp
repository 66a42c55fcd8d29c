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

std::string InboxMetaKey(std::string_view user_id, uint32_t device_id) {
  return absl::StrCat("qm:", DeviceHashTag(user_id, device_id));
}

std::string InboxDedupeKey(std::string_view user_id, uint32_t device_id, int64_t parity) {
  return absl::StrCat("qd", parity, ":", DeviceHashTag(user_id, device_id));
}

std::vector<std::string> DeviceInboxKeys(std::string_view user_id, uint32_t device_id) {
  return {InboxKey(user_id, device_id), SequenceKey(user_id, device_id),
          InboxMetaKey(user_id, device_id), InboxDedupeKey(user_id, device_id, 0),
          InboxDedupeKey(user_id, device_id, 1)};
}

std::string PushSubscriptionKey(std::string_view user_id, uint32_t device_id) {
  return absl::StrCat("push:", DeviceHashTag(user_id, device_id));
}

std::string PushCoalesceKey(std::string_view user_id, uint32_t device_id) {
  return absl::StrCat("pn:", DeviceHashTag(user_id, device_id));
}

std::string UserHashTag(std::string_view user_id) { return absl::StrCat("{", View(user_id), "}"); }

absl::StatusOr<int64_t> PublishDeviceEvent(redis::RedisClient& redis, std::string_view user_id,
                                           uint32_t device_id,
                                           const padlock::v1::DeviceChannelEvent& event) {
  return redis.Publish(DeviceChannel(user_id, device_id), event.SerializeAsString());
}

}  // namespace padlock::channels
