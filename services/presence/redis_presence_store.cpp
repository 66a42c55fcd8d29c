#include "services/presence/redis_presence_store.h"

#include <algorithm>
#include <map>
#include <set>
#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "services/common/channels/device_channel.h"
#include "services/common/runtime/status_macros.h"

namespace padlock::presence {
namespace {

using redis::Command;
using redis::RedisReply;

// Shared Lua helpers. An entry is "epoch|expires_at_ms|connected_at_ms|gateway_id"; parse()
// returns its fields as strings (numbers are kept as decimal text so that Lua's doubles never
// reformat them).
constexpr char kPrelude[] = R"lua(
local function parse(v)
  return string.match(v, '^(%d+)|(%d+)|(%d+)|(.*)$')
end
local function live_count(key, now)
  local all = redis.call('HGETALL', key)
  local n = 0
  for i = 2, #all, 2 do
    local _, xs = parse(all[i])
    if xs and tonumber(xs) > now then n = n + 1 end
  end
  return n
end
local function prune(key, now)
  local all = redis.call('HGETALL', key)
  local n, removed, last = 0, 0, 0
  for i = 1, #all, 2 do
    local _, xs = parse(all[i + 1])
    local x = tonumber(xs or '0')
    if x > now then
      n = n + 1
    else
      redis.call('HDEL', key, all[i])
      removed = removed + 1
      if x > last then last = x end
    end
  end
  return n, removed, last
end
local function meta(key)
  local m = redis.call('HMGET', key, 'vis', 'seen')
  return tonumber(m[1] or '1') or 1, tonumber(m[2] or '0') or 0
end
-- Last seen is kept only while someone may see it (visibility everyone = 2; docs/PRIVACY.md):
-- records it when the user goes offline, or drops any earlier value. Returns what is kept.
local function record_seen(key, vis, seen, ttl)
  if vis ~= 2 then
    redis.call('HDEL', key, 'seen')
    return 0
  end
  redis.call('HSET', key, 'seen', seen)
  redis.call('PEXPIRE', key, ttl)
  return seen
end
local function extend(key, ttl)
  local p = redis.call('PTTL', key)
  if p == -1 or (p >= 0 and p < ttl) then redis.call('PEXPIRE', key, ttl) end
end
)lua";

// KEYS: epoch, entries, meta. ARGV: device, gateway, vis (0 = keep), now, expires_at,
// entries key ttl, meta_ttl. The INCR and the entry are written in one script, so two racing connects of a
// device end with the entry holding the higher epoch, on any replica.
constexpr char kConnect[] = R"lua(
local now = tonumber(ARGV[4])
local live = prune(KEYS[2], now)
local displaced = 0
local prev = redis.call('HGET', KEYS[2], ARGV[1])
if prev then displaced = tonumber((parse(prev))) or 0 end
local epoch = redis.call('INCR', KEYS[1])
-- The counter has a TTL; should it have lapsed under a still-live entry, stay above that entry.
if epoch <= displaced then
  epoch = displaced + 1
  redis.call('SET', KEYS[1], epoch)
end
redis.call('PEXPIRE', KEYS[1], ARGV[7])
redis.call('HSET', KEYS[2], ARGV[1], epoch .. '|' .. ARGV[5] .. '|' .. ARGV[4] .. '|' .. ARGV[2])
extend(KEYS[2], tonumber(ARGV[6]))
local prev_vis = meta(KEYS[3])
if ARGV[3] ~= '0' then redis.call('HSET', KEYS[3], 'vis', ARGV[3]) end
redis.call('PEXPIRE', KEYS[3], ARGV[7])
local vis, seen = meta(KEYS[3])
-- Also clears a last seen stored before it was kept for visibility everyone only.
if vis ~= 2 and seen ~= 0 then seen = record_seen(KEYS[3], vis, 0, 0) end
local came = 0
if live == 0 then came = 1 end
return {epoch, displaced, came, prev_vis, vis, seen}
)lua";

