#include "services/common/ratelimit/redis_rate_limiter.h"

#include "absl/strings/str_cat.h"

namespace padlock::ratelimit {
namespace {

// ARGV: burst, tokens per millisecond. Returns 0 (taken) or the wait in ms until one token.
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

absl::StatusOr<absl::Duration> WaitFromReply(const absl::StatusOr<redis::RedisReply>& reply) {
  if (!reply.ok()) return reply.status();
  if (reply->is_error()) return reply->ToStatus();
  if (!reply->is_integer()) return absl::InternalError("rate limit script: unexpected reply");
  return absl::Milliseconds(reply->integer());
}

}  // namespace

RedisRateLimiter::RedisRateLimiter(redis::RedisClient* redis) : redis_(redis), take_(kTakeLua) {}

redis::Command RedisRateLimiter::TakeCommand(const std::string& bucket,
                                             const RateLimit& limit) const {
  // Not idempotent (a resend would take a second token): after a connection failure with an
  // unknown outcome the client answers Unavailable instead of resending.
  return take_.Call({bucket},
                    {absl::StrCat(limit.burst), absl::StrCat(limit.per_second / 1000.0)});
}

absl::StatusOr<absl::Duration> RedisRateLimiter::Take(const std::string& bucket,
                                                      const RateLimit& limit) {
  return WaitFromReply(redis_->Execute(TakeCommand(bucket, limit)));
}

absl::StatusOr<std::vector<absl::Duration>> RedisRateLimiter::TakeEach(
    absl::Span<const BucketTake> takes) {
  if (takes.empty()) return std::vector<absl::Duration>();
  std::vector<redis::Command> commands;
  commands.reserve(takes.size());
  for (const BucketTake& take : takes) commands.push_back(TakeCommand(take.bucket, take.limit));
  std::vector<absl::StatusOr<redis::RedisReply>> replies = redis_->ExecutePipeline(commands);
  std::vector<absl::Duration> waits;
  waits.reserve(replies.size());
  for (const absl::StatusOr<redis::RedisReply>& reply : replies) {
    absl::StatusOr<absl::Duration> wait = WaitFromReply(reply);
    // Any bucket without an answer fails the whole call (the caller refuses, as it does when
    // Take fails): a wait cannot be reported for a bucket whose outcome is unknown.
    if (!wait.ok()) return wait.status();
    waits.push_back(*wait);
  }
  return waits;
}

}  // namespace padlock::ratelimit
