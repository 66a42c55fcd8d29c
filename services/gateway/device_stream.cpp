#include "services/gateway/device_stream.h"

#include <prometheus/counter.h>
#include <prometheus/gauge.h>

#include <algorithm>
#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "services/common/channels/device_channel.h"
#include "services/common/runtime/metrics_util.h"
#include "services/common/runtime/status.h"
#include "services/gateway/stream_hub.h"
#include "services/gateway/stream_support.h"

namespace padlock::gateway {
namespace {

namespace v1 = padlock::v1;

using Reactor = grpc::ServerBidiReactor<v1::ClientFrame, v1::ServerFrame>;

// Set as `ping` in the frame buffer before each read: still there after a failed read only when
// no frame was parsed (a half-close), see OnReadDone.
constexpr uint64_t kNoFrameRead = 0xFFFF'FFFF'FFFF'FFF0ULL;

// A stream refused before it started (bad token, cap, draining): finishes at once.
class RejectedStream final : public Reactor {
 public:
  explicit RejectedStream(const grpc::Status& status) { Finish(status); }
  void OnDone() override { delete this; }
};

// The highest stream revision this gateway speaks (see Connected.stream_revision).
constexpr uint32_t kStreamRevision = 2;

// The revision the client asked for (metadata `padlock-stream-revision`; absent or unreadable:
// 1), capped at ours.
uint32_t NegotiateRevision(const grpc::CallbackServerContext* context) {
  const auto& metadata = context->client_metadata();
  auto it = metadata.find("padlock-stream-revision");
  if (it == metadata.end()) return 1;
  uint32_t asked = 0;
  if (!absl::SimpleAtoi(absl::string_view(it->second.data(), it->second.size()), &asked) ||
      asked < 1) {
    return 1;
  }
  return std::min(asked, kStreamRevision);
}

}  // namespace

Reactor* MakeRejectedStream(const grpc::Status& status) { return new RejectedStream(status); }

// ----- lifecycle -----

DeviceStream::DeviceStream(StreamHub* hub, grpc::CallbackServerContext* context,
                           SessionClaims claims)
    : hub_(hub),
      context_(context),
      claims_(std::move(claims)),
      channel_(channels::DeviceChannel(claims_.user_id, claims_.device_id)),
      revision_(NegotiateRevision(context)),
      cursor_(hub->clock(), hub->settings().max_unacked, hub->settings().read_retry),
      outbox_(revision_, hub->settings().deliver_batch, hub->settings().deliver_batch_bytes),
      window_(hub->clock(), hub->settings().sends_per_device) {}

void DeviceStream::Begin() {
  std::lock_guard lock(mu_);
  self_ = shared_from_this();
  absl::Status registered = hub_->Register(self_);
  if (!registered.ok()) {
    FinishLocked(runtime::ToGrpcStatus(registered));
    return;
  }
  registered_ = true;
  if (hub_->ChannelActive(channel_)) cursor_.OnSubscribed();
  read_pending_ = true;
  StartReadLocked();
  std::shared_ptr<DeviceStream> self = self_;
  absl::Status submitted = hub_->executor()->Submit([self] { self->StartUp(); });
  if (!submitted.ok()) {
    runtime::Increment(hub_->metrics().rejected.at("unavailable"));
    FinishLocked(grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED,
                              "gateway overloaded: reconnect with backoff"));
  }
}

std::optional<uint64_t> DeviceStream::LiveEpoch() const {
  std::lock_guard lock(mu_);
  if (phase_ != Phase::kLive) return std::nullopt;
  return epoch_;
}

void DeviceStream::Fail(const grpc::Status& status) {
  std::lock_guard lock(mu_);
  outbox_.Clear();
  FinishLocked(status);
}

void DeviceStream::FinishLocked(const grpc::Status& status) {
  if (finish_status_.has_value()) return;
  finish_status_ = status;
  if (phase_ == Phase::kStarting) outbox_.Clear();  // never written: no `connected` yet
  phase_ = Phase::kClosing;
  MaybeWriteLocked();
}

