#pragma once
// The device stream (Gateway.Connect): the gRPC reactor of one long-lived bidirectional stream per
// connected device. Its hub (stream_hub.h) routes channel events to it and batches its sends and
// acks; what to deliver is decided by its DeliveryCursor, which sends it admits by its SendWindow,
// and how queued frames are written by its StreamOutbox.
//
// Delivery without gaps (DESIGN.md §4): on connect the stream subscribes to the device channel
// `ch:{user:device}` (sharded pub/sub), and once the subscription is confirmed reads the inbox from
// the start, then follows wake-ups (delivery_cursor.h). At most `max_unacked` envelopes are out
// unacknowledged. Acks are accepted only for server ids delivered on this stream and go to the
// message-queue through the pumps (stream_pumps.h): acks riding on a send frame inside the Enqueue
// call that carries the send, all others in Ack calls.
//
// Sends are queued per stream and taken by the SendPump, one batch per stream in flight, so the
// sends of one device reach the queue in order. Results go back against the client's request id.
//
// Presence: Presence.Connect assigns the connection epoch (sent in `connected`); a `displaced`
// event with a higher epoch closes the stream with OK after a `displaced` frame — also when the
// event overtakes the stream's own Connect answer.
//
// Threading: gRPC reactions, subscriber callbacks and async completions never block: they take the
// stream's mutex briefly and start asynchronous operations. Start-up (device still listed,
// Presence.Connect) and presence subscription changes run on the gateway's BoundedExecutor. Lock
// order: pump mutex → stream mutex → hub mutex; a stream never calls into a pump while holding its
// own mutex.
//
// The class is defined in three files: device_stream.cpp (lifecycle, client frames, hub events,
// writing), device_stream_upstream.cpp (start-up, presence calls, inbox reads) and
// device_stream_sends.cpp (sends and acks).

#include <grpcpp/grpcpp.h>

#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/time/time.h"
#include "padlock/v1/gateway.grpc.pb.h"
#include "padlock/v1/message_queue.grpc.pb.h"
#include "services/gateway/delivery_cursor.h"
#include "services/gateway/send_window.h"
#include "services/gateway/session_token.h"
#include "services/gateway/stream_outbox.h"

namespace padlock::gateway {

class StreamHub;

// A stream that finishes at once with `status` (refused before it started).
grpc::ServerBidiReactor<padlock::v1::ClientFrame, padlock::v1::ServerFrame>* MakeRejectedStream(
    const grpc::Status& status);

// One device's stream. Created by StreamHub::Connect; owns itself until OnDone. Thread-safe.
class DeviceStream final
    : public grpc::ServerBidiReactor<padlock::v1::ClientFrame, padlock::v1::ServerFrame>,
      public std::enable_shared_from_this<DeviceStream> {
 public:
  DeviceStream(StreamHub* hub, grpc::CallbackServerContext* context, SessionClaims claims);

  // gRPC reactions.
  void OnReadDone(bool ok) override;
  void OnWriteDone(bool ok) override;
  void OnDone() override;
  void OnCancel() override;

  const std::string& channel() const { return channel_; }
  const SessionClaims& claims() const { return claims_; }

  // ----- for the hub -----
  // After construction: register, read frames, start up on the executor.
  void Begin();
  // Drain, revocation, token expiry: a Closing frame once every taken send is answered.
  void Close(padlock::v1::Closing::Reason reason);
  void OnEvent(const padlock::v1::DeviceChannelEvent& event);
  // The device channel's subscription is confirmed, first (OnSubscribed) or again after the
  // subscriber lost its connection (OnResubscribed: wake-ups may have been lost).
  void OnSubscribed();
  void OnResubscribed();
  // Housekeeping: token expiry, read retries, presence re-subscription.
  void Tick(absl::Time now);
  // The connection epoch while live (heartbeats); nullopt before or after.
  std::optional<uint64_t> LiveEpoch() const;

  // ----- for the pumps -----
  struct PendingSend {
    uint64_t request_id = 0;
    padlock::v1::OutgoingMessage message;
  };
  // Up to `max` queued sends, oldest first; none while a batch of this stream is in flight.
  std::vector<PendingSend> TakeSends(size_t max);
  // The outcomes of the sends `request_ids`: `response` (null when the call failed with `status`)
  // holds them from `offset` on. Returns true when more sends are pending (the pump queues the
  // stream again).
  bool OnSendOutcomes(const std::vector<uint64_t>& request_ids, const grpc::Status& status,
                      const padlock::v1::EnqueueResponse* response, int offset);
  // The pending acks as one DeviceAck with at most `max_ids` individual ids (the oldest; the rest
  // stay pending, see HasPendingAcks), or nullopt when there is nothing to take.
  std::optional<padlock::v1::DeviceAck> TakeAcks(size_t max_ids);
  bool HasPendingAcks();
  // Hands recorded acks that nobody has taken to the ack pump.
  void ScheduleAcks();

 private:
  enum class Phase { kStarting, kLive, kClosing, kFinished };

  // Lifecycle.
  void StartUp();  // on the executor: device listed? Presence.Connect
  void Fail(const grpc::Status& status);  // finish with an error (nothing was written yet)
  void Displace(uint64_t by_epoch);
  void DisplaceLocked(uint64_t by_epoch) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void FinishLocked(const grpc::Status& status) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void CompleteCloseLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);  // Closing frame, then finish

