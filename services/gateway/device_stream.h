#pragma once
// The device stream (Gateway.Connect): one long-lived bidirectional gRPC stream per connected
// device, and the StreamHub that all streams of one gateway share.
//
// Delivery without gaps (DESIGN.md §4): on connect the stream subscribes to the device channel
// `ch:{user:device}` (sharded pub/sub), and once the subscription is confirmed reads the inbox from
// the start, then follows wake-ups. It keeps the cursor (server id + sequence) of the last envelope
// it handed out: a wake-up that carries the next sequence is pushed at once; anything else (a jump,
// a wake-up without the envelope, a re-subscription after the subscriber lost its connection)
// makes it read the inbox from the cursor. At most `max_unacked` envelopes are out unacknowledged;
// beyond that the stream waits for acks. Acks are accepted only for server ids delivered on this
// stream (so a cumulative ack never covers something the device did not see), and are forwarded to
// the message-queue in batches across streams: acks that rode on a send frame inside the Enqueue
// call that carries the send (SendPump), all others in Ack calls (AckPump).
//
// Sends: each stream queues its SendRequests; the SendPump takes the pending sends of many streams
// into one MessageQueue.Enqueue (≤ 1 024 sends), with at most one batch per stream in flight, so
// the sends of one device reach the queue in the order the device sent them (one ordered path per
// sender device). Results go back on the stream against the client's request id.
//
// Presence: Presence.Connect assigns the connection epoch (sent in `connected`); a `displaced`
// event on the device channel with a higher epoch closes the stream with OK after a `displaced`
// frame — only streams with a lower epoch close, also when the event overtakes the stream's own
// Connect answer. The hub heartbeats every connection in batched asynchronous calls per interval
// (never waiting for them) and re-subscribes presence watches before they expire.
//
// Threading: gRPC callback reactions, Redis subscriber callbacks and async stub completions never
// block: they take the stream's mutex briefly and start asynchronous operations. The stream's
// start-up (device still listed, Presence.Connect) runs on the gateway's BoundedExecutor, as do
// presence subscription changes. Lock order: pump mutex → stream mutex → hub mutex; a stream never
// calls into a pump while holding its own mutex.

#include <grpcpp/grpcpp.h>

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <variant>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "padlock/v1/gateway.grpc.pb.h"
#include "padlock/v1/message_queue.grpc.pb.h"
#include "padlock/v1/presence.grpc.pb.h"
#include "services/common/ratelimit/rate_limiter.h"
#include "services/common/redis/redis_client.h"
#include "services/common/redis/redis_subscriber.h"
#include "services/common/runtime/clock.h"
#include "services/common/runtime/executor.h"
#include "services/gateway/authenticator.h"
#include "services/gateway/push_registry.h"

namespace prometheus {
class Counter;
class Gauge;
class Histogram;
class Registry;
}  // namespace prometheus

