#pragma once
// DeviceDirectory over the device-list summaries the key-directory writes through to Redis
// (services/common/device_lists, docs/REDIS.md "Device-list summaries"): one pipelined HGET of
// `dl:{user}` field `s` for all users of a call. A user whose summary is missing (never written,
// expired, evicted, deleted by a change in flight) or unreadable goes to `fallback` — the
// key-directory, which answers from PostgreSQL's primary and fills the summary. A summary is
// trusted as it is, "not listed" included: the key-directory deletes it before any change commits
// and never lets a look-up put back an older one, so present means current.
//
// Metrics: padlock_device_list_lookups_total{source="redis"|"key_directory"} (users).
// Thread-safe; `redis`, `fallback` and `metrics` (may be null) must outlive it.

#include "services/common/redis/redis_client.h"
#include "services/message_queue/device_directory.h"

namespace prometheus {
class Counter;
class Registry;
}  // namespace prometheus

namespace padlock::message_queue {

class RedisDeviceDirectory final : public DeviceDirectory {
 public:
  RedisDeviceDirectory(redis::RedisClient* redis, DeviceDirectory* fallback,
                       prometheus::Registry* metrics);

  // Unavailable when Redis does not answer (nothing is asked of the key-directory then: the send
  // could not be stored either); otherwise the fallback's error for the users it was asked about.
  absl::StatusOr<absl::flat_hash_map<std::string, DeviceListInfo>> GetDeviceLists(
      absl::Span<const std::string> user_ids) override;

 private:
  redis::RedisClient* const redis_;
  DeviceDirectory* const fallback_;
  prometheus::Counter* from_redis_ = nullptr;
  prometheus::Counter* from_key_directory_ = nullptr;
};

}  // namespace padlock::message_queue
