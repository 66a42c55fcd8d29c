#include "services/key_directory/redis_adapters.h"

#include <cmath>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "padlock/v1/common.pb.h"
#include "services/common/channels/device_channel.h"
#include "services/common/device_lists/device_list_summary.h"

namespace padlock::key_directory {
namespace {

constexpr char kConsumeLua[] = R"lua(
local v = redis.call('GET', KEYS[1])
if not v then return false end
local ttl = redis.call('PTTL', KEYS[1])
redis.call('DEL', KEYS[1])
return {v, ttl}
)lua";

// The generation `g` is "<epoch>.<n>": the epoch is Redis' TIME when the hash was (re)created,
// n counts steps. Strings, not Lua numbers (which print as 1.8e+15), and a hash that expired and
// was created again never repeats an old generation, so a token read before the expiry cannot
// match after it.
constexpr char kSummaryPrelude[] = R"lua(
local function now_ms(t) return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) end
local function bump(g, t)
  if g then
    local epoch, n = string.match(g, '^(.*)%.(%d+)$')
    if epoch then return epoch .. '.' .. tostring(tonumber(n) + 1) end
  end
  return t[1] .. '-' .. t[2] .. '.1'
end
-- Changes in flight (field w), or 0 once their deadline (field wu) has passed: presumed dead.
local function live_writers(w, wu, now)
  if (tonumber(wu) or 0) < now then return 0 end
  return tonumber(w) or 0
end
)lua";

// BeginChange. KEYS: dl:{u}. ARGV: writer deadline ms, TTL ms. Returns the new generation.
// In-flight changes past their deadline are forgotten (presumed dead).
constexpr char kBeginBody[] = R"lua(
local t = redis.call('TIME')
local now = now_ms(t)
local h = redis.call('HMGET', KEYS[1], 'g', 'w', 'wu')
local w = live_writers(h[2], h[3], now)
local wu = tonumber(h[3]) or 0
local deadline = now + tonumber(ARGV[1])
if deadline < wu then deadline = wu end
local g = bump(h[1], t)
redis.call('HDEL', KEYS[1], 's')
redis.call('HSET', KEYS[1], 'g', g, 'w', tostring(w + 1), 'wu', string.format('%d', deadline))
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return g
)lua";

// EndChange. KEYS: dl:{u}. ARGV: the token from BeginChange, the summary ('' = none), its TTL ms,
// the TTL ms without one. Stores the summary only when the generation is still the token (no
// change began or ended since) and no other change is in flight; otherwise leaves none. Returns 1
// when it stored one.
constexpr char kEndBody[] = R"lua(
local t = redis.call('TIME')
local now = now_ms(t)
local h = redis.call('HMGET', KEYS[1], 'g', 'w', 'wu')
local w = live_writers(h[2], h[3], now)
if w > 0 then w = w - 1 end
local sole = h[1] == ARGV[1] and w == 0
redis.call('HSET', KEYS[1], 'g', bump(h[1], t), 'w', tostring(w))
if sole and ARGV[2] ~= '' then
  redis.call('HSET', KEYS[1], 's', ARGV[2])
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
  return 1
end
redis.call('HDEL', KEYS[1], 's')
redis.call('PEXPIRE', KEYS[1], ARGV[4])
return 0
)lua";

// Populate. KEYS: dl:{u}. ARGV: the token read before PostgreSQL ('' = the hash had no
// generation), the summary, its TTL ms. Stores it only when the generation is unchanged, no
// change is in flight (or the in-flight ones are past their deadline) and no summary is there.
// Returns 1 when it stored it.
constexpr char kPopulateBody[] = R"lua(
local h = redis.call('HMGET', KEYS[1], 'g', 'w', 'wu', 's')
if (h[1] or '') ~= ARGV[1] or h[4] then return 0 end
if live_writers(h[2], h[3], now_ms(redis.call('TIME'))) > 0 then return 0 end
redis.call('HSET', KEYS[1], 's', ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return 1
)lua";

std::string Ms(absl::Duration d) { return absl::StrCat(absl::ToInt64Milliseconds(d)); }

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

RedisDeviceListSummaries::RedisDeviceListSummaries(redis::RedisClient* redis, Options options)
    : redis_(redis),
      options_(options),
      begin_(absl::StrCat(kSummaryPrelude, kBeginBody)),
      end_(absl::StrCat(kSummaryPrelude, kEndBody)),
      populate_(absl::StrCat(kSummaryPrelude, kPopulateBody)) {}

