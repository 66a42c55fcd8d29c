#pragma once
// PushNotifier over padlock.v1.Notifier.Notify: the wakes of one call of Notify go out in one
// asynchronous rpc (chunks of at most 1 000), with a deadline; the caller never waits. At most
// `max_in_flight` rpcs at once: beyond that the wakes are dropped and counted (a wake-up is best
// effort; the device still gets everything when it connects). Thread-safe.

#include <grpcpp/grpcpp.h>

#include <atomic>
#include <memory>
#include <vector>

#include "absl/time/time.h"
#include "padlock/v1/notifier.grpc.pb.h"
#include "services/message_queue/push_notifier.h"

namespace prometheus {
class Counter;
class Registry;
}  // namespace prometheus

namespace padlock::message_queue {

class GrpcPushNotifier final : public PushNotifier {
 public:
  // `metrics` may be null.
  GrpcPushNotifier(std::shared_ptr<grpc::Channel> channel, absl::Duration deadline,
                   int max_in_flight, prometheus::Registry* metrics);
  // Waits (bounded by the deadline) for the rpcs in flight: their callbacks use this object.
  ~GrpcPushNotifier() override;
  void Notify(std::vector<PushWakeRequest> wakes) override;

 private:
  std::unique_ptr<padlock::v1::Notifier::Stub> stub_;
  const absl::Duration deadline_;
  const int max_in_flight_;
  std::atomic<int> in_flight_{0};
  prometheus::Counter* sent_ = nullptr;     // wakes the notifier queued
  prometheus::Counter* failed_ = nullptr;   // wakes of failed rpcs, or that the notifier dropped
  prometheus::Counter* dropped_ = nullptr;  // wakes not sent: too many rpcs in flight
};

}  // namespace padlock::message_queue