void DeviceStream::Close(v1::Closing::Reason reason) {
  std::lock_guard lock(mu_);
  if (finish_status_.has_value() || closing_reason_ != v1::Closing::REASON_UNSPECIFIED) return;
  if (phase_ == Phase::kStarting) {
    if (reason == v1::Closing::REASON_DRAIN) {
      // Accepted but still starting up: StartUp finishes it as every drained stream ends —
      // `connected`, then Closing{DRAIN}, then OK — and the drain waits for it.
      closing_reason_ = reason;
      runtime::Increment(hub_->metrics().closed.at("drain"));
      return;
    }
    FinishLocked(reason == v1::Closing::REASON_REVOKED
                     ? grpc::Status(grpc::StatusCode::UNAUTHENTICATED, kInvalidTokenMessage)
                     : grpc::Status(grpc::StatusCode::UNAVAILABLE,
                                    "gateway is draining: reconnect (to another replica)"));
    return;
  }
  closing_reason_ = reason;
  phase_ = Phase::kClosing;
  const char* label = reason == v1::Closing::REASON_DRAIN           ? "drain"
                      : reason == v1::Closing::REASON_REVOKED       ? "revoked"
                      : reason == v1::Closing::REASON_TOKEN_EXPIRED ? "token_expired"
                                                                    : "drain";
  runtime::Increment(hub_->metrics().closed.at(label));
  if (reason == v1::Closing::REASON_REVOKED) {
    // Nothing more for a revoked device: drop what waits (its sends would be refused anyway).
    for (const PendingSend& s : sends_) window_.Close(s.request_id);
    sends_.clear();
  }
  CompleteCloseLocked();
}

void DeviceStream::CompleteCloseLocked() {
  if (closing_reason_ == v1::Closing::REASON_UNSPECIFIED || finish_status_.has_value()) return;
  if (phase_ == Phase::kStarting) return;  // StartUp completes the close after `connected`
  // A draining stream first answers every send it took (accepted sends are never lost).
  if (send_in_flight_ || !sends_.empty()) return;
  v1::ServerFrame closing;
  closing.mutable_closing()->set_reason(closing_reason_);
  QueueFrameLocked(std::move(closing));
  FinishLocked(grpc::Status::OK);
}

void DeviceStream::Displace(uint64_t by_epoch) {
  std::lock_guard lock(mu_);
  DisplaceLocked(by_epoch);
}

void DeviceStream::DisplaceLocked(uint64_t by_epoch) {
  displaced_by_ = std::max(displaced_by_, by_epoch);
  // Only a connection with a lower epoch closes; before our own epoch is known, remember it.
  if (epoch_ == 0 || by_epoch <= epoch_ || finish_status_.has_value()) return;
  runtime::Increment(hub_->metrics().closed.at("displaced"));
  v1::ServerFrame frame;
  frame.mutable_displaced()->set_by_epoch(by_epoch);
  QueueFrameLocked(std::move(frame));
  FinishLocked(grpc::Status::OK);
}

// ----- hub events -----

void DeviceStream::OnEvent(const v1::DeviceChannelEvent& event) {
  switch (event.event_case()) {
    case v1::DeviceChannelEvent::kWakeup: {
      std::lock_guard lock(mu_);
      if (finish_status_.has_value() || phase_ == Phase::kClosing) return;
      const v1::InboxWakeup& wakeup = event.wakeup();
      if (wakeup.sequence() == 0) {
        // online_only: delivered now or never; not in the inbox, not tracked, not acked.
        if (wakeup.has_envelope() && phase_ == Phase::kLive) {
          PushEnvelopeLocked(wakeup.envelope(), /*tracked=*/false);
          MaybeWriteLocked();
        }
        return;
      }
      bool gap_fill = false;
      switch (cursor_.OnWakeup(wakeup.sequence(), wakeup.has_envelope(), &gap_fill)) {
        case DeliveryCursor::Wakeup::kIgnore:
          return;
        case DeliveryCursor::Wakeup::kPush:
          runtime::Increment(hub_->metrics().direct_pushes);
          PushEnvelopeLocked(wakeup.envelope(), /*tracked=*/true);
          MaybeWriteLocked();
          return;
        case DeliveryCursor::Wakeup::kRead:
          if (gap_fill) runtime::Increment(hub_->metrics().gap_fills);
          MaybeReadLocked();
          return;
      }
      return;
    }
    case v1::DeviceChannelEvent::kPresence: {
      std::lock_guard lock(mu_);
      if (phase_ != Phase::kLive) return;
      v1::ServerFrame frame;
      *frame.mutable_presence_event()->mutable_status() = event.presence();
      QueueFrameLocked(std::move(frame));
      MaybeWriteLocked();
      return;
    }
    case v1::DeviceChannelEvent::kDisplacedByEpoch:
      Displace(event.displaced_by_epoch());
      return;
    case v1::DeviceChannelEvent::kRevoked:
      Close(v1::Closing::REASON_REVOKED);
      return;
    case v1::DeviceChannelEvent::kPrekeysRemaining: {
      std::lock_guard lock(mu_);
      if (finish_status_.has_value()) return;
      v1::ServerFrame frame;
      frame.mutable_prekeys_low()->set_remaining(event.prekeys_remaining());
      QueueFrameLocked(std::move(frame));
      MaybeWriteLocked();
      return;
    }
    case v1::DeviceChannelEvent::EVENT_NOT_SET:
      return;
  }
}