// KEYS: entries, meta. ARGV: device, epoch, now, entry_ttl, meta_ttl.
// Returns {was_current, went_offline, live, vis, seen, removed expires_at}.
constexpr char kDisconnect[] = R"lua(
local now = tonumber(ARGV[3])
local cur = redis.call('HGET', KEYS[1], ARGV[1])
local vis, seen = meta(KEYS[2])
if not cur then return {0, 0, live_count(KEYS[1], now), vis, seen, 0} end
local es, xs = parse(cur)
if es ~= ARGV[2] then return {0, 0, live_count(KEYS[1], now), vis, seen, 0} end
redis.call('HDEL', KEYS[1], ARGV[1])
local x = tonumber(xs)
local live = prune(KEYS[1], now)
local went = 0
if live == 0 then
  went = 1
  seen = now
  -- An entry that had already expired was last vouched for at its last heartbeat.
  if x <= now then seen = x - tonumber(ARGV[4]) end
  seen = record_seen(KEYS[2], vis, seen, ARGV[5])
end
return {1, went, live, vis, seen, x}
)lua";

// KEYS: entries, meta. ARGV: now, new expires_at, entries key ttl, gateway, meta_ttl, then device,
// epoch pairs. Returns 1 (extended) or 0 (stale) per pair. A user online for longer than the
// last-seen TTL keeps their visibility: live heartbeats renew it.
constexpr char kHeartbeat[] = R"lua(
local now = tonumber(ARGV[1])
local out = {}
local any = false
for i = 6, #ARGV, 2 do
  local cur = redis.call('HGET', KEYS[1], ARGV[i])
  local ok = 0
  if cur then
    local es, xs, cs, g = parse(cur)
    if es == ARGV[i + 1] and g == ARGV[4] and tonumber(xs) > now then
      redis.call('HSET', KEYS[1], ARGV[i], es .. '|' .. ARGV[2] .. '|' .. cs .. '|' .. g)
      ok = 1
      any = true
    end
  end
  out[#out + 1] = ok
end
if any then
  extend(KEYS[1], tonumber(ARGV[3]))
  redis.call('PEXPIRE', KEYS[2], ARGV[5])
end
return out
)lua";

// KEYS: entries, meta. ARGV: now. Returns {live, vis, seen}. Read-only.
constexpr char kRead[] = R"lua(
local vis, seen = meta(KEYS[2])
return {live_count(KEYS[1], tonumber(ARGV[1])), vis, seen}
)lua";

// KEYS: entries, meta. ARGV: vis, now, meta_ttl. Returns {live, vis, seen}. A switch away from
// everyone deletes last seen: switching back shows "unknown" until the user next goes offline.
constexpr char kSetVisibility[] = R"lua(
redis.call('HSET', KEYS[2], 'vis', ARGV[1])
redis.call('PEXPIRE', KEYS[2], ARGV[3])
local vis, seen = meta(KEYS[2])
if vis ~= 2 and seen ~= 0 then seen = record_seen(KEYS[2], vis, 0, 0) end
return {live_count(KEYS[1], tonumber(ARGV[2])), vis, seen}
)lua";

// KEYS: bucket. ARGV: now, burst, refill_ms. Returns {allowed, retry_after_ms}. The bucket holds
// integer credit in ms (one change costs refill_ms; capacity burst × refill_ms), so no
// floating-point rounding reaches the retry delay.
constexpr char kRate[] = R"lua(
local now = tonumber(ARGV[1])
local refill = tonumber(ARGV[3])
local cap = tonumber(ARGV[2]) * refill
local t = redis.call('HMGET', KEYS[1], 'credit', 'ts')
local credit = tonumber(t[1] or '') or cap
local ts = tonumber(t[2] or '') or now
if now > ts then
  credit = math.min(cap, credit + (now - ts))
  ts = now
