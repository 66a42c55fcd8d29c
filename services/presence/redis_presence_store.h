#pragma once
// PresenceStore on Redis (standalone or Cluster, same code). Keys, per watched/owning user `u`
// (all of one user's presence state shares the hash tag `{u}`, so one Lua script updates a
// device's epoch, its registry entry and the user's online state atomically):
//
//   pr:ep:{u}:<device>   string  connection epoch counter (INCR); TTL last_seen_ttl
//   pr:on:{u}            hash    device → "epoch|expires_at_ms|connected_at_ms|gateway_id";
//                                key TTL 2 × entry_ttl + 60 s after the last connect/heartbeat
//                                (a margin for the sweep; expired entries are never reported
//                                as live)
//   pr:meta:{u}          hash    vis (1 nobody, 2 everyone), seen (last seen, Unix ms); TTL
//                                last_seen_ttl, renewed on connect / heartbeat /
//                                disconnect / SetVisibility
//   pr:subs:{u}          zset    subscriber devices "<user>:<device>" scored by expiry (ms)
//
// per subscriber device `s:d`:
//   pr:watch:{s:d}       set     users the device watches; TTL subscription_ttl
//   pr:rl:{s:d}          hash    subscription-change token bucket; TTL burst × refill
//
// and the sweep index, spread over kSweepShards shards (shard = FNV-1a(user) mod kSweepShards):
//   pr:exp:{pr.<n>}      zset    "<user>:<device>" scored by its entry's expiry (ms)
//   pr:sweep:{pr.<n>}    string  the replica sweeping shard n now; TTL a few seconds
//
// Work on several users or on a user and a shard is separate per-slot commands, pipelined.

#include <memory>
#include <string>
#include <vector>

#include "services/common/redis/redis_client.h"
#include "services/common/redis/script.h"
#include "services/presence/presence_store.h"

namespace padlock::presence {

inline constexpr int kSweepShards = 16;

class RedisPresenceStore final : public PresenceStore {
 public:
  // `redis` must outlive the store.
  RedisPresenceStore(redis::RedisClient* redis, StoreTimings timings);

  absl::StatusOr<ConnectOutcome> Connect(const DeviceKey& device, const std::string& gateway_id,
                                         Visibility visibility, int64_t now_ms) override;
  absl::StatusOr<DisconnectOutcome> Disconnect(const DeviceKey& device, uint64_t epoch,
                                               int64_t now_ms) override;
  absl::StatusOr<std::vector<Connection>> Heartbeat(const std::string& gateway_id,
                                                    absl::Span<const Connection> connections,
                                                    int64_t now_ms) override;
  absl::StatusOr<UserState> SetVisibility(const std::string& user_id, Visibility visibility,
                                          int64_t now_ms) override;
  absl::StatusOr<std::vector<UserState>> Read(absl::Span<const std::string> user_ids,
                                              int64_t now_ms) override;
  absl::StatusOr<std::vector<Location>> Locate(absl::Span<const DeviceKey> devices,
                                               int64_t now_ms) override;
  absl::StatusOr<RateDecision> TakeSubscribeToken(const DeviceKey& device,
                                                  int64_t now_ms) override;
  absl::StatusOr<std::vector<UserState>> ReplaceSubscriptions(
      const DeviceKey& subscriber, absl::Span<const std::string> user_ids,
      int64_t now_ms) override;
  absl::StatusOr<std::vector<DeviceKey>> Subscribers(const std::string& user_id,
                                                     int64_t now_ms) override;
  absl::StatusOr<std::vector<Expired>> SweepExpired(const std::string& replica_id,
                                                    int64_t now_ms, int limit) override;
  absl::StatusOr<int64_t> CountEntries() override;

  // Key names (exposed for tests and docs).
  static std::string EpochKey(const DeviceKey& device);
  static std::string EntriesKey(const std::string& user_id);
  static std::string MetaKey(const std::string& user_id);
  static std::string SubscribersKey(const std::string& user_id);
  static std::string WatchKey(const DeviceKey& device);
  static std::string RateKey(const DeviceKey& device);
  static int SweepShard(const std::string& user_id);
  static std::string SweepIndexKey(int shard);
  static std::string SweepLockKey(int shard);

 private:
  // TTL of pr:on:{u}: 2 × entry_ttl + 60 s (see the .cpp).
  int64_t EntriesKeyTtlMs() const;

  redis::RedisClient* const redis_;
  const StoreTimings timings_;
  const redis::Script connect_;
  const redis::Script disconnect_;
  const redis::Script heartbeat_;
  const redis::Script read_;
  const redis::Script set_visibility_;
  const redis::Script rate_;
  const redis::Script replace_watch_;
  const redis::Script add_subscriber_;
  const redis::Script expire_;
  const redis::Script unindex_;
  const redis::Script unlock_;
};

}  // namespace padlock::presence