  // Frames from the client.
  void HandleSend(padlock::v1::SendRequest* send);
  // Records the acks and, with `schedule`, hands them to the ack pump (else ScheduleAcks later).
  void HandleAck(const padlock::v1::StreamAck& ack, bool schedule = true);
  void HandleSubscribePresence(const padlock::v1::SubscribePresence& subscribe);
  void HandleVisibility(const padlock::v1::SetPresenceVisibility& visibility);
  void StartReadLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void ResumeReadingLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  // Inbox reading and writing.
  void MaybeReadLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void OnInboxRead(const grpc::Status& status, padlock::v1::ReadInboxResponse& response);
  void PushEnvelopeLocked(padlock::v1::Envelope envelope, bool tracked)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void QueueFrameLocked(padlock::v1::ServerFrame frame) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    outbox_.PushFrame(std::move(frame));
  }
  void QueueResultLocked(padlock::v1::SendResult result) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    outbox_.PushResult(std::move(result));
  }
  void MaybeWriteLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void StreamErrorLocked(grpc::StatusCode code, const std::string& message, uint64_t request_id)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  StreamHub* const hub_;
  grpc::CallbackServerContext* const context_;
  const SessionClaims claims_;
  const std::string channel_;
  // The stream revision in force (Connected.stream_revision): 2 when the client asked for it.
  const uint32_t revision_;

  // Recursive: an asynchronous call or write started under the lock may complete inline on some
  // gRPC paths and re-enter the stream on the same thread.
  mutable std::recursive_mutex mu_;
  std::shared_ptr<DeviceStream> self_ ABSL_GUARDED_BY(mu_);  // keeps the stream alive until OnDone
  Phase phase_ ABSL_GUARDED_BY(mu_) = Phase::kStarting;
  bool registered_ ABSL_GUARDED_BY(mu_) = false;
  uint64_t epoch_ ABSL_GUARDED_BY(mu_) = 0;
  // Highest displacing epoch seen (may precede our own epoch).
  uint64_t displaced_by_ ABSL_GUARDED_BY(mu_) = 0;
  padlock::v1::Closing::Reason closing_reason_ ABSL_GUARDED_BY(mu_) =
      padlock::v1::Closing::REASON_UNSPECIFIED;

  // Reading client frames. `in_` belongs to the read in flight (one at a time): OnReadDone uses it
  // without the lock until it starts the next read.
  padlock::v1::ClientFrame in_;
  bool read_pending_ ABSL_GUARDED_BY(mu_) = false;
  bool read_paused_ ABSL_GUARDED_BY(mu_) = false;  // too many queued sends: resume when they drain
  bool client_done_ ABSL_GUARDED_BY(mu_) = false;  // half-closed by the client, or cancelled

  // Delivery.
  DeliveryCursor cursor_ ABSL_GUARDED_BY(mu_);
  bool tick_scheduled_ ABSL_GUARDED_BY(mu_) = false;  // in the hub's tick list (a read retry)
  bool ack_scheduled_ ABSL_GUARDED_BY(mu_) = false;   // in the AckPump's ready list

  // Writing.
  StreamOutbox outbox_ ABSL_GUARDED_BY(mu_);
  padlock::v1::ServerFrame writing_ ABSL_GUARDED_BY(mu_);
  bool write_pending_ ABSL_GUARDED_BY(mu_) = false;
  std::optional<grpc::Status> finish_status_ ABSL_GUARDED_BY(mu_);  // Finish once all is written
  bool finished_ ABSL_GUARDED_BY(mu_) = false;

  // Sends.
  std::deque<PendingSend> sends_ ABSL_GUARDED_BY(mu_);
  SendWindow window_ ABSL_GUARDED_BY(mu_);
  bool send_scheduled_ ABSL_GUARDED_BY(mu_) = false;  // in the SendPump's ready list or in flight
  bool send_in_flight_ ABSL_GUARDED_BY(mu_) = false;

  // Presence watches (renewed by Tick).
  std::vector<std::string> watched_ ABSL_GUARDED_BY(mu_);
  absl::Time watched_at_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
};

}  // namespace padlock::gateway
