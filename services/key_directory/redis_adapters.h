#pragma once
// The registry's Redis-backed interfaces: invites (single-use, TTL, never in PostgreSQL), claim
// rate limits (services/common/ratelimit) and device-channel announcements (revocation with
// inbox purge, prekeys low). Thread-safe; `redis` must outlive each object.
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

class RedisDeviceEventPublisher final : public DeviceEventPublisher {
 public:
  explicit RedisDeviceEventPublisher(redis::RedisClient* redis);
  // SPUBLISH revoked, then DEL of channels::InboxKey and channels::SequenceKey (the per-device
  // keys of the message-queue, which therefore need not be told).
  absl::Status DeviceRevoked(const std::string& user_id, uint32_t device_id) override;
  absl::Status PreKeysLow(const std::string& user_id, uint32_t device_id,
                          uint32_t remaining) override;

 private:
  redis::RedisClient* const redis_;
};

}  // namespace padlock::key_directory