end
local allowed, retry = 0, 0
if credit >= refill then
  credit = credit - refill
  allowed = 1
else
  retry = refill - credit
end
redis.call('HSET', KEYS[1], 'credit', string.format('%d', credit), 'ts', string.format('%d', ts))
redis.call('PEXPIRE', KEYS[1], cap)
return {allowed, retry}
)lua";

// KEYS: watch set. ARGV: ttl, users... Returns the previous members.
constexpr char kReplaceWatch[] = R"lua(
local old = redis.call('SMEMBERS', KEYS[1])
redis.call('DEL', KEYS[1])
if #ARGV > 1 then
  for i = 2, #ARGV, 500 do
    redis.call('SADD', KEYS[1], unpack(ARGV, i, math.min(i + 499, #ARGV)))
  end
  redis.call('PEXPIRE', KEYS[1], ARGV[1])
end
return old
)lua";

// KEYS: subscribers, entries, meta. ARGV: member, expires_at, now, ttl. Returns {live, vis, seen}.
constexpr char kAddSubscriber[] = R"lua(
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[3])
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
extend(KEYS[1], tonumber(ARGV[4]))
local vis, seen = meta(KEYS[3])
return {live_count(KEYS[2], tonumber(ARGV[3])), vis, seen}
)lua";

// KEYS: entries, meta. ARGV: now, entry_ttl, meta_ttl. Removes every expired entry of the user;
// only the call that removes the last live one reports went_offline, so concurrent sweepers
// never report one expiry twice. Returns {removed, went_offline, live, vis, seen}.
constexpr char kExpire[] = R"lua(
local now = tonumber(ARGV[1])
local live, removed, last = prune(KEYS[1], now)
local vis, seen = meta(KEYS[2])
local went = 0
if removed > 0 and live == 0 then
  went = 1
  seen = record_seen(KEYS[2], vis, last - tonumber(ARGV[2]), ARGV[3])
end
return {removed, went, live, vis, seen}
)lua";

// KEYS: sweep index shard. ARGV: max score, members... Removes the members scored ≤ max (a
// member re-added since with a later expiry stays).
constexpr char kUnindex[] = R"lua(
local max = tonumber(ARGV[1])
local n = 0
for i = 2, #ARGV do
  local s = redis.call('ZSCORE', KEYS[1], ARGV[i])
  if s and tonumber(s) <= max then
    redis.call('ZREM', KEYS[1], ARGV[i])
    n = n + 1
  end
end
return n
)lua";

// KEYS: lock. ARGV: owner.
constexpr char kUnlock[] = R"lua(
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
)lua";

std::string WithPrelude(const char* body) { return absl::StrCat(kPrelude, body); }

std::string Member(const DeviceKey& device) {
  return absl::StrCat(device.user_id, ":", device.device_id);
}

absl::StatusOr<DeviceKey> ParseMember(const std::string& member) {
  size_t colon = member.rfind(':');
  uint32_t device_id = 0;
  if (colon == std::string::npos || colon == 0 ||
      !absl::SimpleAtoi(member.substr(colon + 1), &device_id)) {
    return absl::InternalError("presence: malformed device member in Redis");
  }
  return DeviceKey{member.substr(0, colon), device_id};
}

// A reply that must not be an error reply.
absl::StatusOr<RedisReply> Checked(absl::StatusOr<RedisReply> reply) {
  if (!reply.ok()) return reply.status();
  if (reply->is_error()) return reply->ToStatus();
  return reply;
}

absl::StatusOr<RedisReply> Run(redis::RedisClient& redis, const Command& command) {
  return Checked(redis.Execute(command));
}

// An array reply of at least `n` integers.
absl::Status ExpectInts(const RedisReply& reply, size_t n) {
  if (!reply.is_array() || reply.elements().size() < n) {
    return absl::InternalError(absl::StrCat("presence: unexpected script reply ",
                                            reply.DebugString()));
  }
  return absl::OkStatus();
}

