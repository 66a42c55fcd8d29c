#include "services/gateway/stream_pumps.h"

#include <prometheus/counter.h>
#include <prometheus/histogram.h>

#include <deque>
#include <iterator>
#include <optional>
#include <utility>

#include "services/common/runtime/logging.h"
#include "services/common/runtime/metrics_util.h"
#include "services/gateway/device_stream.h"
#include "services/gateway/stream_support.h"

namespace padlock::gateway {

namespace v1 = padlock::v1;

// ----- ack pump -----

AckPump::AckPump(const StreamSettings* settings, InboxClient* queue, StreamMetrics* metrics)
    : BatchPump(settings->max_batches_in_flight),
      settings_(settings),
      queue_(queue),
      metrics_(metrics) {
  if (settings_->ack_linger > absl::ZeroDuration()) {
    linger_ = std::make_unique<LingerTimer>(settings_->ack_linger, [this] { Flush(); });
  }
}

AckPump::~AckPump() { linger_.reset(); }

void AckPump::Ready(std::shared_ptr<DeviceStream> stream) {
  if (linger_ == nullptr) {
    BatchPump::Ready(std::move(stream));
    return;
  }
  Add(std::move(stream));
  linger_->Arm();
}

void AckPump::TakeLingering(google::protobuf::RepeatedPtrField<v1::DeviceAck>* out,
                            size_t max_devices, size_t* ids) {
  TakeFromReady([&](std::deque<std::shared_ptr<DeviceStream>>& waiting) {
    auto it = waiting.begin();
    while (it != waiting.end() && static_cast<size_t>(out->size()) < max_devices &&
           *ids < kMaxAckIdsPerCall) {
      std::optional<v1::DeviceAck> ack = (*it)->TakeAcks(kMaxAckIdsPerCall - *ids);
      if (ack.has_value()) {
        *ids += static_cast<size_t>(ack->server_ids_size());
        out->Add()->Swap(&*ack);
      }
      // A stream with ids beyond the budget keeps its place for the next call.
      it = (*it)->HasPendingAcks() ? std::next(it) : waiting.erase(it);
    }
  });
}

void AckPump::Submit(google::protobuf::RepeatedPtrField<v1::DeviceAck> acks) {
  auto batch = std::make_unique<AckBatch>();
  batch->request.mutable_acks()->Swap(&acks);
  AddInFlight();
  Start(std::move(batch));
}

void AckPump::Fill(AckBatch& batch, std::deque<std::shared_ptr<DeviceStream>>& ready) {
  size_t ids = 0;
  while (!ready.empty() &&
         static_cast<size_t>(batch.request.acks_size()) < settings_->max_batch_acks &&
         ids < kMaxAckIdsPerCall) {
    std::shared_ptr<DeviceStream> stream = std::move(ready.front());
    ready.pop_front();
    std::optional<v1::DeviceAck> ack = stream->TakeAcks(kMaxAckIdsPerCall - ids);
    if (ack.has_value()) {
      ids += static_cast<size_t>(ack->server_ids_size());
      batch.request.add_acks()->Swap(&*ack);
    }
    // Ids beyond this call's budget wait for the next call, first in line.
    if (stream->HasPendingAcks()) ready.push_front(std::move(stream));
  }
}

void AckPump::Start(std::unique_ptr<AckBatch> batch) {
  AckBatch* raw = batch.release();
  SetDeadline(raw->context, settings_->call_deadline);
  queue_->Ack(&raw->context, &raw->request, &raw->response,
              [this, raw](grpc::Status status) { Complete(raw, status); });
}

void AckPump::Complete(AckBatch* raw, const grpc::Status& status) {
  if (!status.ok() && raw->attempt == 1 &&
      (status.error_code() == grpc::StatusCode::UNAVAILABLE ||
       status.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED)) {
    // One retry on a fresh context (acks are idempotent). Still counted as in flight.
    auto retry = std::make_unique<AckBatch>();
    retry->request.Swap(&raw->request);
    retry->attempt = 2;
    delete raw;
    Start(std::move(retry));
    return;
  }
  std::unique_ptr<AckBatch> batch(raw);
  if (status.ok()) {
    runtime::Increment(metrics_->acks, batch->request.acks_size());
  } else {
    runtime::Increment(metrics_->ack_failures);
    runtime::LogWarn("ack batch failed; entries will be delivered again",
                     {{"error", status.error_message()},
                      {"acks", static_cast<int64_t>(batch->request.acks_size())}});
  }
  Done(nullptr);
}

// ----- send pump -----

SendPump::SendPump(const StreamSettings* settings, InboxClient* queue, StreamMetrics* metrics,
                   AckPump* acks)
    : BatchPump(settings->max_batches_in_flight),
      settings_(settings),
      queue_(queue),
      metrics_(metrics),
      acks_(acks) {}

void SendPump::Fill(SendBatch& batch, std::deque<std::shared_ptr<DeviceStream>>& ready) {
  size_t ack_ids = 0;
  while (!ready.empty() &&
         static_cast<size_t>(batch.request.sends_size()) < settings_->max_batch_sends) {
    std::shared_ptr<DeviceStream> stream = std::move(ready.front());
    ready.pop_front();
    std::vector<DeviceStream::PendingSend> taken = stream->TakeSends(
        settings_->max_batch_sends - static_cast<size_t>(batch.request.sends_size()));
    if (taken.empty()) continue;
    SendBatch::Segment segment{stream, {}};
    const v1::DeviceAddress sender = Address(stream->claims());
    for (DeviceStream::PendingSend& send : taken) {
      segment.request_ids.push_back(send.request_id);
      v1::Send* out = batch.request.add_sends();
      *out->mutable_sender() = sender;
      out->mutable_message()->Swap(&send.message);
    }
    // The acks that rode on the device's frames go in the same call (one call, not two),
    // within the call's budget of individual ids; the rest go to the ack pump after Start.
    std::optional<v1::DeviceAck> ack = stream->TakeAcks(kMaxAckIdsPerCall - ack_ids);
    if (ack.has_value()) {
      ack_ids += static_cast<size_t>(ack->server_ids_size());
      batch.request.add_acks()->Swap(&*ack);
    }
    if (stream->HasPendingAcks()) batch.left_acks.push_back(stream);
    batch.segments.push_back(std::move(segment));
  }
  // Acks waiting in the ack pump ride along: one call instead of two (lock order: send pump →
  // ack pump → stream).
  if (!batch.segments.empty()) {
    acks_->TakeLingering(batch.request.mutable_acks(), settings_->max_batch_acks, &ack_ids);
  }
}

void SendPump::Start(std::unique_ptr<SendBatch> batch) {
  // Taken out before the call starts (its completion may free the batch at once); scheduled after
  // the pump's mutex was released, as a stream calls into the ack pump.
  std::vector<std::shared_ptr<DeviceStream>> left_acks = std::move(batch->left_acks);
  metrics_->batch_sends->Observe(static_cast<double>(batch->request.sends_size()));
  SetDeadline(batch->context, settings_->call_deadline);
  SendBatch* raw = batch.release();
  queue_->Enqueue(&raw->context, &raw->request, &raw->response,
                  [this, raw](grpc::Status status) { Complete(raw, status); });
  for (const auto& stream : left_acks) stream->ScheduleAcks();
}

void SendPump::Complete(SendBatch* raw, const grpc::Status& status) {
  std::unique_ptr<SendBatch> batch(raw);
  size_t expected = 0;
  for (const SendBatch::Segment& s : batch->segments) expected += s.request_ids.size();
  grpc::Status outcome = status;
  if (status.ok() && static_cast<size_t>(batch->response.outcomes_size()) != expected) {
    outcome = grpc::Status(grpc::StatusCode::INTERNAL,
                           "message-queue answered a different number of outcomes");
  }
  if (!outcome.ok()) {
    runtime::Increment(metrics_->enqueue_failures);
    runtime::LogWarn("enqueue batch failed",
                     {{"error", outcome.error_message()},
                      {"code", static_cast<int>(outcome.error_code())},
                      {"sends", static_cast<int64_t>(expected)}});
  }
  if (batch->request.acks_size() > 0) {
    const v1::EnqueueAckResult& acks = batch->response.ack_result();
    if (outcome.ok() && batch->response.has_ack_result() && acks.code() == 0) {
      runtime::Increment(metrics_->acks, batch->request.acks_size());
      runtime::Increment(metrics_->acks_folded, batch->request.acks_size());
    } else {
      // Failed, or a queue that does not know folded acks: send them with Ack (idempotent).
      // Handed over before this batch stops counting as in flight, so a drain waiting for
      // both pumps to be idle does not miss them.
      acks_->Submit(std::move(*batch->request.mutable_acks()));
    }
  }
  std::vector<std::shared_ptr<DeviceStream>> again;
  int offset = 0;
  for (SendBatch::Segment& s : batch->segments) {
    const bool more = s.stream->OnSendOutcomes(s.request_ids, outcome,
                                               outcome.ok() ? &batch->response : nullptr, offset);
    offset += static_cast<int>(s.request_ids.size());
    if (more) again.push_back(std::move(s.stream));
  }
  Done(&again);
}

}  // namespace padlock::gateway