void DeviceStream::OnSubscribed() {
  std::lock_guard lock(mu_);
  cursor_.OnSubscribed();
  MaybeReadLocked();
}

void DeviceStream::OnResubscribed() {
  std::lock_guard lock(mu_);
  // Wake-ups may have been lost while the subscription was down: read from the cursor.
  runtime::Increment(hub_->metrics().gap_fills);
  cursor_.OnSubscribed();
  MaybeReadLocked();
}

void DeviceStream::Tick(absl::Time now) {
  bool expired = false;
  v1::SubscribePresence renew;  // the watches to renew, if any
  {
    std::lock_guard lock(mu_);
    tick_scheduled_ = false;
    if (finish_status_.has_value()) return;
    if (phase_ == Phase::kLive && DeliveryCursor::TokenExpired(claims_.expires_at, now)) {
      expired = true;
    } else {
      if (cursor_.ReadWanted()) MaybeReadLocked();  // retries a failed read
      if (phase_ == Phase::kLive && !watched_.empty() &&
          now - watched_at_ >= hub_->settings().presence_resubscribe) {
        renew.mutable_user_ids()->Assign(watched_.begin(), watched_.end());
      }
    }
  }
  if (expired) {
    Close(v1::Closing::REASON_TOKEN_EXPIRED);
    return;
  }
  if (renew.user_ids_size() > 0) HandleSubscribePresence(renew);
}

// ----- client frames -----

void DeviceStream::StartReadLocked() {
  in_.set_ping(kNoFrameRead);  // see OnReadDone
  StartRead(&in_);
}

void DeviceStream::OnReadDone(bool ok) {
  if (!ok) {
    std::lock_guard lock(mu_);
    read_pending_ = false;
    client_done_ = true;
    // A failed read is a half-close, or a frame gRPC could not parse (garbage, invalid UTF-8 in
    // a string): gRPC reports both as !ok. Parsing starts by clearing the message, so the marker
    // set before StartRead survives only a half-close. Garbage ends the stream non-OK, so that a
    // buggy client does not reconnect and repeat it forever.
    if (in_.frame_case() != v1::ClientFrame::kPing || in_.ping() != kNoFrameRead) {
      FinishLocked(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                                "malformed client frame: not a valid padlock.v1.ClientFrame"));
      return;
    }
    // The client half-closed (or went away): answer what it sent, then finish.
    if (!send_in_flight_ && sends_.empty()) FinishLocked(grpc::Status::OK);
    return;
  }
  // An ack riding on the frame comes first (it may free the unacked window for what follows).
  const StreamMetrics& metrics = hub_->metrics();
  // On a send, the ack waits for the send pump to take it with the send (one Enqueue call for
  // both); whatever the pump did not take goes to the ack pump right after.
  const bool fold = in_.frame_case() == v1::ClientFrame::kSend;
  if (in_.has_acks()) {
    runtime::Increment(metrics.frames_riding_ack);
    HandleAck(in_.acks(), /*schedule=*/!fold);
  }
  switch (in_.frame_case()) {
    case v1::ClientFrame::kSend:
      runtime::Increment(metrics.frames_send);
      HandleSend(in_.mutable_send());
      if (in_.has_acks()) ScheduleAcks();
      break;
    case v1::ClientFrame::kAck:
      runtime::Increment(metrics.frames_ack);
      HandleAck(in_.ack());
      break;
    case v1::ClientFrame::kSubscribePresence:
      runtime::Increment(metrics.frames_presence);
      HandleSubscribePresence(in_.subscribe_presence());
      break;
    case v1::ClientFrame::kSetPresenceVisibility:
      runtime::Increment(metrics.frames_presence);
      HandleVisibility(in_.set_presence_visibility());
      break;
    case v1::ClientFrame::kPing: {
      runtime::Increment(metrics.frames_ping);
      std::lock_guard lock(mu_);
      v1::ServerFrame pong;
      pong.set_pong(in_.ping());
      QueueFrameLocked(std::move(pong));
      MaybeWriteLocked();
      break;
    }
    case v1::ClientFrame::FRAME_NOT_SET: {
      if (in_.has_acks()) break;  // a lone riding ack
      runtime::Increment(metrics.frames_other);
      std::lock_guard lock(mu_);
      StreamErrorLocked(grpc::StatusCode::INVALID_ARGUMENT, "empty or unknown client frame", 0);
      MaybeWriteLocked();
      break;
    }
  }
  std::lock_guard lock(mu_);
  in_.Clear();
  if (finished_) {
    read_pending_ = false;
    return;
  }
  if (sends_.size() >= hub_->settings().max_pending_sends) {
    read_pending_ = false;
    read_paused_ = true;  // resumed when the queued sends drain
    return;
  }
  StartReadLocked();
}