int64_t At(const RedisReply& reply, size_t i) { return reply.elements()[i].integer(); }

Visibility VisibilityFromStored(int64_t value) {
  // Fail closed: only an explicit 2 means everyone.
  return value == static_cast<int64_t>(Visibility::kEveryone) ? Visibility::kEveryone
                                                              : Visibility::kNobody;
}

// {live, vis, seen} starting at `first`.
UserState StateFrom(const std::string& user_id, const RedisReply& reply, size_t first) {
  return UserState{user_id, At(reply, first) > 0, At(reply, first + 2),
                   VisibilityFromStored(At(reply, first + 1))};
}

Command Idempotent(Command command) {
  command.idempotent = true;
  return command;
}

uint32_t Fnv1a(const std::string& s) {
  uint32_t h = 2166136261u;
  for (unsigned char c : s) {
    h ^= c;
    h *= 16777619u;
  }
  return h;
}

}  // namespace

RedisPresenceStore::RedisPresenceStore(redis::RedisClient* redis, StoreTimings timings)
    : redis_(redis),
      timings_(timings),
      connect_(WithPrelude(kConnect)),
      disconnect_(WithPrelude(kDisconnect)),
      heartbeat_(WithPrelude(kHeartbeat)),
      read_(WithPrelude(kRead)),
      set_visibility_(WithPrelude(kSetVisibility)),
      rate_(kRate),
      replace_watch_(kReplaceWatch),
      add_subscriber_(WithPrelude(kAddSubscriber)),
      expire_(WithPrelude(kExpire)),
      unindex_(kUnindex),
      unlock_(kUnlock) {}

int64_t RedisPresenceStore::EntriesKeyTtlMs() const {
  // The hash outlives its entries by a margin so that the sweep still finds an expired entry
  // (and reports the user offline) instead of Redis dropping it silently first.
  return 2 * timings_.entry_ttl_ms + 60'000;
}

std::string RedisPresenceStore::EpochKey(const DeviceKey& device) {
  return absl::StrCat("pr:ep:", channels::UserHashTag(device.user_id), ":", device.device_id);
}
std::string RedisPresenceStore::EntriesKey(const std::string& user_id) {
  return absl::StrCat("pr:on:", channels::UserHashTag(user_id));
}
std::string RedisPresenceStore::MetaKey(const std::string& user_id) {
  return absl::StrCat("pr:meta:", channels::UserHashTag(user_id));
}
std::string RedisPresenceStore::SubscribersKey(const std::string& user_id) {
  return absl::StrCat("pr:subs:", channels::UserHashTag(user_id));
}
std::string RedisPresenceStore::WatchKey(const DeviceKey& device) {
  return absl::StrCat("pr:watch:", channels::DeviceHashTag(device.user_id, device.device_id));
}
std::string RedisPresenceStore::RateKey(const DeviceKey& device) {
  return absl::StrCat("pr:rl:", channels::DeviceHashTag(device.user_id, device.device_id));
}
int RedisPresenceStore::SweepShard(const std::string& user_id) {
  return static_cast<int>(Fnv1a(user_id) % kSweepShards);
}
std::string RedisPresenceStore::SweepIndexKey(int shard) {
  return absl::StrCat("pr:exp:{pr.", shard, "}");
}
std::string RedisPresenceStore::SweepLockKey(int shard) {
  return absl::StrCat("pr:sweep:{pr.", shard, "}");
}

