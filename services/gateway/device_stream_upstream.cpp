// DeviceStream's calls to the services behind it: start-up (device still listed, push
// subscription, Presence.Connect), presence watches and visibility, and inbox reads.

#include <prometheus/counter.h>

#include <utility>

#include "absl/strings/str_cat.h"
#include "services/common/runtime/logging.h"
#include "services/common/runtime/metrics_util.h"
#include "services/common/runtime/status.h"
#include "services/common/runtime/upstream_status.h"
#include "services/gateway/device_stream.h"
#include "services/gateway/stream_hub.h"
#include "services/gateway/stream_support.h"

namespace padlock::gateway {

namespace v1 = padlock::v1;

void DeviceStream::StartUp() {
  {
    std::lock_guard lock(mu_);
    if (phase_ != Phase::kStarting || finish_status_.has_value()) return;
  }
  // The token is good; is the device still on its account's list? (Unlinked devices, deleted or
  // banned accounts lose their tokens at once.)
  absl::Status listed = hub_->auth()->CheckListed(claims_);
  if (!listed.ok()) {
    runtime::Increment(hub_->metrics().rejected.at(
        listed.code() == absl::StatusCode::kUnauthenticated ? "unauthenticated" : "unavailable"));
    Fail(runtime::ToGrpcStatus(listed));
    return;
  }
  // Every connect renews the device's push subscription (one EXPIRE; nothing when it has none).
  // A failure costs at most an earlier expiry, never the stream.
  if (hub_->push() != nullptr) {
    if (absl::Status s = hub_->push()->Refresh(DeviceRef{claims_.user_id, claims_.device_id});
        !s.ok()) {
      runtime::LogWarn("push subscription refresh failed",
                       {{"user", runtime::HashUserId(claims_.user_id)}, {"error", s}});
    }
  }
  grpc::ClientContext context;
  SetDeadline(context, hub_->settings().call_deadline);
  v1::ConnectRequest request;
  *request.mutable_device() = Address(claims_);
  request.set_gateway_id(hub_->settings().gateway_id);
  v1::ConnectResponse response;
  grpc::Status status = hub_->presence()->Connect(&context, request, &response);
  if (!status.ok()) {
    runtime::Increment(hub_->metrics().rejected.at("unavailable"));
    const grpc::Status shown = runtime::PublicUpstreamStatus("presence", status);
    Fail(grpc::Status(grpc::StatusCode::UNAVAILABLE,
                      absl::StrCat("connect: ", shown.error_message(), " (reconnect)")));
    return;
  }
  std::lock_guard lock(mu_);
  if (phase_ != Phase::kStarting || finish_status_.has_value()) return;
  epoch_ = response.epoch();
  phase_ = Phase::kLive;
  v1::ServerFrame connected;
  connected.mutable_connected()->set_epoch(epoch_);
  connected.mutable_connected()->set_server_time_ms(static_cast<uint64_t>(hub_->clock()->NowMs()));
  connected.mutable_connected()->set_max_unacked(hub_->settings().max_unacked);
  connected.mutable_connected()->set_stream_revision(revision_);
  outbox_.PushFrameFirst(std::move(connected));  // the first frame of every stream
  if (displaced_by_ > epoch_) {
    DisplaceLocked(displaced_by_);
    return;
  }
  if (closing_reason_ != v1::Closing::REASON_UNSPECIFIED) {  // drained while starting (Close)
    phase_ = Phase::kClosing;
    CompleteCloseLocked();
    MaybeWriteLocked();
    return;
  }
  MaybeReadLocked();
  MaybeWriteLocked();
}

void DeviceStream::HandleSubscribePresence(const v1::SubscribePresence& subscribe) {
  std::shared_ptr<DeviceStream> self = shared_from_this();
  {
    std::lock_guard lock(mu_);
    if (static_cast<size_t>(subscribe.user_ids_size()) > hub_->settings().max_presence_users) {
      StreamErrorLocked(grpc::StatusCode::RESOURCE_EXHAUSTED,
                        absl::StrCat("subscribe_presence: at most ",
                                     hub_->settings().max_presence_users, " users"),
                        0);
      MaybeWriteLocked();
      return;
    }
    watched_.assign(subscribe.user_ids().begin(), subscribe.user_ids().end());
    watched_at_ = hub_->clock()->Now();
  }
  v1::SubscribeRequest request;
  *request.mutable_subscriber() = Address(claims_);
  *request.mutable_user_ids() = subscribe.user_ids();
  absl::Status submitted = hub_->executor()->Submit([self, request = std::move(request)] {
    grpc::ClientContext context;
    SetDeadline(context, self->hub_->settings().call_deadline);
    v1::SubscribeResponse response;
    grpc::Status status = self->hub_->presence()->Subscribe(&context, request, &response);
    std::lock_guard lock(self->mu_);
    if (!status.ok()) {
      self->StreamErrorLocked(
          status.error_code(),
          absl::StrCat("subscribe_presence: ",
                       runtime::PublicUpstreamStatus("presence", status).error_message()),
          0);
    } else if (self->phase_ == Phase::kLive) {
      for (const v1::PresenceStatus& current : response.current()) {
        v1::ServerFrame frame;
        *frame.mutable_presence_event()->mutable_status() = current;
        self->QueueFrameLocked(std::move(frame));
      }
    }
    self->MaybeWriteLocked();
  });
  if (!submitted.ok()) {
    std::lock_guard lock(mu_);
    StreamErrorLocked(grpc::StatusCode::RESOURCE_EXHAUSTED,
                      "subscribe_presence: gateway overloaded, try again", 0);
    MaybeWriteLocked();
  }
}

void DeviceStream::HandleVisibility(const v1::SetPresenceVisibility& visibility) {
  std::shared_ptr<DeviceStream> self = shared_from_this();
  v1::SetVisibilityRequest request;
  request.set_user_id(claims_.user_id);
  request.set_visibility(visibility.visibility());
  absl::Status submitted = hub_->executor()->Submit([self, request = std::move(request)] {
    grpc::ClientContext context;
    SetDeadline(context, self->hub_->settings().call_deadline);
    v1::SetVisibilityResponse response;
    grpc::Status status = self->hub_->presence()->SetVisibility(&context, request, &response);
    if (!status.ok()) {
      std::lock_guard lock(self->mu_);
      self->StreamErrorLocked(
          status.error_code(),
          absl::StrCat("set_presence_visibility: ",
                       runtime::PublicUpstreamStatus("presence", status).error_message()),
          0);
      self->MaybeWriteLocked();
    }
  });
  if (!submitted.ok()) {
    std::lock_guard lock(mu_);
    StreamErrorLocked(grpc::StatusCode::RESOURCE_EXHAUSTED,
                      "set_presence_visibility: gateway overloaded, try again", 0);
    MaybeWriteLocked();
  }
}

// ----- inbox reads -----

void DeviceStream::MaybeReadLocked() {
  if (finish_status_.has_value() || phase_ == Phase::kClosing) return;
  switch (cursor_.BeginRead()) {
    case DeliveryCursor::Read::kNone:
      return;
    case DeliveryCursor::Read::kRetryLater:  // retry after a failure, from Tick
      if (!tick_scheduled_) {
        tick_scheduled_ = true;
        hub_->ScheduleTick(shared_from_this());  // lock order: stream → hub
      }
      return;
    case DeliveryCursor::Read::kStart:
      break;
  }
  runtime::Increment(hub_->metrics().inbox_reads);
  struct Call {
    std::shared_ptr<DeviceStream> stream;
    grpc::ClientContext context;
    v1::ReadInboxRequest request;
    v1::ReadInboxResponse response;
  };
  auto* call = new Call{shared_from_this(), {}, {}, {}};
  SetDeadline(call->context, hub_->settings().call_deadline);
  *call->request.mutable_device() = Address(claims_);
  call->request.set_after_server_id(cursor_.after_server_id());
  call->request.set_after_sequence(cursor_.after_sequence());
  call->request.set_max_envelopes(cursor_.read_limit());
  hub_->inbox()->ReadInbox(&call->context, &call->request, &call->response,
                           [call](grpc::Status status) {
                             call->stream->OnInboxRead(status, call->response);
                             delete call;
                           });
}

void DeviceStream::OnInboxRead(const grpc::Status& status, v1::ReadInboxResponse& response) {
  std::lock_guard lock(mu_);
  cursor_.EndRead();
  if (finish_status_.has_value()) return;
  if (!status.ok()) {
    runtime::Increment(hub_->metrics().inbox_read_failures);
    cursor_.RetryReadLater();
    MaybeReadLocked();  // schedules the Tick that retries
    return;
  }
  // Gap markers in sequence order with the envelopes they precede.
  int next_gap = 0;
  auto gaps_before = [&](uint64_t sequence) {
    while (next_gap < response.gaps_size() &&
           response.gaps(next_gap).last_sequence() < sequence) {
      v1::ServerFrame frame;
      *frame.mutable_gap() = response.gaps(next_gap++);
      QueueFrameLocked(std::move(frame));
    }
  };
  for (v1::Envelope& envelope : *response.mutable_envelopes()) {
    if (!cursor_.IsNew(envelope.sequence())) continue;  // a wake-up pushed it meanwhile
    gaps_before(envelope.sequence());
    PushEnvelopeLocked(std::move(envelope), /*tracked=*/true);
  }
  gaps_before(UINT64_MAX);
  cursor_.AdvanceTo(response.next_after_server_id(), response.next_after_sequence());
  if (cursor_.InboxReadEnded(response.end_of_inbox())) {
    v1::ServerFrame frame;
    frame.mutable_queue_empty()->set_last_sequence(cursor_.last_delivered_sequence());
    QueueFrameLocked(std::move(frame));
  }
  MaybeReadLocked();
  MaybeWriteLocked();
}

}  // namespace padlock::gateway
