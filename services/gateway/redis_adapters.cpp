#include "services/gateway/redis_adapters.h"

#include <algorithm>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"

namespace padlock::gateway {
namespace {

// The same bucket as the key-directory's claim limits (services/key_directory/redis_adapters.cpp).
constexpr char kTakeLua[] = R"lua(
local burst = tonumber(ARGV[1])
local rate = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local v = redis.call('HMGET', KEYS[1], 't', 'ts')
local tokens = tonumber(v[1]) or burst
local ts = tonumber(v[2]) or now
tokens = math.min(burst, tokens + math.max(0, now - ts) * rate)
local wait = 0
if tokens >= 1 then
  tokens = tokens - 1
else
  wait = math.ceil((1 - tokens) / rate)
end
redis.call('HSET', KEYS[1], 't', tostring(tokens), 'ts', tostring(now))
redis.call('PEXPIRE', KEYS[1], math.ceil(burst / rate) + 1000)
return wait
)lua";

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

RedisRateLimiter::RedisRateLimiter(redis::RedisClient* redis) : redis_(redis), take_(kTakeLua) {}

absl::StatusOr<absl::Duration> RedisRateLimiter::Take(const std::string& bucket,
                                                      const RateLimit& limit) {
  absl::StatusOr<redis::RedisReply> reply = redis_->Execute(take_.Call(
      {bucket}, {absl::StrCat(limit.burst), absl::StrCat(limit.per_second / 1000.0)}));
  if (!reply.ok()) return reply.status();
  if (reply->is_error()) return reply->ToStatus();
  if (!reply->is_integer()) return absl::InternalError("rate limit script: unexpected reply");
  return absl::Milliseconds(reply->integer());
}

}  // namespace padlock::gateway