absl::StatusOr<ConnectOutcome> RedisPresenceStore::Connect(const DeviceKey& device,
                                                           const std::string& gateway_id,
                                                           Visibility visibility,
                                                           int64_t now_ms) {
  const int64_t expires = now_ms + timings_.entry_ttl_ms;
  absl::StatusOr<RedisReply> reply = Run(
      *redis_,
      connect_.Call({EpochKey(device), EntriesKey(device.user_id), MetaKey(device.user_id)},
                    {absl::StrCat(device.device_id), gateway_id,
                     absl::StrCat(static_cast<int>(visibility)), absl::StrCat(now_ms),
                     absl::StrCat(expires), absl::StrCat(EntriesKeyTtlMs()),
                     absl::StrCat(timings_.last_seen_ttl_ms)}));
  if (!reply.ok()) return reply.status();
  RETURN_IF_ERROR(ExpectInts(*reply, 6));
  ConnectOutcome outcome;
  outcome.epoch = static_cast<uint64_t>(At(*reply, 0));
  outcome.displaced_epoch = static_cast<uint64_t>(At(*reply, 1));
  outcome.came_online = At(*reply, 2) == 1;
  outcome.previous_visibility = VisibilityFromStored(At(*reply, 3));
  outcome.user = UserState{device.user_id, true, At(*reply, 5), VisibilityFromStored(At(*reply, 4))};
  // The sweep index lives on another slot: a separate command. Should it fail, the entry still
  // expires on its own (key TTL), only without an offline event.
  absl::StatusOr<RedisReply> indexed =
      Run(*redis_, Command::Keyed({"ZADD", SweepIndexKey(SweepShard(device.user_id)),
                                   absl::StrCat(expires), Member(device)},
                                  1, /*idempotent=*/true));
  if (!indexed.ok()) return indexed.status();
  return outcome;
}

absl::StatusOr<DisconnectOutcome> RedisPresenceStore::Disconnect(const DeviceKey& device,
                                                                 uint64_t epoch, int64_t now_ms) {
  absl::StatusOr<RedisReply> reply = Run(
      *redis_, disconnect_.Call({EntriesKey(device.user_id), MetaKey(device.user_id)},
                                {absl::StrCat(device.device_id), absl::StrCat(epoch),
                                 absl::StrCat(now_ms), absl::StrCat(timings_.entry_ttl_ms),
                                 absl::StrCat(timings_.last_seen_ttl_ms)}));
  if (!reply.ok()) return reply.status();
  RETURN_IF_ERROR(ExpectInts(*reply, 6));
  DisconnectOutcome outcome;
  outcome.was_current = At(*reply, 0) == 1;
  outcome.went_offline = At(*reply, 1) == 1;
  outcome.user = StateFrom(device.user_id, *reply, 2);
  if (outcome.was_current) {
    // Drops the sweep index member unless a newer connection re-indexed it with a later expiry.
    absl::StatusOr<RedisReply> unindexed = Run(
        *redis_, unindex_.Call({SweepIndexKey(SweepShard(device.user_id))},
                               {absl::StrCat(At(*reply, 5)), Member(device)}));
    if (!unindexed.ok()) return unindexed.status();
  }
  return outcome;
}

