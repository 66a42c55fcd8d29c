#pragma once
// A fixed pool of threads with a bounded queue, for blocking work (Redis, PostgreSQL calls) that
// must not run on gRPC's callback threads. A full queue is an answer, not a wait: Submit returns
// ResourceExhausted at once, which a service passes on to its caller ("slow down").
//
// Thread-safe. Tasks run in submission order per worker; with several threads they overlap.

#include <condition_variable>
#include <cstddef>
#include <deque>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/functional/any_invocable.h"
#include "absl/status/status.h"

namespace padlock::runtime {

class BoundedExecutor {
 public:
  // Starts `threads` workers (at least one). `max_queue` (at least one) bounds the tasks waiting
  // for a worker; the ones running do not count. `name` appears in errors.
  BoundedExecutor(std::string name, int threads, size_t max_queue);
  // Shutdown().
  ~BoundedExecutor();
  BoundedExecutor(const BoundedExecutor&) = delete;
  BoundedExecutor& operator=(const BoundedExecutor&) = delete;

  // Queues `task`. OK: it will run exactly once (also when Shutdown comes first).
  // ResourceExhausted: `max_queue` tasks are already waiting; the task is dropped, not run.
  // Unavailable: Shutdown has begun; the task is dropped.
  absl::Status Submit(absl::AnyInvocable<void() &&> task);

  // Stops accepting, lets the workers run every queued task, joins them. Idempotent. Must not be
  // called from one of this executor's tasks (it would join itself).
  void Shutdown();

  // Tasks waiting for a worker right now.
  size_t queued() const;
  const std::string& name() const { return name_; }

 private:
  void WorkerLoop();

  const std::string name_;
  const size_t max_queue_;
  // std::mutex rather than absl::Mutex throughout this library: Debian's Abseil is built without
  // TSan, so TSan cannot see absl::Mutex synchronise and reports races that are not there;
  // std::mutex goes through pthread, which TSan intercepts.
  mutable std::mutex mu_;
  std::condition_variable work_or_stop_;
  std::deque<absl::AnyInvocable<void() &&>> queue_ ABSL_GUARDED_BY(mu_);
  bool shutting_down_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<std::thread> workers_;  // written only by the constructor and Shutdown
  std::mutex join_mu_;                // serializes concurrent Shutdown calls
};

}  // namespace padlock::runtime