namespace padlock::gateway {

struct StreamSettings {
  // This gateway's id in the presence registry (PADLOCK_GATEWAY_ID; default: the host name).
  std::string gateway_id = {};
  // Envelopes pushed and not yet acknowledged, per stream (announced in `connected`).
  uint32_t max_unacked = 256;
  // Streams this gateway holds at most; more are refused with RESOURCE_EXHAUSTED.
  size_t max_streams = 20000;
  // Envelopes and bytes per Deliver frame (a busy device gets batches).
  size_t deliver_batch = 64;
  size_t deliver_batch_bytes = 1 << 20;
  // A SendRequest larger than this (serialized) is refused with INVALID_ARGUMENT, the stream
  // stays open. The transport limit (max_frame_bytes) is higher: beyond it gRPC ends the stream.
  size_t max_send_bytes = 1 << 20;
  size_t max_frame_bytes = 4 << 20;
  // Sends queued per stream before the gateway stops reading that stream's frames.
  size_t max_pending_sends = 256;
  // Per-device send rate (kept in process: a device is on one gateway).
  ratelimit::RateLimit sends_per_device = {.burst = 200, .per_second = 50};
  // Message-queue batches: sends per Enqueue and Enqueue calls in flight.
  size_t max_batch_sends = 1024;
  int max_batches_in_flight = 4;
  size_t max_batch_acks = 1024;
  // Deadline of each call to the message-queue and presence.
  absl::Duration call_deadline = absl::Seconds(5);
  // Presence heartbeat period (well under the presence TTL, 60 s by default).
  absl::Duration heartbeat_interval = absl::Seconds(15);
  // Presence watches are renewed this often (the presence service forgets them after 1 h).
  absl::Duration presence_resubscribe = absl::Minutes(30);
  // Users one device may watch.
  size_t max_presence_users = 1000;
  // Retry delay of a failed inbox read.
  absl::Duration read_retry = absl::Milliseconds(500);
};

class DeviceStream;

// A stream that finishes at once with `status` (refused before it started).
grpc::ServerBidiReactor<padlock::v1::ClientFrame, padlock::v1::ServerFrame>* MakeRejectedStream(
    const grpc::Status& status);

// Shared by every stream of the gateway: the Redis subscriber and the channel → stream routing,
// the send and ack pumps, presence heartbeats and the housekeeping thread. Thread-safe.
class StreamHub {
 public:
  // `clock` (the system clock when null; must outlive the hub) times the send rate, read retries,
  // presence watches, heartbeats and push-to-ack latency.
  StreamHub(StreamSettings settings, Authenticator* auth, redis::RedisClient* redis,
            std::shared_ptr<grpc::Channel> message_queue, std::shared_ptr<grpc::Channel> presence,
            runtime::BoundedExecutor* executor, prometheus::Registry* metrics,
            PushRegistry* push = nullptr, runtime::Clock* clock = nullptr);
  // Stop()s.
  ~StreamHub();
  StreamHub(const StreamHub&) = delete;
  StreamHub& operator=(const StreamHub&) = delete;

  // Starts the subscriber and the housekeeping thread.
  absl::Status Start();
  // Tells every stream to reconnect elsewhere (Closing{DRAIN}), lets in-flight sends finish and
  // flushes acks, until `deadline`. New streams are refused (UNAVAILABLE) from now on.
  void Drain(absl::Time deadline);
  // Stops the housekeeping thread and the subscriber. Idempotent.
  void Stop();

  // A new stream for an authenticated device (Gateway.Connect).
  grpc::ServerBidiReactor<padlock::v1::ClientFrame, padlock::v1::ServerFrame>* Connect(
      grpc::CallbackServerContext* context, absl::StatusOr<SessionClaims> claims);

  size_t stream_count() const;
  const StreamSettings& settings() const { return settings_; }

 private:
  friend class DeviceStream;

  struct Metrics;
  class SendPump;
  class AckPump;

  // Registry: called by streams.
  absl::Status Register(const std::shared_ptr<DeviceStream>& stream);
  void Unregister(const DeviceStream* stream);
  bool ChannelActive(const std::string& channel) const;
  // Subscriber callbacks.
  void OnChannelMessage(std::string_view channel, std::string_view payload);
  void OnSubscribed(const std::string& channel);
  void OnResubscribed(const std::vector<std::string>& channels);
  std::vector<std::shared_ptr<DeviceStream>> StreamsOn(const std::string& channel) const;
  std::vector<std::shared_ptr<DeviceStream>> AllStreams() const;
  void Housekeeping();
  // Has Housekeeping tick `stream` within its next 250 ms round (a read retry waiting for
  // read_not_before_), besides the once-a-second round over every stream.
  void ScheduleTick(const std::shared_ptr<DeviceStream>& stream);
  void Heartbeat(const std::vector<std::shared_ptr<DeviceStream>>& streams);

