// DeviceStream's sends and acks: admitting a send (SendWindow), handing sends and acks to the
// pumps, and answering each send with its outcome.

#include <prometheus/counter.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>

#include <utility>

#include "absl/strings/str_cat.h"
#include "services/common/runtime/metrics_util.h"
#include "services/common/runtime/upstream_status.h"
#include "services/gateway/device_stream.h"
#include "services/gateway/stream_hub.h"
#include "services/gateway/stream_support.h"

namespace padlock::gateway {

namespace v1 = padlock::v1;

void DeviceStream::HandleSend(v1::SendRequest* send) {
  runtime::Increment(hub_->metrics().sends);
  const StreamSettings& settings = hub_->settings();
  bool notify = false;
  {
    std::lock_guard lock(mu_);
    const uint64_t id = send->request_id();
    auto refuse = [&](grpc::StatusCode code, std::string message, uint32_t retry_ms = 0) {
      v1::SendResult result;
      result.set_request_id(id);
      result.mutable_refused()->set_code(static_cast<int32_t>(code));
      result.mutable_refused()->set_message(std::move(message));
      result.mutable_refused()->set_retry_after_ms(retry_ms);
      QueueResultLocked(std::move(result));
      MaybeWriteLocked();
    };
    if (window_.IsOpen(id)) {
      StreamErrorLocked(grpc::StatusCode::INVALID_ARGUMENT,
                        absl::StrCat("request_id ", id, " is already in flight on this stream"),
                        id);
      MaybeWriteLocked();
      return;
    }
    if (finish_status_.has_value()) {
      // The stream's last frame (`closing`, `displaced`) is already queued and nothing may
      // follow it: the send stays unanswered, and the client sends it again on its next
      // connection, as it does with every unanswered send (PROTOCOL.md).
      runtime::Increment(hub_->metrics().sends_refused);
      return;
    }
    if (phase_ == Phase::kClosing) {
      runtime::Increment(hub_->metrics().sends_refused);
      refuse(grpc::StatusCode::UNAVAILABLE,
             "stream is closing: send again (same message_id) on the next connection");
      return;
    }
    const size_t bytes = send->ByteSizeLong();
    if (bytes > settings.max_send_bytes) {
      runtime::Increment(hub_->metrics().sends_refused);
      refuse(grpc::StatusCode::INVALID_ARGUMENT,
             absl::StrCat("send of ", bytes, " bytes exceeds the limit of ",
                          settings.max_send_bytes, " bytes"));
      return;
    }
    const SendWindow::Admission admission = window_.Admit(id);
    if (!admission.admitted) {
      runtime::Increment(hub_->metrics().sends_rate_limited);
      refuse(grpc::StatusCode::RESOURCE_EXHAUSTED,
             absl::StrCat("send rate limit for this device; retry after ",
                          admission.retry_after_ms, " ms"),
             admission.retry_after_ms);
      return;
    }
    PendingSend pending;
    pending.request_id = id;
    pending.message.Swap(send->mutable_message());
    sends_.push_back(std::move(pending));
    if (!send_scheduled_) {
      send_scheduled_ = true;
      notify = true;
    }
  }
  if (notify) hub_->send_pump().Ready(shared_from_this());
}

std::vector<DeviceStream::PendingSend> DeviceStream::TakeSends(size_t max) {
  std::lock_guard lock(mu_);
  std::vector<PendingSend> taken;
  if (send_in_flight_) return taken;
  while (!sends_.empty() && taken.size() < max) {
    taken.push_back(std::move(sends_.front()));
    sends_.pop_front();
  }
  if (taken.empty()) {
    send_scheduled_ = false;
  } else {
    send_in_flight_ = true;
  }
  return taken;
}

bool DeviceStream::OnSendOutcomes(const std::vector<uint64_t>& request_ids,
                                  const grpc::Status& status, const v1::EnqueueResponse* response,
                                  int offset) {
  // Clean of internal addresses; computed once per batch (it logs the original).
  const std::string failure =
      response == nullptr
          ? runtime::PublicUpstreamStatus("message-queue", status).error_message()
          : std::string();
  std::lock_guard lock(mu_);
  for (size_t i = 0; i < request_ids.size(); ++i) {
    window_.Close(request_ids[i]);
    v1::SendResult result;
    result.set_request_id(request_ids[i]);
    if (response == nullptr) {
      const bool retryable = status.error_code() == grpc::StatusCode::UNAVAILABLE ||
                             status.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED;
      result.mutable_refused()->set_code(
          static_cast<int32_t>(retryable ? grpc::StatusCode::UNAVAILABLE : status.error_code()));
      result.mutable_refused()->set_message(
          absl::StrCat(failure, "; send again with the same message_id"));
    } else {
      const v1::SendOutcome& outcome = response->outcomes(offset + static_cast<int>(i));
      switch (outcome.outcome_case()) {
        case v1::SendOutcome::kAccepted:
          runtime::Increment(hub_->metrics().envelopes_in, outcome.accepted().placements_size());
          *result.mutable_accepted() = outcome.accepted();
          break;
        case v1::SendOutcome::kMismatch:
          *result.mutable_mismatch() = outcome.mismatch();
          break;
        case v1::SendOutcome::kRefused:
          *result.mutable_refused() = outcome.refused();
          break;
        case v1::SendOutcome::OUTCOME_NOT_SET:
          result.mutable_refused()->set_code(static_cast<int32_t>(grpc::StatusCode::INTERNAL));
          result.mutable_refused()->set_message("message-queue gave no outcome");
          break;
      }
    }
    QueueResultLocked(std::move(result));
  }
  send_in_flight_ = false;
  const bool more = !sends_.empty();
  if (!more) send_scheduled_ = false;
  if (read_paused_ && sends_.size() < hub_->settings().max_pending_sends / 2) {
    ResumeReadingLocked();
  }
  if (!more) {
    CompleteCloseLocked();
    if (client_done_ && !finish_status_.has_value()) FinishLocked(grpc::Status::OK);
  }
  MaybeWriteLocked();
  return more;
}

void DeviceStream::HandleAck(const v1::StreamAck& ack, bool schedule) {
  bool notify = false;
  {
    std::lock_guard lock(mu_);
    prometheus::Histogram* const push_ack = hub_->metrics().push_ack;
    const size_t removed = cursor_.Ack(
        ack,
        [&](const std::string& id) {
          StreamErrorLocked(grpc::StatusCode::INVALID_ARGUMENT,
                            absl::StrCat("ack: server id ", id,
                                         " was not delivered on this stream or is already acked"),
                            0);
        },
        [&](absl::Duration since_pushed) {
          push_ack->Observe(absl::ToDoubleSeconds(since_pushed));
        });
    hub_->metrics().unacked->Decrement(static_cast<double>(removed));
    if (schedule && cursor_.HasPendingAcks() && !ack_scheduled_) {
      ack_scheduled_ = true;
      notify = true;
    }
    MaybeReadLocked();  // acks may have opened the unacked window
    MaybeWriteLocked();
  }
  if (notify) hub_->ack_pump().Ready(shared_from_this());
}

void DeviceStream::ScheduleAcks() {
  {
    std::lock_guard lock(mu_);
    if (!cursor_.HasPendingAcks() || ack_scheduled_) return;
    ack_scheduled_ = true;
  }
  hub_->ack_pump().Ready(shared_from_this());
}

std::optional<v1::DeviceAck> DeviceStream::TakeAcks(size_t max_ids) {
  std::lock_guard lock(mu_);
  ack_scheduled_ = false;
  std::optional<v1::DeviceAck> ack = cursor_.TakeAcks(max_ids);
  if (ack.has_value()) *ack->mutable_device() = Address(claims_);
  return ack;
}

bool DeviceStream::HasPendingAcks() {
  std::lock_guard lock(mu_);
  return cursor_.HasPendingAcks();
}

}  // namespace padlock::gateway