absl::StatusOr<std::vector<Connection>> RedisPresenceStore::Heartbeat(
    const std::string& gateway_id, absl::Span<const Connection> connections, int64_t now_ms) {
  const int64_t expires = now_ms + timings_.entry_ttl_ms;
  // One script per user (its entries share a slot), all pipelined.
  std::map<std::string, std::vector<size_t>> by_user;
  for (size_t i = 0; i < connections.size(); ++i) {
    by_user[connections[i].device.user_id].push_back(i);
  }
  std::vector<Command> commands;
  std::vector<const std::vector<size_t>*> groups;
  commands.reserve(by_user.size());
  for (const auto& [user_id, indexes] : by_user) {
    std::vector<std::string> args = {absl::StrCat(now_ms), absl::StrCat(expires),
                                     absl::StrCat(EntriesKeyTtlMs()), gateway_id,
                                     absl::StrCat(timings_.last_seen_ttl_ms)};
    for (size_t i : indexes) {
      args.push_back(absl::StrCat(connections[i].device.device_id));
      args.push_back(absl::StrCat(connections[i].epoch));
    }
    commands.push_back(heartbeat_.Call({EntriesKey(user_id), MetaKey(user_id)}, args));
    groups.push_back(&indexes);
  }
  std::vector<absl::StatusOr<RedisReply>> replies = redis_->ExecutePipeline(commands);
  std::vector<bool> current(connections.size(), false);
  for (size_t g = 0; g < replies.size(); ++g) {
    ASSIGN_OR_RETURN(RedisReply reply, Checked(std::move(replies[g])));
    RETURN_IF_ERROR(ExpectInts(reply, groups[g]->size()));
    for (size_t k = 0; k < groups[g]->size(); ++k) {
      current[(*groups[g])[k]] = At(reply, k) == 1;
    }
  }
  std::map<int, std::vector<std::string>> index_args;
  std::vector<Connection> stale;
  for (size_t i = 0; i < connections.size(); ++i) {
    if (!current[i]) {
      stale.push_back(connections[i]);
      continue;
    }
    std::vector<std::string>& args = index_args[SweepShard(connections[i].device.user_id)];
    args.push_back(absl::StrCat(expires));
    args.push_back(Member(connections[i].device));
  }
  std::vector<Command> index_commands;
  for (auto& [shard, args] : index_args) {
    std::vector<std::string> argv = {"ZADD", SweepIndexKey(shard)};
    argv.insert(argv.end(), args.begin(), args.end());
    index_commands.push_back(Command::Keyed(std::move(argv), 1, /*idempotent=*/true));
  }
  for (absl::StatusOr<RedisReply>& r : redis_->ExecutePipeline(index_commands)) {
    if (absl::StatusOr<RedisReply> c = Checked(std::move(r)); !c.ok()) return c.status();
  }
  return stale;
}

absl::StatusOr<UserState> RedisPresenceStore::SetVisibility(const std::string& user_id,
                                                            Visibility visibility,
                                                            int64_t now_ms) {
  absl::StatusOr<RedisReply> reply =
      Run(*redis_, Idempotent(set_visibility_.Call(
                       {EntriesKey(user_id), MetaKey(user_id)},
                       {absl::StrCat(static_cast<int>(visibility)), absl::StrCat(now_ms),
                        absl::StrCat(timings_.last_seen_ttl_ms)})));
  if (!reply.ok()) return reply.status();
  RETURN_IF_ERROR(ExpectInts(*reply, 3));
  return StateFrom(user_id, *reply, 0);
}

absl::StatusOr<std::vector<UserState>> RedisPresenceStore::Read(
    absl::Span<const std::string> user_ids, int64_t now_ms) {
  std::vector<Command> commands;
  commands.reserve(user_ids.size());
  for (const std::string& user_id : user_ids) {
    commands.push_back(Idempotent(
        read_.Call({EntriesKey(user_id), MetaKey(user_id)}, {absl::StrCat(now_ms)})));
  }
  std::vector<absl::StatusOr<RedisReply>> replies = redis_->ExecutePipeline(commands);
  std::vector<UserState> users;
  users.reserve(user_ids.size());
  for (size_t i = 0; i < replies.size(); ++i) {
    ASSIGN_OR_RETURN(RedisReply reply, Checked(std::move(replies[i])));
    RETURN_IF_ERROR(ExpectInts(reply, 3));
    users.push_back(StateFrom(user_ids[i], reply, 0));
  }
  return users;
}

