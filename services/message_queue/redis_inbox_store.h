#pragma once
// InboxStore on Redis (standalone or Cluster): one stream per device plus a few small keys, all
// with the device's hash tag, changed only by the Lua scripts in redis_inbox_store.cpp. Key layout,
// scripts and guarantees: docs/MESSAGE_QUEUE.md.

#include <cstdint>
#include <string>

#include "absl/container/flat_hash_map.h"
#include "absl/time/time.h"
#include "services/common/redis/redis_client.h"
#include "services/common/redis/script.h"
#include "services/common/runtime/clock.h"
#include "services/message_queue/inbox_store.h"
#include "services/message_queue/memory_admission.h"

namespace padlock::message_queue {

// Thread-safe; `redis`, `admission` (optional: none = no memory admission) and `clock` (optional:
// none = the system clock; it dates dedupe windows) must outlive the store.
class RedisInboxStore final : public InboxStore {
 public:
  RedisInboxStore(redis::RedisClient* redis, InboxLimits limits,
                  MemoryAdmission* admission = nullptr, runtime::Clock* clock = nullptr);

  // One EVALSHA per cluster hash slot (one for everything on a standalone Redis) of at most 256
  // devices, plus a SPUBLISH per online_only request, all in one pipeline; per-device results.
  std::vector<absl::StatusOr<AppendResult>> Append(
      absl::Span<const AppendRequest> requests) override;
  absl::StatusOr<InboxPage> Read(const DeviceKey& device, std::string_view after_server_id,
                                 uint32_t max_entries) override;
  std::vector<absl::StatusOr<uint64_t>> Ack(absl::Span<const AckRequest> requests) override;
  // The ack scripts first in the appends' pipeline: one round trip for both.
  AckAndAppendResults AckAndAppend(absl::Span<const AckRequest> acks,
                                   absl::Span<const AppendRequest> appends) override;
  absl::StatusOr<uint64_t> Purge(const DeviceKey& device) override;
  absl::StatusOr<InboxInfo> Info(const DeviceKey& device) override;

 private:
  redis::RedisClient* const redis_;
  MemoryAdmission* const admission_;
  runtime::Clock* const clock_;
  const InboxLimits limits_;
  const redis::Script enqueue_;
  const redis::Script read_;
  const redis::Script ack_;
  const redis::Script purge_;
  const redis::Script info_;
  const redis::Script put_payload_;
  const redis::Script release_payload_;

  // Append, with `acks` run first in the appends' pipeline; their results in `ack_results`.
  std::vector<absl::StatusOr<AppendResult>> AppendAfterAcks(
      absl::Span<const AckRequest> acks, absl::Span<const AppendRequest> requests,
      std::vector<absl::StatusOr<uint64_t>>* ack_results);
  redis::Command AckCommand(const AckRequest& request) const;
  // One ack script reply → the entries removed; adds the payload references it released.
  static absl::StatusOr<uint64_t> ParseAck(const absl::StatusOr<redis::RedisReply>& reply,
                                           absl::flat_hash_map<std::string, int64_t>* released);
  // Drops references to shared payloads (key → count), deleting those that reach zero.
  void ReleasePayloads(const absl::flat_hash_map<std::string, int64_t>& counts);
};

}  // namespace padlock::message_queue