std::string RedisDeviceListSummaries::TtlMs(const device_lists::Summary& summary) const {
  return Ms(summary.listed ? options_.listed_ttl : options_.unlisted_ttl);
}

absl::StatusOr<std::string> RedisDeviceListSummaries::BeginChange(const std::string& user_id) {
  absl::StatusOr<redis::RedisReply> reply =
      redis_->Execute(begin_.Call({device_lists::SummaryKey(user_id)},
                                  {Ms(options_.writer_deadline), Ms(options_.unlisted_ttl)}));
  if (!reply.ok()) return reply.status();
  if (reply->is_error()) return reply->ToStatus();
  if (!reply->is_string()) return absl::InternalError("begin change: unexpected reply");
  return reply->str();
}

absl::Status RedisDeviceListSummaries::EndChange(
    const std::string& user_id, const std::string& token,
    const std::optional<device_lists::Summary>& after) {
  absl::StatusOr<redis::RedisReply> reply = redis_->Execute(end_.Call(
      {device_lists::SummaryKey(user_id)},
      {token, after ? device_lists::EncodeSummary(*after) : std::string(),
       after ? TtlMs(*after) : Ms(options_.unlisted_ttl), Ms(options_.unlisted_ttl)}));
  if (!reply.ok()) return reply.status();
  if (reply->is_error()) return reply->ToStatus();
  return absl::OkStatus();
}

absl::StatusOr<std::vector<std::string>> RedisDeviceListSummaries::PopulateTokens(
    const std::vector<std::string>& user_ids) {
  std::vector<redis::Command> commands;
  commands.reserve(user_ids.size());
  for (const std::string& user : user_ids) {
    commands.push_back(redis::Command::Keyed(
        {"HGET", device_lists::SummaryKey(user), device_lists::kGenerationField}, 1,
        /*idempotent=*/true));
  }
  std::vector<std::string> tokens;
  tokens.reserve(user_ids.size());
  for (absl::StatusOr<redis::RedisReply>& reply : redis_->ExecutePipeline(commands)) {
    if (!reply.ok()) return reply.status();
    if (reply->is_error()) return reply->ToStatus();
    tokens.push_back(reply->is_string() ? reply->str() : std::string());
  }
  return tokens;
}

absl::StatusOr<int> RedisDeviceListSummaries::Populate(
    const std::vector<std::string>& user_ids, const std::vector<std::string>& tokens,
    const std::vector<device_lists::Summary>& summaries) {
  if (tokens.size() != user_ids.size() || summaries.size() != user_ids.size()) {
    return absl::InvalidArgumentError("populate: one token and one summary per user");
  }
  std::vector<redis::Command> commands;
  commands.reserve(user_ids.size());
  for (size_t i = 0; i < user_ids.size(); ++i) {
    redis::Command command =
        populate_.Call({device_lists::SummaryKey(user_ids[i])},
                       {tokens[i], device_lists::EncodeSummary(summaries[i]),
                        TtlMs(summaries[i])});
    command.idempotent = true;  // stores only into an empty field: a resend stores nothing more
    commands.push_back(std::move(command));
  }
  int stored = 0;
  absl::Status first_error;
  for (absl::StatusOr<redis::RedisReply>& reply : redis_->ExecutePipeline(commands)) {
    absl::Status s = !reply.ok() ? reply.status()
                     : reply->is_error() ? reply->ToStatus()
                                         : absl::OkStatus();
    if (!s.ok()) {
      if (first_error.ok()) first_error = s;
      continue;
    }
    if (reply->is_integer() && reply->integer() == 1) ++stored;
  }
  if (!first_error.ok()) return first_error;
  return stored;
}

RedisDeviceEventPublisher::RedisDeviceEventPublisher(redis::RedisClient* redis) : redis_(redis) {}

absl::Status RedisDeviceEventPublisher::DeviceRevoked(const std::string& user_id,
                                                      uint32_t device_id) {
  padlock::v1::DeviceChannelEvent event;
  event.set_revoked(true);
  absl::Status published =
      channels::PublishDeviceEvent(*redis_, user_id, device_id, event).status();
  // Every inbox key and the push subscription share the device's hash tag: one DEL on one
  // shard. (A banned account's devices lose their subscriptions too; they register again.)
  std::vector<std::string> del = {"DEL"};
  for (std::string& key : channels::DeviceInboxKeys(user_id, device_id)) {
    del.push_back(std::move(key));
  }
  del.push_back(channels::PushSubscriptionKey(user_id, device_id));
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