absl::StatusOr<std::vector<Location>> RedisPresenceStore::Locate(
    absl::Span<const DeviceKey> devices, int64_t now_ms) {
  std::vector<Command> commands;
  for (const DeviceKey& device : devices) {
    commands.push_back(Command::Keyed(
        {"HGET", EntriesKey(device.user_id), absl::StrCat(device.device_id)}, 1, true));
  }
  std::vector<absl::StatusOr<RedisReply>> replies = redis_->ExecutePipeline(commands);
  std::vector<Location> locations;
  for (size_t i = 0; i < replies.size(); ++i) {
    ASSIGN_OR_RETURN(RedisReply reply, Checked(std::move(replies[i])));
    if (!reply.is_string()) continue;
    std::vector<std::string> parts = absl::StrSplit(reply.str(), absl::MaxSplits('|', 3));
    uint64_t epoch = 0;
    int64_t expires = 0, connected = 0;
    if (parts.size() != 4 || !absl::SimpleAtoi(parts[0], &epoch) ||
        !absl::SimpleAtoi(parts[1], &expires) || !absl::SimpleAtoi(parts[2], &connected)) {
      return absl::InternalError("presence: malformed registry entry in Redis");
    }
    if (expires <= now_ms) continue;
    locations.push_back(Location{devices[i], parts[3], epoch, connected});
  }
  return locations;
}

absl::StatusOr<RateDecision> RedisPresenceStore::TakeSubscribeToken(const DeviceKey& device,
                                                                    int64_t now_ms) {
  absl::StatusOr<RedisReply> reply =
      Run(*redis_, rate_.Call({RateKey(device)},
                              {absl::StrCat(now_ms), absl::StrCat(timings_.rate_burst),
                               absl::StrCat(timings_.rate_refill_ms)}));
  if (!reply.ok()) return reply.status();
  RETURN_IF_ERROR(ExpectInts(*reply, 2));
  return RateDecision{At(*reply, 0) == 1, At(*reply, 1)};
}

absl::StatusOr<std::vector<UserState>> RedisPresenceStore::ReplaceSubscriptions(
    const DeviceKey& subscriber, absl::Span<const std::string> user_ids, int64_t now_ms) {
  std::vector<std::string> args = {absl::StrCat(timings_.subscription_ttl_ms)};
  args.insert(args.end(), user_ids.begin(), user_ids.end());
  absl::StatusOr<RedisReply> old =
      Run(*redis_, replace_watch_.Call({WatchKey(subscriber)}, args));
  if (!old.ok()) return old.status();
  const std::string member = Member(subscriber);
  const std::string expires = absl::StrCat(now_ms + timings_.subscription_ttl_ms);
  std::vector<Command> commands;
  for (const std::string& user_id : user_ids) {
    commands.push_back(add_subscriber_.Call(
        {SubscribersKey(user_id), EntriesKey(user_id), MetaKey(user_id)},
        {member, expires, absl::StrCat(now_ms), absl::StrCat(timings_.subscription_ttl_ms)}));
  }
  std::set<std::string> wanted(user_ids.begin(), user_ids.end());
  for (const RedisReply& previous : old->elements()) {
    if (wanted.count(previous.str()) != 0) continue;
    commands.push_back(
        Command::Keyed({"ZREM", SubscribersKey(previous.str()), member}, 1, true));
  }
  std::vector<absl::StatusOr<RedisReply>> replies = redis_->ExecutePipeline(commands);
  std::vector<UserState> users;
  users.reserve(user_ids.size());
  for (size_t i = 0; i < replies.size(); ++i) {
    ASSIGN_OR_RETURN(RedisReply reply, Checked(std::move(replies[i])));
    if (i >= user_ids.size()) continue;
    RETURN_IF_ERROR(ExpectInts(reply, 3));
    users.push_back(StateFrom(user_ids[i], reply, 0));
  }
  return users;
}

absl::StatusOr<std::vector<DeviceKey>> RedisPresenceStore::Subscribers(const std::string& user_id,
                                                                       int64_t now_ms) {
  absl::StatusOr<RedisReply> reply =
      Run(*redis_, Command::Keyed({"ZRANGEBYSCORE", SubscribersKey(user_id),
                                   absl::StrCat("(", now_ms), "+inf"},
                                  1, true));
  if (!reply.ok()) return reply.status();
  std::vector<DeviceKey> devices;
  for (const RedisReply& member : reply->elements()) {
    ASSIGN_OR_RETURN(DeviceKey device, ParseMember(member.str()));
    devices.push_back(std::move(device));
  }
  return devices;
}

