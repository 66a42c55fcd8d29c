#include "bench/loadgen/run_monitor.h"

#include <time.h>

namespace padlock::loadgen {
namespace {

uint64_t MonotonicNanos() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1'000'000'000ull + static_cast<uint64_t>(ts.tv_nsec);
}

double SecondsAfter(uint64_t began, uint64_t at) {
  return at == 0 ? -1 : static_cast<double>(at - began) / 1e9;
}

}  // namespace

void RunMonitor::FaultBegins(std::string name) {
  const uint64_t now = MonotonicNanos();
  std::lock_guard<std::mutex> lock(mutex_);
  if (!faults_.empty()) {
    faults_.back().first_accepted = current_accepted_.load();
    faults_.back().first_delivered = current_delivered_.load();
  }
  faults_.push_back(Fault{.name = std::move(name), .began = now});
  current_accepted_.store(0);
  current_delivered_.store(0);
  current_began_.store(now);
}

void RunMonitor::FaultRestored() {
  const uint64_t now = MonotonicNanos();
  std::lock_guard<std::mutex> lock(mutex_);
  if (!faults_.empty() && faults_.back().restored == 0) faults_.back().restored = now;
}

std::vector<FaultRecovery> RunMonitor::Recoveries() const {
  std::lock_guard<std::mutex> lock(mutex_);
  std::vector<FaultRecovery> out;
  for (size_t i = 0; i < faults_.size(); ++i) {
    Fault f = faults_[i];
    if (i + 1 == faults_.size()) {
      f.first_accepted = current_accepted_.load();
      f.first_delivered = current_delivered_.load();
    }
    out.push_back(FaultRecovery{.fault = f.name,
                                .restored_after = SecondsAfter(f.began, f.restored),
                                .first_accepted_after = SecondsAfter(f.began, f.first_accepted),
                                .first_delivered_after = SecondsAfter(f.began, f.first_delivered)});
  }
  return out;
}

namespace {
// Sets `first` to `now` unless it is set already.
void SetOnce(std::atomic<uint64_t>& first, uint64_t now) {
  uint64_t expected = 0;
  first.compare_exchange_strong(expected, now);
}
}  // namespace

void RunMonitor::NoteAccepted(uint64_t attempt_nanos, uint64_t now) {
  accepted_.fetch_add(1, std::memory_order_relaxed);
  // Only a send written after the fault began proves the stack works again; one accepted just
  // after the fault began but sent before proves nothing.
  const uint64_t began = current_began_.load();
  if (began != 0 && attempt_nanos >= began) SetOnce(current_accepted_, now);
}

void RunMonitor::NoteReceived(uint64_t count, uint64_t attempt_nanos, uint64_t now) {
  received_.fetch_add(count, std::memory_order_relaxed);
  const uint64_t began = current_began_.load();
  if (began != 0 && attempt_nanos >= began) SetOnce(current_delivered_, now);
}

}  // namespace padlock::loadgen
