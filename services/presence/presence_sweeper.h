#pragma once
// Runs PresenceRegistry::Sweep every `interval` on a thread of its own, so that devices of a
// gateway that stopped heartbeating go offline (and their subscribers are told) within the
// entry TTL plus one interval. Safe with many replicas sweeping the same Redis (the store
// claims shards and reports each expiry once). Errors are logged and retried next round.

#include <condition_variable>
#include <mutex>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/time/time.h"
#include "services/presence/presence_registry.h"

namespace padlock::presence {

class PresenceSweeper {
 public:
  // Starts the thread; `registry` must outlive the sweeper.
  PresenceSweeper(PresenceRegistry* registry, absl::Duration interval);
  // Stop().
  ~PresenceSweeper();
  PresenceSweeper(const PresenceSweeper&) = delete;
  PresenceSweeper& operator=(const PresenceSweeper&) = delete;

  // Ends the thread after the sweep in progress. Idempotent.
  void Stop();

 private:
  void Run();

  PresenceRegistry* const registry_;
  const absl::Duration interval_;
  // std::mutex: TSan cannot see Debian's uninstrumented absl::Mutex (as in services/common).
  std::mutex mu_;
  std::condition_variable wake_;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::thread thread_;
};

}  // namespace padlock::presence