void DeviceStream::ResumeReadingLocked() {
  if (!read_paused_ || client_done_ || finished_) return;
  read_paused_ = false;
  read_pending_ = true;
  StartReadLocked();
}

void DeviceStream::StreamErrorLocked(grpc::StatusCode code, const std::string& message,
                                     uint64_t request_id) {
  runtime::Increment(hub_->metrics().stream_errors);
  v1::ServerFrame frame;
  frame.mutable_error()->set_code(static_cast<int32_t>(code));
  frame.mutable_error()->set_message(message);
  frame.mutable_error()->set_request_id(request_id);
  QueueFrameLocked(std::move(frame));
}

// ----- writing -----

void DeviceStream::PushEnvelopeLocked(v1::Envelope envelope, bool tracked) {
  if (tracked) {
    cursor_.Track(envelope.server_id(), envelope.sequence());
    hub_->metrics().unacked->Increment();
  }
  outbox_.PushEnvelope(std::move(envelope));
}

void DeviceStream::MaybeWriteLocked() {
  if (write_pending_ || finished_) return;
  if (phase_ == Phase::kStarting) return;  // `connected` goes first
  if (outbox_.empty()) {
    if (finish_status_.has_value()) {
      finished_ = true;
      Finish(*finish_status_);
    }
    return;
  }
  outbox_.Next(&writing_);
  runtime::Increment(hub_->metrics().outcomes_riding, writing_.send_results_size());
  runtime::Increment(hub_->metrics().server_frames);
  write_pending_ = true;
  StartWrite(&writing_);
}

void DeviceStream::OnWriteDone(bool ok) {
  std::lock_guard lock(mu_);
  write_pending_ = false;
  if (writing_.has_deliver()) {
    runtime::Increment(hub_->metrics().deliver_frames);
    runtime::Increment(hub_->metrics().envelopes_out, writing_.deliver().envelopes_size());
  }
  if (!ok) {
    // The client is gone: nothing more can be written.
    outbox_.Clear();
    if (!finish_status_.has_value()) {
      finish_status_ = grpc::Status(grpc::StatusCode::CANCELLED, "stream broken");
      phase_ = Phase::kClosing;
    }
  }
  MaybeWriteLocked();
}

void DeviceStream::OnCancel() {
  std::lock_guard lock(mu_);
  client_done_ = true;
  outbox_.Clear();
  if (!finish_status_.has_value()) {
    finish_status_ = grpc::Status(grpc::StatusCode::CANCELLED, "stream cancelled");
    phase_ = Phase::kClosing;
  }
  MaybeWriteLocked();
}

void DeviceStream::OnDone() {
  std::shared_ptr<DeviceStream> keep;
  uint64_t epoch = 0;
  bool registered = false;
  {
    std::lock_guard lock(mu_);
    keep = std::move(self_);
    epoch = epoch_;
    registered = registered_;
    hub_->metrics().unacked->Decrement(static_cast<double>(cursor_.DropUnacked()));
  }
  if (registered) hub_->Unregister(this);
  if (epoch != 0) {
    // Tell presence; ignored there when a newer epoch already holds the device.
    struct Call {
      grpc::ClientContext context;
      v1::DisconnectRequest request;
      v1::DisconnectResponse response;
    };
    auto* call = new Call;
    SetDeadline(call->context, hub_->settings().call_deadline);
    *call->request.mutable_device() = Address(claims_);
    call->request.set_epoch(epoch);
    hub_->presence()->Disconnect(&call->context, &call->request, &call->response,
                                 [call](grpc::Status) { delete call; });
  }
  // `keep` releases the stream's self-reference here; pumps or calls may still hold it.
}

}  // namespace padlock::gateway
