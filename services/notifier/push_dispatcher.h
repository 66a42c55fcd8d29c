#pragma once
// Wakes devices with one Web Push each (docs/PUSH.md): reads the device's subscription, keeps away
// from origins that answered 429, builds the fixed wake-up, posts it, and acts on the answer —
// 404/410 delete the subscription, 429 blocks the origin until Retry-After and tries again then,
// 5xx and no answer retry with jittered back-off, a bounded number of times (push_policy.h).
// Coalescing happened before (the message-queue's pn: mark): every Wake is one push.
//
// Plain logic on small interfaces: no curl, grpc or hiredis here. Thread-safe; the pointers must
// outlive it. Answers arrive on the poster's thread and are handed to the scheduler, so no store
// call ever runs on the HTTP thread.

#include <cstdint>
#include <functional>
#include <optional>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "services/common/runtime/clock.h"
#include "services/notifier/push_policy.h"
#include "services/notifier/web_push.h"

namespace prometheus {
class Counter;
class Histogram;
class Registry;
template <typename T>
class Family;
}  // namespace prometheus

namespace padlock::notifier {

struct PushDevice {
  std::string user_id;
  uint32_t device_id = 0;
};

// The device's subscription as the gateway stored it.
struct StoredSubscription {
  std::string endpoint;
  std::string p256dh;
  std::string auth;
};

// push:{user:device}. Thread-safe; calls may block (Redis).
class SubscriptionStore {
 public:
  virtual ~SubscriptionStore() = default;
  // nullopt when the device has none; Unavailable when the store is down.
  virtual absl::StatusOr<std::optional<StoredSubscription>> Get(const PushDevice& device) = 0;
  // OK when there was none. Unavailable when down.
  virtual absl::Status Delete(const PushDevice& device) = 0;
};

// Sends one request; `done` runs once, later, on any thread (CurlPushClient's contract).
class PushPoster {
 public:
  virtual ~PushPoster() = default;
  virtual absl::Status Post(PushHttpRequest request,
                            std::function<void(const PushHttpResult&)> done) = 0;
};

// Runs `task` after `delay` (zero: as soon as a worker is free) on a worker thread that may block.
class Scheduler {
 public:
  virtual ~Scheduler() = default;
  virtual void RunAfter(absl::Duration delay, std::function<void()> task) = 0;
};

struct DispatcherOptions {
  absl::Duration ttl = absl::Hours(24 * 7);  // the TTL header (PADLOCK_PUSH_TTL)
  RetryPolicy retry;
};

class PushDispatcher {
 public:
  // `random` returns uniform values in [0, 1) (the jitter); `metrics` may be null.
  PushDispatcher(DispatcherOptions options, SubscriptionStore* store, PushPoster* poster,
                 VapidSigner* signer, OriginGate* gate, Scheduler* scheduler,
                 const runtime::Clock* clock, std::function<double()> random,
                 prometheus::Registry* metrics);

  // Wakes `device`, whose message was enqueued at `enqueued_at` (for the latency metric). Runs
  // the first attempt on the calling thread (a store read: call it from a worker).
  void Wake(const PushDevice& device, absl::Time enqueued_at);

 private:
  struct Attempt {
    PushDevice device;
    absl::Time enqueued_at;
    int retries = 0;  // retries already made
  };
  void Try(Attempt attempt);
  void Answered(Attempt attempt, const std::string& origin, const PushHttpResult& result);
  void RetryLater(Attempt attempt, std::string_view reason);
  void Fail(std::string_view reason);
  void Deleted(std::string_view reason);

  const DispatcherOptions options_;
  SubscriptionStore* const store_;
  PushPoster* const poster_;
  VapidSigner* const signer_;
  OriginGate* const gate_;
  Scheduler* const scheduler_;
  const runtime::Clock* const clock_;
  const std::function<double()> random_;
  prometheus::Registry* const metrics_;
  prometheus::Family<prometheus::Counter>* failed_ = nullptr;   // {reason}
  prometheus::Family<prometheus::Counter>* deleted_ = nullptr;  // {reason}: 404, 410
  prometheus::Counter* sent_ = nullptr;
  prometheus::Counter* retried_ = nullptr;
  prometheus::Counter* no_subscription_ = nullptr;
  prometheus::Histogram* latency_ = nullptr;
};

}  // namespace padlock::notifier
