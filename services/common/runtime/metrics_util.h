#pragma once
// Small helpers for domain metrics (padlock_...): an unlabelled counter that may be switched off
// (a null registry, as unit tests of the logic pass), and incrementing it.

#include <prometheus/counter.h>
#include <prometheus/registry.h>

#include <string>

namespace padlock::runtime {

// An unlabelled counter registered in `registry`, or nullptr when `registry` is null. The counter
// lives as long as the registry.
inline prometheus::Counter* MakeCounter(prometheus::Registry* registry, const std::string& name,
                                        const std::string& help) {
  if (registry == nullptr) return nullptr;
  return &prometheus::BuildCounter().Name(name).Help(help).Register(*registry).Add({});
}

// Adds `by` (> 0) to `counter`; a null counter (metrics off) or a non-positive amount does nothing.
inline void Increment(prometheus::Counter* counter, double by = 1) {
  if (counter != nullptr && by > 0) counter->Increment(by);
}

}  // namespace padlock::runtime
