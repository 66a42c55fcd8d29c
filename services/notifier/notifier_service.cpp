#include "services/notifier/notifier_service.h"

#include <string>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "services/common/runtime/metrics_util.h"

namespace padlock::notifier {
namespace {

// What a Redis hash tag needs ({user:device}); the message-queue sends only ids it validated.
bool ValidDevice(const padlock::v1::DeviceAddress& device) {
  const std::string& user = device.user_id();
  return !user.empty() && user.size() <= 128 && device.device_id() != 0 &&
         user.find_first_of("{}:") == std::string::npos;
}

}  // namespace

NotifierService::NotifierService(PushDispatcher* dispatcher, runtime::BoundedExecutor* executor,
                                 prometheus::Registry* metrics)
    : dispatcher_(dispatcher), executor_(executor) {
  received_ = runtime::MakeCounter(metrics, "padlock_notifier_wakes_received_total",
                                   "Wakes the message-queue asked for");
  dropped_ = runtime::MakeCounter(metrics, "padlock_notifier_wakes_dropped_total",
                                  "Wakes not queued: the worker queue was full");
}

grpc::ServerUnaryReactor* NotifierService::Notify(grpc::CallbackServerContext* context,
                                                  const padlock::v1::NotifyRequest* request,
                                                  padlock::v1::NotifyResponse* response) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  if (request->wakes_size() > kMaxWakesPerCall) {
    reactor->Finish(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                                 absl::StrCat("wakes: at most ", kMaxWakesPerCall)));
    return reactor;
  }
  for (int i = 0; i < request->wakes_size(); ++i) {
    if (!ValidDevice(request->wakes(i).device())) {
      reactor->Finish(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                                   absl::StrCat("wakes[", i, "].device: malformed")));
      return reactor;
    }
  }
  // Submit never blocks, so this runs on the gRPC thread; the Wake itself (a Redis read) runs on
  // a worker.
  uint32_t queued = 0;
  uint32_t dropped = 0;
  for (const padlock::v1::PushWake& wake : request->wakes()) {
    runtime::Increment(received_);
    PushDevice device{wake.device().user_id(), wake.device().device_id()};
    const absl::Time enqueued_at = wake.enqueued_at_ms() == 0
                                       ? absl::Now()
                                       : absl::FromUnixMillis(
                                             static_cast<int64_t>(wake.enqueued_at_ms()));
    absl::Status submitted = executor_->Submit([this, device = std::move(device), enqueued_at] {
      dispatcher_->Wake(device, enqueued_at);
    });
    if (submitted.ok()) {
      ++queued;
    } else {
      ++dropped;
      runtime::Increment(dropped_);
    }
  }
  response->set_queued(queued);
  response->set_dropped(dropped);
  reactor->Finish(grpc::Status::OK);
  return reactor;
}

}  // namespace padlock::notifier
