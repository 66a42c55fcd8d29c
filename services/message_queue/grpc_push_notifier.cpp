#include "services/message_queue/grpc_push_notifier.h"

#include <chrono>
#include <thread>
#include <utility>

#include "absl/time/clock.h"
#include "services/common/runtime/logging.h"
#include "services/common/runtime/metrics_util.h"

namespace padlock::message_queue {
namespace {

constexpr int kMaxWakesPerCall = 1000;  // the notifier's limit (notifier.proto)

struct Call {
  grpc::ClientContext context;
  padlock::v1::NotifyRequest request;
  padlock::v1::NotifyResponse response;
};

}  // namespace

GrpcPushNotifier::GrpcPushNotifier(std::shared_ptr<grpc::Channel> channel,
                                   absl::Duration deadline, int max_in_flight,
                                   prometheus::Registry* metrics)
    : stub_(padlock::v1::Notifier::NewStub(std::move(channel))),
      deadline_(deadline),
      max_in_flight_(max_in_flight) {
  sent_ = runtime::MakeCounter(metrics, "padlock_push_wakes_notified_total",
                               "Push wake-ups the notifier accepted");
  failed_ = runtime::MakeCounter(metrics, "padlock_push_wakes_failed_total",
                                 "Push wake-ups lost: the Notify rpc failed or the notifier "
                                 "dropped them (its queue was full)");
  dropped_ = runtime::MakeCounter(metrics, "padlock_push_wakes_dropped_total",
                                  "Push wake-ups not sent: too many Notify rpcs in flight");
}

GrpcPushNotifier::~GrpcPushNotifier() {
  const absl::Time until = absl::Now() + deadline_ + absl::Seconds(1);
  while (in_flight_.load() > 0 && absl::Now() < until) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));  // shutdown only
  }
}

void GrpcPushNotifier::Notify(std::vector<PushWakeRequest> wakes) {
  for (size_t begin = 0; begin < wakes.size(); begin += kMaxWakesPerCall) {
    const size_t end = std::min(wakes.size(), begin + kMaxWakesPerCall);
    const double count = static_cast<double>(end - begin);
    if (in_flight_.fetch_add(1) >= max_in_flight_) {
      in_flight_.fetch_sub(1);
      runtime::Increment(dropped_, count);
      continue;
    }
    auto* call = new Call;
    for (size_t i = begin; i < end; ++i) {
      padlock::v1::PushWake* wake = call->request.add_wakes();
      wake->mutable_device()->set_user_id(wakes[i].device.user_id);
      wake->mutable_device()->set_device_id(wakes[i].device.device_id);
      wake->set_enqueued_at_ms(static_cast<uint64_t>(wakes[i].enqueued_at_ms));
    }
    call->context.set_deadline(absl::ToChronoTime(absl::Now() + deadline_));
    stub_->async()->Notify(&call->context, &call->request, &call->response,
                           [this, call, count](grpc::Status status) {
                             if (status.ok()) {
                               runtime::Increment(sent_, call->response.queued());
                               runtime::Increment(failed_, call->response.dropped());
                             } else {
                               runtime::Increment(failed_, count);
                               runtime::LogWarn("notify failed",
                                                {{"code", static_cast<int>(status.error_code())},
                                                 {"error", status.error_message()}});
                             }
                             delete call;
                             in_flight_.fetch_sub(1);
                           });
  }
}

}  // namespace padlock::message_queue
