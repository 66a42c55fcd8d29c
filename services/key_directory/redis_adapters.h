#pragma once
// The registry's Redis-backed interfaces: invites (single-use, TTL, never in PostgreSQL), claim
// rate limits (services/common/ratelimit), device-channel announcements (revocation with inbox
// purge, prekeys low) and the device-list summaries the message-queue reads. Thread-safe;
// `redis` must outlive each object.
#include <memory>

#include "services/common/redis/redis_client.h"
#include "services/common/redis/script.h"
#include "services/key_directory/key_registry.h"

namespace padlock::key_directory {

// Key "invite:{<token>}" → for_user_id ("" for any id), with PEXPIRE = ttl.
class RedisInviteStore final : public InviteStore {
 public:
  explicit RedisInviteStore(redis::RedisClient* redis);
  absl::Status Create(const std::string& token, const std::string& for_user_id,
                      absl::Duration ttl) override;
  absl::StatusOr<Invite> Consume(const std::string& token) override;
  absl::Status Restore(const std::string& token, const Invite& invite) override;
  static std::string Key(const std::string& token);

 private:
  redis::RedisClient* const redis_;
  redis::Script consume_;  // value and PTTL read and the key deleted in one step
};

// DeviceListSummaries on the hash `dl:{<user>}` (services/common/device_lists; fields `s` the
// summary, `g` the generation "<epoch>.<n>", `w` changes in flight, `wu` their deadline in Unix
// ms). One Lua script per step, all on the user's hash tag, so a standalone Redis and a Cluster
// behave alike. Look-ups of many users are one pipeline. See docs/REDIS.md "Device-list summaries".
class RedisDeviceListSummaries final : public DeviceListSummaries {
 public:
  struct Options {
    // A change in flight longer than this is presumed dead: populates are allowed again. Must
    // exceed the longest a change's PostgreSQL transaction can take (statement timeout 5 s).
    absl::Duration writer_deadline = absl::Seconds(60);
    // TTL of a hash holding a listed summary (refreshed by every populate and change).
    absl::Duration listed_ttl = absl::Hours(24 * 7);
    // TTL of a hash holding a not-listed summary or none (a change in flight, a failed end).
    // At least writer_deadline, so that an in-flight mark outlives its writer's transaction.
    absl::Duration unlisted_ttl = absl::Hours(1);
  };
  RedisDeviceListSummaries(redis::RedisClient* redis, Options options);

  absl::StatusOr<std::string> BeginChange(const std::string& user_id) override;
  absl::Status EndChange(const std::string& user_id, const std::string& token,
                         const std::optional<device_lists::Summary>& after) override;
  absl::StatusOr<std::vector<std::string>> PopulateTokens(
      const std::vector<std::string>& user_ids) override;
  absl::StatusOr<int> Populate(const std::vector<std::string>& user_ids,
                               const std::vector<std::string>& tokens,
                               const std::vector<device_lists::Summary>& summaries) override;

 private:
  std::string TtlMs(const device_lists::Summary& summary) const;

  redis::RedisClient* const redis_;
  const Options options_;
  redis::Script begin_;
  redis::Script end_;
  redis::Script populate_;
};

class RedisDeviceEventPublisher final : public DeviceEventPublisher {
 public:
  explicit RedisDeviceEventPublisher(redis::RedisClient* redis);
  // SPUBLISH revoked, then DEL of channels::DeviceInboxKeys (the per-device keys of the
  // message-queue, which therefore need not be told) and channels::PushSubscriptionKey.
  absl::Status DeviceRevoked(const std::string& user_id, uint32_t device_id) override;
  absl::Status PreKeysLow(const std::string& user_id, uint32_t device_id,
                          uint32_t remaining) override;

 private:
  redis::RedisClient* const redis_;
};

}  // namespace padlock::key_directory
