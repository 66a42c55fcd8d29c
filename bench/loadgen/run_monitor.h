#pragma once
// RunMonitor: a live view of one load-generator run for whoever injects faults into it from the
// same process (tests/chaos): how far the run got (accepted sends, received envelopes), and marks
// of when each fault began and when what it broke was restored. From the marks the run reports,
// per fault, how long it took until sends were accepted and delivered again
// (Report::recoveries). Thread-safe; must outlive the run it is given to (Options::monitor).

#include <atomic>
#include <cstdint>
#include <mutex>
#include <string>
#include <vector>

namespace padlock::loadgen {

// One fault as the run saw it. Times are seconds from the fault's start; -1: never happened
// (before the run ended).
struct FaultRecovery {
  std::string fault = {};
  // When the injector said it had restored what it broke (RunMonitor::FaultRestored).
  double restored_after = -1;
  // The first send accepted whose (re)send was written after the fault began.
  double first_accepted_after = -1;
  // The first envelope received whose send was (re)sent after the fault began, i.e. a message
  // that went the whole way through the recovered stack.
  double first_delivered_after = -1;
};

class RunMonitor {
 public:
  // Progress so far: sends accepted (claims answered) and envelopes received.
  uint64_t accepted() const { return accepted_.load(std::memory_order_relaxed); }
  uint64_t received() const { return received_.load(std::memory_order_relaxed); }

  // Fault `name` begins now. A fault still open is closed first (one fault at a time).
  void FaultBegins(std::string name);
  // What the current fault broke is back now (the process restarted and serving, Redis thawed).
  void FaultRestored();
  // Every fault so far, in order.
  std::vector<FaultRecovery> Recoveries() const;

  // For the run. `attempt_nanos`: when the send (of the envelope) was last (re)sent; `now`: the
  // time of the outcome or receipt (both NowNanos()).
  void NoteAccepted(uint64_t attempt_nanos, uint64_t now);
  void NoteReceived(uint64_t count, uint64_t attempt_nanos, uint64_t now);

 private:
  struct Fault {
    std::string name;
    uint64_t began = 0;
    uint64_t restored = 0;
    uint64_t first_accepted = 0;
    uint64_t first_delivered = 0;
  };
  std::atomic<uint64_t> accepted_{0}, received_{0};
  // The current fault's start (0: none yet) and its first accepted / delivered times (0: not
  // yet), kept outside the lock since every outcome reads them; copied into faults_.back().
  std::atomic<uint64_t> current_began_{0};
  std::atomic<uint64_t> current_accepted_{0}, current_delivered_{0};
  mutable std::mutex mutex_;
  std::vector<Fault> faults_;  // under mutex_; the last one's first_* live in current_*
};

}  // namespace padlock::loadgen