absl::StatusOr<std::vector<Expired>> RedisPresenceStore::SweepExpired(
    const std::string& replica_id, int64_t now_ms, int limit) {
  std::vector<Expired> result;
  const int start = static_cast<int>(now_ms % kSweepShards);
  for (int k = 0; k < kSweepShards && static_cast<int>(result.size()) < limit; ++k) {
    const int shard = (start + k) % kSweepShards;
    // The claim only saves duplicate work: the expire script is atomic per user, so two
    // replicas sweeping one shard still report each offline transition once.
    absl::StatusOr<RedisReply> claimed =
        Run(*redis_, Command::Keyed({"SET", SweepLockKey(shard), replica_id, "NX", "PX", "5000"},
                                    1));
    if (!claimed.ok()) return claimed.status();
    if (claimed->is_nil()) continue;
    absl::StatusOr<RedisReply> due = Run(
        *redis_, Command::Keyed({"ZRANGEBYSCORE", SweepIndexKey(shard), "-inf",
                                 absl::StrCat(now_ms), "LIMIT", "0", absl::StrCat(limit)},
                                1, true));
    absl::Status failure = due.status();
    if (due.ok() && !due->elements().empty()) {
      std::set<std::string> users;
      std::vector<std::string> unindex_args = {absl::StrCat(now_ms)};
      for (const RedisReply& member : due->elements()) {
        absl::StatusOr<DeviceKey> device = ParseMember(member.str());
        if (!device.ok()) {
          failure = device.status();
          break;
        }
        users.insert(device->user_id);
        unindex_args.push_back(member.str());
      }
      std::vector<Command> commands;
      std::vector<std::string> order(users.begin(), users.end());
      for (const std::string& user_id : order) {
        commands.push_back(expire_.Call(
            {EntriesKey(user_id), MetaKey(user_id)},
            {absl::StrCat(now_ms), absl::StrCat(timings_.entry_ttl_ms),
             absl::StrCat(timings_.last_seen_ttl_ms)}));
      }
      std::vector<absl::StatusOr<RedisReply>> replies =
          failure.ok() ? redis_->ExecutePipeline(commands)
                       : std::vector<absl::StatusOr<RedisReply>>();
      for (size_t i = 0; i < replies.size() && failure.ok(); ++i) {
        absl::StatusOr<RedisReply> reply = Checked(std::move(replies[i]));
        if (!reply.ok()) {
          failure = reply.status();
          break;
        }
        if (absl::Status s = ExpectInts(*reply, 5); !s.ok()) {
          failure = s;
          break;
        }
        if (At(*reply, 0) == 0) continue;
        Expired expired;
        expired.devices = static_cast<int>(At(*reply, 0));
        expired.went_offline = At(*reply, 1) == 1;
        expired.user = StateFrom(order[i], *reply, 2);
        result.push_back(std::move(expired));
      }
      if (failure.ok()) {
        failure = Run(*redis_, unindex_.Call({SweepIndexKey(shard)}, unindex_args)).status();
      }
    }
    // Released either way; a replica that dies holding it loses the claim after 5 s.
    (void)Run(*redis_, unlock_.Call({SweepLockKey(shard)}, {replica_id}));
    if (!failure.ok()) return failure;
  }
  return result;
}

absl::StatusOr<int64_t> RedisPresenceStore::CountEntries() {
  std::vector<Command> commands;
  for (int shard = 0; shard < kSweepShards; ++shard) {
    commands.push_back(Command::Keyed({"ZCARD", SweepIndexKey(shard)}, 1, true));
  }
  int64_t total = 0;
  for (absl::StatusOr<RedisReply>& r : redis_->ExecutePipeline(commands)) {
    ASSIGN_OR_RETURN(RedisReply reply, Checked(std::move(r)));
    total += reply.integer();
  }
  return total;
}

}  // namespace padlock::presence
