#pragma once
// Telling the notifier which devices to wake (docs/PUSH.md). The enqueue script decided that a
// push is due (AppendResult::push_due: no gateway held the device, it has a subscription, no push
// within the interval); the dispatcher hands those devices here after the appends.
// Fire and forget: Notify never blocks and never fails the send. Plain interface, no grpc here.

#include <cstdint>
#include <vector>

#include "services/message_queue/inbox_store.h"

namespace padlock::message_queue {

struct PushWakeRequest {
  DeviceKey device;
  int64_t enqueued_at_ms = 0;  // when the envelope was appended (Unix ms)
};

// Thread-safe.
class PushNotifier {
 public:
  virtual ~PushNotifier() = default;
  // Queues the wakes for the notifier and returns at once; failures are counted and logged by
  // the implementation, never reported to the caller.
  virtual void Notify(std::vector<PushWakeRequest> wakes) = 0;
};

}  // namespace padlock::message_queue
