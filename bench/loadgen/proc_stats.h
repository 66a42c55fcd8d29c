#pragma once
// What the load generator measures about the processes under test, read from /proc (Linux):
// CPU seconds (utime + stime) and peak / current resident memory, of one process or of a process
// tree (PostgreSQL forks a backend per connection). Processes are found by the TCP port they
// listen on, which tells a local stack apart from the other stacks tests start on this machine.
//
// Thread-compatible (no shared state); every call reads /proc afresh.

#include <sys/types.h>

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace padlock::loadgen {

// The pid of the process that has a TCP socket listening on `port` (any address, v4 or v6).
// NotFound when none does (or it is not visible to this user).
absl::StatusOr<pid_t> FindListeningPid(int port);

struct ProcessUsage {
  double cpu_seconds = 0;  // utime + stime (+ reaped and live children when a tree)
  uint64_t rss_kib = 0;    // VmRSS now (summed over a tree)
  uint64_t hwm_kib = 0;    // VmHWM, the peak RSS (summed over a tree: an upper bound of the peak)
  int processes = 0;       // how many processes were read
};

// Usage of `pid` alone, or with `tree` of it and every live descendant plus the CPU of children
// it has already reaped (cutime + cstime). NotFound when `pid` is gone.
absl::StatusOr<ProcessUsage> ReadUsage(pid_t pid, bool tree);

// CPU seconds used by this process so far (getrusage), and its own peak RSS in KiB.
double SelfCpuSeconds();
uint64_t SelfHwmKib();

}  // namespace padlock::loadgen
