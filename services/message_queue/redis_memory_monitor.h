#pragma once
// Early warning before Redis runs out of memory: polls `INFO memory` on every master and exports
//   padlock_redis_memory_used_ratio{node="host:port"}  used_memory / maxmemory (0 when maxmemory
//                                                       is not set)
//   padlock_redis_memory_used_bytes{node}               used_memory
//   padlock_redis_memory_max_bytes{node}                maxmemory (0 = unlimited)
// With `maxmemory` + `noeviction` Redis refuses writes at 100 %, so every send would fail; the
// alert rules in deploy/prometheus/ fire well before that. Labels carry node addresses only.
//
//   padlock_redis_memory_admission_level                 0 normal, 1 pressure (large inboxes
//                                                       refused), 2 full (every new entry refused):
//                                                       the worst master's (memory_admission.h)
// With an admission, every poll also feeds it (MemoryAdmission::Observe), so that sends are
// refused above its marks, well before Redis refuses writes.
//
// Thread-safe. A node that does not answer keeps its last values (PadlockRedisDown and the
// readiness check cover an unreachable Redis).

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "services/common/redis/redis_client.h"
#include "services/message_queue/memory_admission.h"

namespace prometheus {
class Gauge;
class Registry;
template <typename T>
class Family;
}  // namespace prometheus

namespace padlock::message_queue {

// used_memory and maxmemory from the text of `INFO memory`. InvalidArgument when either is missing.
struct RedisMemory {
  uint64_t used_bytes = 0;
  uint64_t max_bytes = 0;  // 0 = no maxmemory
};
absl::StatusOr<RedisMemory> ParseInfoMemory(std::string_view info);

class RedisMemoryMonitor {
 public:
  // `redis`, `metrics` and `admission` (optional) must outlive the monitor. Nothing runs until
  // Start().
  RedisMemoryMonitor(redis::RedisClient* redis, prometheus::Registry* metrics,
                     MemoryAdmission* admission = nullptr);
  ~RedisMemoryMonitor();  // stops the poller
  RedisMemoryMonitor(const RedisMemoryMonitor&) = delete;
  RedisMemoryMonitor& operator=(const RedisMemoryMonitor&) = delete;

  // Polls every master once and updates the gauges. Returns the first failure (a node that did
  // not answer, or an unparsable reply) after updating the nodes that did answer.
  absl::Status PollOnce();

  // Polls now and then every `interval` on a thread of its own, until Stop() or destruction.
  void Start(absl::Duration interval);
  void Stop();

 private:
  redis::RedisClient* const redis_;
  MemoryAdmission* const admission_;
  prometheus::Family<prometheus::Gauge>* ratio_;
  prometheus::Family<prometheus::Gauge>* used_;
  prometheus::Family<prometheus::Gauge>* max_;
  prometheus::Gauge* level_;

  std::mutex mu_;
  std::condition_variable wake_;
  bool stopping_ = false;  // guarded by mu_
  std::atomic<MemoryLevel> last_level_{MemoryLevel::kNormal};  // for logging changes
  std::thread thread_;
};

}  // namespace padlock::message_queue