  const StreamSettings settings_;
  Authenticator* const auth_;
  redis::RedisClient* const redis_;
  std::unique_ptr<padlock::v1::MessageQueue::Stub> message_queue_;
  std::unique_ptr<padlock::v1::Presence::Stub> presence_;
  runtime::BoundedExecutor* const executor_;
  // Renews the device's push subscription at each stream start-up; null: no push.
  PushRegistry* const push_;
  runtime::Clock* const clock_;  // the streams' time (gRPC deadlines use the real clock)
  std::unique_ptr<Metrics> metrics_;
  std::unique_ptr<SendPump> sends_;
  std::unique_ptr<AckPump> acks_;
  std::unique_ptr<redis::RedisSubscriber> subscriber_;

  mutable std::mutex mu_;
  // channel → streams on it (normally one; two during a reconnect race on this gateway).
  std::map<std::string, std::vector<std::shared_ptr<DeviceStream>>> channels_;
  size_t streams_ = 0;
  bool draining_ = false;
  bool stopping_ = false;
  std::vector<std::weak_ptr<DeviceStream>> tick_soon_;  // ScheduleTick
  // Heartbeat calls not yet answered (Stop cancels them and waits for their callbacks).
  int heartbeats_in_flight_ = 0;
  std::set<grpc::ClientContext*> heartbeat_contexts_;
  std::condition_variable heartbeats_done_;
  std::condition_variable wake_;
  std::thread housekeeping_;
};

// One device's stream. Created by StreamHub::Connect; owns itself until OnDone.
class DeviceStream final
    : public grpc::ServerBidiReactor<padlock::v1::ClientFrame, padlock::v1::ServerFrame>,
      public std::enable_shared_from_this<DeviceStream> {
 public:
  DeviceStream(StreamHub* hub, grpc::CallbackServerContext* context, SessionClaims claims);

  void OnReadDone(bool ok) override;
  void OnWriteDone(bool ok) override;
  void OnDone() override;
  void OnCancel() override;

  const std::string& channel() const { return channel_; }
  const SessionClaims& claims() const { return claims_; }

 private:
  friend class StreamHub;
  friend class StreamHub::SendPump;
  friend class StreamHub::AckPump;

  struct Delivered {
    std::string server_id;
    uint64_t sequence = 0;
    absl::Time pushed_at;
  };
  struct PendingSend {
    uint64_t request_id = 0;
    padlock::v1::OutgoingMessage message;
  };
  // What waits to be written: an envelope (coalesced into Deliver frames) or a whole frame.
  using Outgoing = std::variant<padlock::v1::Envelope, padlock::v1::ServerFrame>;
  enum class Phase { kStarting, kLive, kClosing, kFinished };

  // Lifecycle.
  void Begin();                 // after construction: register, read frames, start up
  void StartUp();               // on the executor: device listed? Presence.Connect
  void Fail(const grpc::Status& status);  // finish with an error (nothing was written yet)
  void Close(padlock::v1::Closing::Reason reason);  // drain, revocation, token expiry
  void Displace(uint64_t by_epoch);
  void FinishLocked(const grpc::Status& status);

  // Hub events.
  void OnEvent(const padlock::v1::DeviceChannelEvent& event);
  void OnSubscribed();
  void OnResubscribed();
  void Tick(absl::Time now);    // housekeeping: read retries, token expiry

  // Frames from the client.
  void HandleSend(padlock::v1::SendRequest* send);
  // Records the acks and, with `schedule`, hands them to the ack pump (else ScheduleAcks later).
  void HandleAck(const padlock::v1::StreamAck& ack, bool schedule = true);
  // Hands recorded acks that nobody has taken to the ack pump.
  void ScheduleAcks();
  void HandleSubscribePresence(const padlock::v1::SubscribePresence& subscribe);
  void HandleVisibility(const padlock::v1::SetPresenceVisibility& visibility);

  // Inbox reading and writing; *Locked functions need mu_ held.
  void MaybeReadLocked();
  void OnInboxRead(const grpc::Status& status, padlock::v1::ReadInboxResponse& response);
  void PushEnvelopeLocked(padlock::v1::Envelope envelope, bool tracked);
  void QueueFrameLocked(padlock::v1::ServerFrame frame);
  // A send's outcome: in revision 2 it waits in `results_` and rides on the next frame written;
  // in revision 1 it is a `send_result` frame of its own.
  void QueueResultLocked(padlock::v1::SendResult result);
  void MaybeWriteLocked();
  void StreamErrorLocked(grpc::StatusCode code, const std::string& message, uint64_t request_id);
  void ResumeReadingLocked();
  void CompleteCloseLocked();   // kClosing and no send outstanding: Closing frame, then finish

  // Pumps.
  std::vector<PendingSend> TakeSends(size_t max);
  // Returns true when more sends are pending (the pump queues the stream again).
  // `response` (null when the call failed) holds this stream's outcomes from `offset` on.
  bool OnSendOutcomes(const std::vector<uint64_t>& request_ids, const grpc::Status& status,
                      const padlock::v1::EnqueueResponse* response, int offset);
  // The pending acks as one DeviceAck with at most `max_ids` individual ids (the oldest; the rest
  // stay pending, see HasPendingAcks), or nullopt when there is nothing to take.
  std::optional<padlock::v1::DeviceAck> TakeAcks(size_t max_ids);
  bool HasPendingAcks();
  bool Drained() const;

  StreamHub* const hub_;
  grpc::CallbackServerContext* const context_;
  const SessionClaims claims_;
  const std::string channel_;
  // The stream revision in force (Connected.stream_revision): 2 when the client asked for it.
  const uint32_t revision_;
  std::shared_ptr<DeviceStream> self_;  // keeps the stream alive until OnDone

  // Recursive: an asynchronous call or write started under the lock may complete inline on some
  // gRPC paths and re-enter the stream on the same thread.
  mutable std::recursive_mutex mu_;
  Phase phase_ = Phase::kStarting;
  bool registered_ = false;
  uint64_t epoch_ = 0;
  uint64_t displaced_by_ = 0;   // highest displacing epoch seen (may precede our own epoch)
  bool subscribed_ = false;

  // Reading client frames.
  padlock::v1::ClientFrame in_;
  bool read_pending_ = false;
  bool read_paused_ = false;    // too many queued sends: resume when they drain
  bool client_done_ = false;    // the client half-closed or the call was cancelled

  // Delivery.
  std::string cursor_id_;       // last server id handed out (or skipped as expired)
  uint64_t cursor_sequence_ = 0;
  bool need_read_ = true;       // the inbox must be read from the cursor
  bool reading_ = false;        // a ReadInbox is in flight
  absl::Time read_not_before_ = absl::InfinitePast();
  bool tick_scheduled_ = false;  // in the hub's tick_soon_ (a read retry is waiting)
  bool backlog_done_ = false;   // QueueEmpty was queued
  std::deque<Delivered> delivered_;  // handed out, not acknowledged, in order

  // Writing.
  std::deque<Outgoing> outbox_;
  std::vector<padlock::v1::SendResult> results_;  // revision 2: outcomes not yet written
  padlock::v1::ServerFrame writing_;
  bool write_pending_ = false;
  std::optional<grpc::Status> finish_status_;  // Finish once the outbox is written
  bool finished_ = false;

  // Sends.
  std::deque<PendingSend> sends_;
  std::set<uint64_t> open_requests_;  // request ids queued or in flight
  bool send_scheduled_ = false;  // in the SendPump's ready list or in flight
  bool send_in_flight_ = false;
  double send_tokens_ = 0;
  absl::Time send_tokens_at_ = absl::InfinitePast();

  // Acks waiting for the AckPump.
  std::string ack_up_to_;
  std::vector<std::string> ack_ids_;
  bool ack_scheduled_ = false;
  padlock::v1::Closing::Reason closing_reason_ = padlock::v1::Closing::REASON_UNSPECIFIED;
  uint64_t last_delivered_sequence_ = 0;

  // Presence watches (renewed by the hub).
  std::vector<std::string> watched_;
  absl::Time watched_at_ = absl::InfinitePast();
};

}  // namespace padlock::gateway
