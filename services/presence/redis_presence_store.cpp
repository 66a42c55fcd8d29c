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
#include "services/presence/lua_scripts.h"

namespace padlock::presence {
namespace {

using redis::Command;
using redis::RedisReply;

std::string WithPrelude(const char* body) { return absl::StrCat(lua::kPrelude, body); }

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
      connect_(WithPrelude(lua::kConnect)),
      disconnect_(WithPrelude(lua::kDisconnect)),
      heartbeat_(WithPrelude(lua::kHeartbeat)),
      read_(WithPrelude(lua::kRead)),
      set_visibility_(WithPrelude(lua::kSetVisibility)),
      rate_(lua::kRate),
      replace_watch_(lua::kReplaceWatch),
      add_subscriber_(WithPrelude(lua::kAddSubscriber)),
      expire_(WithPrelude(lua::kExpire)),
      unindex_(lua::kUnindex),
      unlock_(lua::kUnlock) {}

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
