#pragma once
// Memory admission: the message-queue stops inboxes from filling Redis before Redis refuses
// writes (maxmemory + noeviction), so that presence, logins, rate-limit buckets, acks and inbox
// reads always have room, and the fullest inboxes stop growing first.
//
// Per Redis master, from its `INFO memory` (RedisMemoryMonitor feeds Observe) plus what this
// replica appended since that poll (Charge, times an overhead factor), the estimate
//   used / maxmemory  <  pressure_ratio                 kNormal: the configured inbox caps
//   pressure_ratio    <= … <  high_water_ratio          kPressure: an inbox holding more than
//                                                        pressure_inbox_bytes takes no new entry
//   high_water_ratio  <= …                              kFull: no new entry in any inbox
// Refused appends answer RESOURCE_EXHAUSTED with `retry_after` (the enqueue script checks the
// dedupe record first, so a retry of a send already stored is still answered with its placement).
// A master without maxmemory (0) is always kNormal: admission needs a limit to work against.
//
// Thread-safe.

#include <cstdint>
#include <string>
#include <string_view>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace padlock::message_queue {

struct MemoryAdmissionOptions {
  double pressure_ratio = 0.60;    // PADLOCK_REDIS_MEMORY_PRESSURE
  double high_water_ratio = 0.80;  // PADLOCK_REDIS_MEMORY_HIGH_WATER
  // Above pressure_ratio, inboxes holding more than this many envelope bytes take no new entry.
  uint64_t pressure_inbox_bytes = 4ull << 20;  // PADLOCK_INBOX_PRESSURE_BYTES
  // What refused senders are told to wait (retry_after_ms).
  absl::Duration retry_after = absl::Seconds(30);  // PADLOCK_MEMORY_RETRY_AFTER
  // Redis memory per appended envelope byte, for the estimate between polls (stream entry,
  // dedupe record and allocator overhead; measured ~1.3 for 160-byte envelopes).
  double bytes_overhead = 1.5;
};

enum class MemoryLevel { kNormal = 0, kPressure = 1, kFull = 2 };

class MemoryAdmission {
 public:
  explicit MemoryAdmission(MemoryAdmissionOptions options);

  // A poll of `node` ("host:port"): its used_memory and maxmemory. Resets its charge.
  void Observe(std::string_view node, uint64_t used_bytes, uint64_t max_bytes);
  // `bytes` of envelopes this replica appended on `node` since its last poll.
  void Charge(std::string_view node, uint64_t bytes);
  // The level for an append on `node` (kNormal for a node never observed).
  MemoryLevel Level(std::string_view node) const;
  // The highest level over every observed node (for the gauge and logs).
  MemoryLevel WorstLevel() const;

  const MemoryAdmissionOptions& options() const { return options_; }

 private:
  struct Node {
    uint64_t used = 0;
    uint64_t max = 0;
    uint64_t charged = 0;  // estimated bytes appended since the poll
  };
  MemoryLevel LevelOf(const Node& node) const;

  const MemoryAdmissionOptions options_;
  mutable absl::Mutex mu_;
  absl::flat_hash_map<std::string, Node> nodes_ ABSL_GUARDED_BY(mu_);
};

}  // namespace padlock::message_queue
