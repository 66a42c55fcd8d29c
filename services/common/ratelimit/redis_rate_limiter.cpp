#include "services/common/ratelimit/redis_rate_limiter.h"

#include "absl/strings/str_cat.h"
#include "services/common/ratelimit/lua_scripts.h"

namespace padlock::ratelimit {
namespace {

absl::StatusOr<absl::Duration> WaitFromReply(const absl::StatusOr<redis::RedisReply>& reply) {
  if (!reply.ok()) return reply.status();
  if (reply->is_error()) return reply->ToStatus();
  if (!reply->is_integer()) return absl::InternalError("rate limit script: unexpected reply");
  return absl::Milliseconds(reply->integer());
}

}  // namespace

RedisRateLimiter::RedisRateLimiter(redis::RedisClient* redis) : redis_(redis), take_(lua::kTake) {}

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
