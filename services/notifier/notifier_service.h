#pragma once
// padlock.v1.Notifier (proto/padlock/v1/notifier.proto): validates the wakes and hands each to a
// worker that runs PushDispatcher::Wake. Answers at once; never waits on a push.

#include <grpcpp/grpcpp.h>

#include "padlock/v1/notifier.grpc.pb.h"
#include "services/common/runtime/executor.h"
#include "services/notifier/push_dispatcher.h"

namespace prometheus {
class Counter;
class Registry;
}  // namespace prometheus

namespace padlock::notifier {

inline constexpr int kMaxWakesPerCall = 1000;

class NotifierService final : public padlock::v1::Notifier::CallbackService {
 public:
  // The pointers must outlive the service; `metrics` may be null.
  NotifierService(PushDispatcher* dispatcher, runtime::BoundedExecutor* executor,
                  prometheus::Registry* metrics);
  grpc::ServerUnaryReactor* Notify(grpc::CallbackServerContext* context,
                                   const padlock::v1::NotifyRequest* request,
                                   padlock::v1::NotifyResponse* response) override;

 private:
  PushDispatcher* const dispatcher_;
  runtime::BoundedExecutor* const executor_;
  prometheus::Counter* received_ = nullptr;
  prometheus::Counter* dropped_ = nullptr;
};

}  // namespace padlock::notifier
