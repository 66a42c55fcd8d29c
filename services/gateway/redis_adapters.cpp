#include "services/gateway/redis_adapters.h"

#include <algorithm>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"

namespace padlock::gateway {
namespace {

}  // namespace

RedisChallengeStore::RedisChallengeStore(redis::RedisClient* redis) : redis_(redis) {}

std::string RedisChallengeStore::Key(const DeviceRef& device, const std::string& challenge) {
  return absl::StrCat("gateway:challenge:{", device.user_id, ":", device.device_id, "}:",
                      absl::BytesToHexString(challenge));
}

absl::Status RedisChallengeStore::Put(const DeviceRef& device, const std::string& challenge,
                                      const std::string& audience, absl::Duration ttl) {
  // A fixed value under a fresh random key: resending after an unknown outcome is harmless.
  absl::StatusOr<redis::RedisReply> reply = redis_->Execute(redis::Command::Keyed(
      {"SET", Key(device, challenge), audience, "PX",
       absl::StrCat(std::max<int64_t>(1, absl::ToInt64Milliseconds(ttl)))},
      1, /*idempotent=*/true));
  if (!reply.ok()) return reply.status();
  return reply->ToStatus();
}

absl::StatusOr<std::optional<std::string>> RedisChallengeStore::Consume(
    const DeviceRef& device, const std::string& challenge) {
  // Not idempotent: a resend after an unknown outcome would find nothing and fail the login,
  // which is the safe direction (the client asks for a new challenge).
  absl::StatusOr<redis::RedisReply> reply =
      redis_->Execute(redis::Command::Keyed({"GETDEL", Key(device, challenge)}, 1));
  if (!reply.ok()) return reply.status();
  if (reply->is_error()) return reply->ToStatus();
  if (reply->is_nil()) return std::optional<std::string>();
  if (!reply->is_string()) return absl::InternalError("challenge GETDEL: unexpected reply");
  return std::optional<std::string>(reply->str());
}

}  // namespace padlock::gateway
