#include "services/gateway/device_stream.h"

#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include <algorithm>
#include <cmath>
#include <utility>

#include "absl/strings/numbers.h"
#include "absl/cleanup/cleanup.h"
#include "absl/strings/str_cat.h"
#include "services/common/channels/device_channel.h"
#include "services/common/runtime/logging.h"
#include "services/common/runtime/metrics_util.h"
#include "services/common/runtime/status.h"
#include "services/common/runtime/upstream_status.h"

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

// gRPC measures deadlines against the real clock, so this one reads it (not StreamHub::clock_).
void SetDeadline(grpc::ClientContext& context, absl::Duration deadline) {
  context.set_deadline(absl::ToChronoTime(absl::Now() + deadline));
}

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

v1::DeviceAddress Address(const SessionClaims& claims) {
  v1::DeviceAddress address;
  address.set_user_id(claims.user_id);
  address.set_device_id(claims.device_id);
  return address;
}

}  // namespace

grpc::ServerBidiReactor<v1::ClientFrame, v1::ServerFrame>* MakeRejectedStream(
    const grpc::Status& status) {
  return new RejectedStream(status);
}

// ----- metrics -----

struct StreamHub::Metrics {
  explicit Metrics(prometheus::Registry* registry) {
    if (registry == nullptr) {
      owned = std::make_unique<prometheus::Registry>();
      registry = owned.get();
    }
    auto counter = [&](const std::string& name, const std::string& help) {
      return &prometheus::BuildCounter().Name(name).Help(help).Register(*registry).Add({});
    };
    auto gauge = [&](const std::string& name, const std::string& help) {
      return &prometheus::BuildGauge().Name(name).Help(help).Register(*registry).Add({});
    };
    streams = gauge("padlock_gateway_streams", "Device streams open on this gateway");
    unacked = gauge("padlock_gateway_unacked_envelopes",
                    "Envelopes pushed on open streams and not acknowledged yet (stream backlog)");
    auto& rejected_family = prometheus::BuildCounter()
                                .Name("padlock_gateway_streams_rejected_total")
                                .Help("Streams refused at connect, by reason")
                                .Register(*registry);
    for (const char* reason : {"unauthenticated", "limit", "draining", "unavailable"}) {
      rejected[reason] = &rejected_family.Add({{"reason", reason}});
    }
    auto& closed_family = prometheus::BuildCounter()
                              .Name("padlock_gateway_streams_closed_total")
                              .Help("Streams closed by the server, by reason")
                              .Register(*registry);
    for (const char* reason : {"displaced", "drain", "revoked", "token_expired", "stale"}) {
      closed[reason] = &closed_family.Add({{"reason", reason}});
    }
    envelopes_in = counter("padlock_gateway_envelopes_in_total",
                           "Device envelopes accepted from senders on streams");
    envelopes_out = counter("padlock_gateway_envelopes_out_total",
                            "Envelopes written to device streams");
    deliver_frames = counter("padlock_gateway_deliver_frames_total", "Deliver frames written");
    server_frames = counter("padlock_gateway_server_frames_total",
                            "Frames written to device streams (all kinds)");
    outcomes_riding = counter("padlock_gateway_send_outcomes_riding_total",
                              "Send outcomes written in send_results (stream revision 2)");
    auto& client_family = prometheus::BuildCounter()
                              .Name("padlock_gateway_client_frames_total")
                              .Help("Frames read from device streams, by kind; riding_ack counts "
                                    "acks that came on another frame (stream revision 2)")
                              .Register(*registry);
    auto client_frame = [&](const char* kind) { return &client_family.Add({{"kind", kind}}); };
    frames_send = client_frame("send");
    frames_ack = client_frame("ack");
    frames_riding_ack = client_frame("riding_ack");
    frames_presence = client_frame("presence");
    frames_ping = client_frame("ping");
    frames_other = client_frame("other");
    direct_pushes = counter("padlock_gateway_wakeup_pushes_total",
                            "Envelopes pushed straight from a wake-up (no inbox read)");
    gap_fills = counter("padlock_gateway_gap_fills_total",
                        "Inbox reads caused by a wake-up out of sequence or a re-subscription");
    inbox_reads = counter("padlock_gateway_inbox_reads_total", "ReadInbox calls");
    inbox_read_failures = counter("padlock_gateway_inbox_read_failures_total",
                                  "ReadInbox calls that failed (retried)");
    sends = counter("padlock_gateway_sends_total", "SendRequests received on streams");
    sends_rate_limited = counter("padlock_gateway_sends_rate_limited_total",
                                 "SendRequests refused by the per-device rate limit");
    sends_refused = counter("padlock_gateway_sends_refused_total",
                            "SendRequests refused by the gateway (size, draining, bad request)");
    enqueue_failures = counter("padlock_gateway_enqueue_failures_total",
                               "Enqueue batches that failed as a whole (sends refused UNAVAILABLE)");
    acks = counter("padlock_gateway_acks_forwarded_total", "Device acks forwarded to the queue");
    acks_folded = counter("padlock_gateway_acks_folded_total",
                          "Device acks forwarded inside an Enqueue call (riding on sends)");
    ack_failures = counter("padlock_gateway_ack_failures_total",
                           "Ack batches that failed (entries are delivered again later)");
    stream_errors = counter("padlock_gateway_stream_errors_total",
                            "Non-fatal StreamError frames sent to clients");
    push_ack = &prometheus::BuildHistogram()
                    .Name("padlock_gateway_push_to_ack_seconds")
                    .Help("Time from pushing an envelope to its acknowledgement")
                    .Register(*registry)
                    .Add({}, prometheus::Histogram::BucketBoundaries{
                                 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                                 0.5, 1, 2.5, 5, 10});
    batch_sends = &prometheus::BuildHistogram()
                       .Name("padlock_gateway_enqueue_batch_sends")
                       .Help("Sends per Enqueue batch to the message-queue")
                       .Register(*registry)
                       .Add({}, prometheus::Histogram::BucketBoundaries{1, 2, 4, 8, 16, 32, 64,
                                                                          128, 256, 512, 1024});
  }
  std::unique_ptr<prometheus::Registry> owned;
  prometheus::Gauge* streams;
  prometheus::Gauge* unacked;
  std::map<std::string, prometheus::Counter*> rejected;
  std::map<std::string, prometheus::Counter*> closed;
  prometheus::Counter* envelopes_in;
  prometheus::Counter* envelopes_out;
  prometheus::Counter* deliver_frames;
  prometheus::Counter* server_frames;
  prometheus::Counter* outcomes_riding;
  // padlock_gateway_client_frames_total by kind (fields, not a map: counted on every frame).
  prometheus::Counter* frames_send;
  prometheus::Counter* frames_ack;
  prometheus::Counter* frames_riding_ack;
  prometheus::Counter* frames_presence;
  prometheus::Counter* frames_ping;
  prometheus::Counter* frames_other;
  prometheus::Counter* direct_pushes;
  prometheus::Counter* gap_fills;
  prometheus::Counter* inbox_reads;
  prometheus::Counter* inbox_read_failures;
  prometheus::Counter* sends;
  prometheus::Counter* sends_rate_limited;
  prometheus::Counter* sends_refused;
  prometheus::Counter* enqueue_failures;
  prometheus::Counter* acks;
  prometheus::Counter* acks_folded;
  prometheus::Counter* ack_failures;
  prometheus::Counter* stream_errors;
  prometheus::Histogram* push_ack;
  prometheus::Histogram* batch_sends;
};

// ----- pumps -----

// Individual acked ids in one Ack or Enqueue call: below the message-queue's limit of 10 000
// (an AckRequest or EnqueueRequest over it fails as a whole with INVALID_ARGUMENT, and one
// device's many out-of-order acks must not fail the other devices' sends batched with them).
constexpr size_t kMaxAckIdsPerCall = 8192;

// Batches the acks of many streams into MessageQueue.Ack calls.
class StreamHub::AckPump {
 public:
  explicit AckPump(StreamHub* hub) : hub_(hub) {}

  void Ready(std::shared_ptr<DeviceStream> stream) {
    {
      std::lock_guard lock(mu_);
      ready_.push_back(std::move(stream));
    }
    Flush();
  }

  bool Idle() const {
    std::lock_guard lock(mu_);
    return ready_.empty() && in_flight_ == 0;
  }

  // Sends `acks` in a batch of their own at once (acks an Enqueue could not apply).
  void Submit(google::protobuf::RepeatedPtrField<v1::DeviceAck> acks) {
    auto batch = std::make_unique<Batch>();
    batch->request.mutable_acks()->Swap(&acks);
    {
      std::lock_guard lock(mu_);
      ++in_flight_;
    }
    Start(batch.release());
  }

 private:
  struct Batch {
    grpc::ClientContext context;
    v1::AckRequest request;
    v1::AckResponse response;
    int attempt = 1;
  };

  void Flush() {
    const StreamSettings& settings = hub_->settings_;
    while (true) {
      auto batch = std::make_unique<Batch>();
      {
        std::lock_guard lock(mu_);
        if (in_flight_ >= settings.max_batches_in_flight) return;
        size_t ids = 0;
        while (!ready_.empty() &&
               static_cast<size_t>(batch->request.acks_size()) < settings.max_batch_acks &&
               ids < kMaxAckIdsPerCall) {
          std::shared_ptr<DeviceStream> stream = std::move(ready_.front());
          ready_.pop_front();
          std::optional<v1::DeviceAck> ack = stream->TakeAcks(kMaxAckIdsPerCall - ids);
          if (ack.has_value()) {
            ids += static_cast<size_t>(ack->server_ids_size());
            batch->request.add_acks()->Swap(&*ack);
          }
          // Ids beyond this call's budget wait for the next call, first in line.
          if (stream->HasPendingAcks()) ready_.push_front(std::move(stream));
        }
        if (batch->request.acks_size() == 0) return;
        ++in_flight_;
      }
      Start(batch.release());
    }
  }

  void Start(Batch* raw) {
    SetDeadline(raw->context, hub_->settings_.call_deadline);
    hub_->message_queue_->async()->Ack(&raw->context, &raw->request, &raw->response,
                                       [this, raw](grpc::Status status) { Complete(raw, status); });
  }

  void Complete(Batch* raw, const grpc::Status& status) {
    if (!status.ok() && raw->attempt == 1 &&
        (status.error_code() == grpc::StatusCode::UNAVAILABLE ||
         status.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED)) {
      // One retry on a fresh context (acks are idempotent). Still counted as in flight.
      auto retry = std::make_unique<Batch>();
      retry->request.Swap(&raw->request);
      retry->attempt = 2;
      delete raw;
      Start(retry.release());
      return;
    }
    std::unique_ptr<Batch> batch(raw);
    if (status.ok()) {
      runtime::Increment(hub_->metrics_->acks, batch->request.acks_size());
    } else {
      runtime::Increment(hub_->metrics_->ack_failures);
      runtime::LogWarn("ack batch failed; entries will be delivered again",
                          {{"error", status.error_message()},
                           {"acks", static_cast<int64_t>(batch->request.acks_size())}});
    }
    {
      std::lock_guard lock(mu_);
      --in_flight_;
    }
    Flush();
  }

  StreamHub* const hub_;
  mutable std::mutex mu_;
  std::deque<std::shared_ptr<DeviceStream>> ready_;
  int in_flight_ = 0;
};

// Batches the pending sends of many streams into MessageQueue.Enqueue calls, one batch per
// stream at a time (ordered path per sender device), at most max_batches_in_flight at once.
class StreamHub::SendPump {
 public:
  explicit SendPump(StreamHub* hub) : hub_(hub) {}

  void Ready(std::shared_ptr<DeviceStream> stream) {
    {
      std::lock_guard lock(mu_);
      ready_.push_back(std::move(stream));
    }
    Flush();
  }

  bool Idle() const {
    std::lock_guard lock(mu_);
    return ready_.empty() && in_flight_ == 0;
  }

 private:
  struct Segment {
    std::shared_ptr<DeviceStream> stream;
    std::vector<uint64_t> request_ids;
  };
  struct Batch {
    grpc::ClientContext context;
    v1::EnqueueRequest request;
    v1::EnqueueResponse response;
    std::vector<Segment> segments;
  };

  void Flush() {
    const StreamSettings& settings = hub_->settings_;
    while (true) {
      auto batch = std::make_unique<Batch>();
      size_t ack_ids = 0;
      std::vector<std::shared_ptr<DeviceStream>> left_acks;
      // After the pump's mutex is released (a stream calls into the ack pump).
      absl::Cleanup schedule_left = [&] {
        for (const auto& stream : left_acks) stream->ScheduleAcks();
      };
      {
        std::lock_guard lock(mu_);
        if (in_flight_ >= settings.max_batches_in_flight) return;
        while (!ready_.empty() &&
               static_cast<size_t>(batch->request.sends_size()) < settings.max_batch_sends) {
          std::shared_ptr<DeviceStream> stream = std::move(ready_.front());
          ready_.pop_front();
          std::vector<DeviceStream::PendingSend> taken = stream->TakeSends(
              settings.max_batch_sends - static_cast<size_t>(batch->request.sends_size()));
          if (taken.empty()) continue;
          Segment segment{stream, {}};
          const v1::DeviceAddress sender = Address(stream->claims());
          for (DeviceStream::PendingSend& send : taken) {
            segment.request_ids.push_back(send.request_id);
            v1::Send* out = batch->request.add_sends();
            *out->mutable_sender() = sender;
            out->mutable_message()->Swap(&send.message);
          }
          // The acks that rode on the device's frames go in the same call (one call, not two),
          // within the call's budget of individual ids; the rest go to the ack pump below.
          std::optional<v1::DeviceAck> ack = stream->TakeAcks(kMaxAckIdsPerCall - ack_ids);
          if (ack.has_value()) {
            ack_ids += static_cast<size_t>(ack->server_ids_size());
            batch->request.add_acks()->Swap(&*ack);
          }
          if (stream->HasPendingAcks()) left_acks.push_back(stream);
          batch->segments.push_back(std::move(segment));
        }
        if (batch->segments.empty()) return;
        ++in_flight_;
      }
      hub_->metrics_->batch_sends->Observe(static_cast<double>(batch->request.sends_size()));
      SetDeadline(batch->context, settings.call_deadline);
      Batch* raw = batch.release();
      hub_->message_queue_->async()->Enqueue(
          &raw->context, &raw->request, &raw->response,
          [this, raw](grpc::Status status) { Complete(raw, status); });
    }
  }

  void Complete(Batch* raw, const grpc::Status& status) {
    std::unique_ptr<Batch> batch(raw);
    size_t expected = 0;
    for (const Segment& s : batch->segments) expected += s.request_ids.size();
    grpc::Status outcome = status;
    if (status.ok() && static_cast<size_t>(batch->response.outcomes_size()) != expected) {
      outcome = grpc::Status(grpc::StatusCode::INTERNAL,
                             "message-queue answered a different number of outcomes");
    }
    if (!outcome.ok()) {
      runtime::Increment(hub_->metrics_->enqueue_failures);
      runtime::LogWarn("enqueue batch failed",
                          {{"error", outcome.error_message()},
                           {"code", static_cast<int>(outcome.error_code())},
                           {"sends", static_cast<int64_t>(expected)}});
    }
    if (batch->request.acks_size() > 0) {
      const v1::EnqueueAckResult& acks = batch->response.ack_result();
      if (outcome.ok() && batch->response.has_ack_result() && acks.code() == 0) {
        runtime::Increment(hub_->metrics_->acks, batch->request.acks_size());
        runtime::Increment(hub_->metrics_->acks_folded, batch->request.acks_size());
      } else {
        // Failed, or a queue that does not know folded acks: send them with Ack (idempotent).
        // Handed over before this batch stops counting as in flight, so a drain waiting for
        // both pumps to be idle does not miss them.
        hub_->acks_->Submit(std::move(*batch->request.mutable_acks()));
      }
    }
    std::vector<std::shared_ptr<DeviceStream>> again;
    int offset = 0;
    for (Segment& s : batch->segments) {
      const bool more = s.stream->OnSendOutcomes(s.request_ids, outcome,
                                                 outcome.ok() ? &batch->response : nullptr,
                                                 offset);
      offset += static_cast<int>(s.request_ids.size());
      if (more) again.push_back(std::move(s.stream));
    }
    {
      std::lock_guard lock(mu_);
      --in_flight_;
      for (auto& s : again) ready_.push_back(std::move(s));
    }
    Flush();
  }

  StreamHub* const hub_;
  mutable std::mutex mu_;
  std::deque<std::shared_ptr<DeviceStream>> ready_;
  int in_flight_ = 0;
};

// ----- hub -----

StreamHub::StreamHub(StreamSettings settings, Authenticator* auth, redis::RedisClient* redis,
                     std::shared_ptr<grpc::Channel> message_queue,
                     std::shared_ptr<grpc::Channel> presence, runtime::BoundedExecutor* executor,
                     prometheus::Registry* metrics, PushRegistry* push,
                     runtime::Clock* clock)
    : settings_(std::move(settings)),
      auth_(auth),
      redis_(redis),
      message_queue_(v1::MessageQueue::NewStub(std::move(message_queue))),
      presence_(v1::Presence::NewStub(std::move(presence))),
      executor_(executor),
      push_(push),
      clock_(clock != nullptr ? clock : runtime::SystemClock::Get()),
      metrics_(std::make_unique<Metrics>(metrics)),
      sends_(std::make_unique<SendPump>(this)),
      acks_(std::make_unique<AckPump>(this)) {}

StreamHub::~StreamHub() { Stop(); }

absl::Status StreamHub::Start() {
  redis::RedisSubscriber::Callbacks callbacks;
  callbacks.on_message = [this](std::string_view channel, std::string_view payload) {
    OnChannelMessage(channel, payload);
  };
  callbacks.on_subscribed = [this](const std::string& channel) { OnSubscribed(channel); };
  callbacks.on_resubscribed = [this](const std::vector<std::string>& channels) {
    OnResubscribed(channels);
  };
  auto subscriber = redis::RedisSubscriber::Start(redis_, std::move(callbacks));
  if (!subscriber.ok()) return subscriber.status();
  subscriber_ = *std::move(subscriber);
  housekeeping_ = std::thread([this] { Housekeeping(); });
  return absl::OkStatus();
}

void StreamHub::Stop() {
  {
    std::lock_guard lock(mu_);
    if (stopping_) return;
    stopping_ = true;
  }
  wake_.notify_all();
  if (housekeeping_.joinable()) housekeeping_.join();
  {
    // Heartbeats still in flight call back into the hub: cancel them and wait for the callbacks.
    std::unique_lock lock(mu_);
    for (grpc::ClientContext* context : heartbeat_contexts_) context->TryCancel();
    heartbeats_done_.wait(lock, [this] { return heartbeats_in_flight_ == 0; });
  }
  if (subscriber_) subscriber_->Stop();
}

void StreamHub::Drain(absl::Time deadline) {
  {
    std::lock_guard lock(mu_);
    draining_ = true;
  }
  const std::vector<std::shared_ptr<DeviceStream>> streams = AllStreams();
  runtime::LogInfo("draining device streams", {{"streams", static_cast<int64_t>(streams.size())}});
  for (const auto& stream : streams) stream->Close(v1::Closing::REASON_DRAIN);
  // Wait until every stream has finished (its sends answered, Closing written) and the pumps
  // have forwarded everything (acks included), or the deadline.
  while (absl::Now() < deadline) {  // the caller's deadline is real time: not clock_
    if (stream_count() == 0 && sends_->Idle() && acks_->Idle()) break;
    absl::SleepFor(absl::Milliseconds(10));
  }
  runtime::LogInfo("device streams drained",
                   {{"streams_left", static_cast<int64_t>(stream_count())},
                    {"acks_flushed", acks_->Idle()},
                    {"sends_flushed", sends_->Idle()}});
}

size_t StreamHub::stream_count() const {
  std::lock_guard lock(mu_);
  return streams_;
}

Reactor* StreamHub::Connect(grpc::CallbackServerContext* context,
                            absl::StatusOr<SessionClaims> claims) {
  if (!claims.ok()) {
    runtime::Increment(metrics_->rejected.at("unauthenticated"));
    return new RejectedStream(runtime::ToGrpcStatus(claims.status()));
  }
  auto stream = std::make_shared<DeviceStream>(this, context, *std::move(claims));
  stream->Begin();
  return stream.get();
}

absl::Status StreamHub::Register(const std::shared_ptr<DeviceStream>& stream) {
  bool first = false;
  {
    std::lock_guard lock(mu_);
    if (draining_ || stopping_) {
      runtime::Increment(metrics_->rejected.at("draining"));
      return absl::UnavailableError("gateway is draining: reconnect (to another replica)");
    }
    if (streams_ >= settings_.max_streams) {
      runtime::Increment(metrics_->rejected.at("limit"));
      return absl::ResourceExhaustedError(absl::StrCat(
          "gateway holds its maximum of ", settings_.max_streams,
          " streams: reconnect with backoff (another replica may take it)"));
    }
    ++streams_;
    metrics_->streams->Set(static_cast<double>(streams_));
    auto& on_channel = channels_[stream->channel()];
    on_channel.push_back(stream);
    first = on_channel.size() == 1;
  }
  if (first) subscriber_->Subscribe(stream->channel());
  return absl::OkStatus();
}

void StreamHub::Unregister(const DeviceStream* stream) {
  bool last = false;
  {
    std::lock_guard lock(mu_);
    auto it = channels_.find(stream->channel());
    if (it == channels_.end()) return;
    auto& list = it->second;
    const auto before = list.size();
    list.erase(std::remove_if(list.begin(), list.end(),
                              [&](const auto& s) { return s.get() == stream; }),
               list.end());
    if (list.size() == before) return;
    --streams_;
    metrics_->streams->Set(static_cast<double>(streams_));
    if (list.empty()) {
      channels_.erase(it);
      last = true;
    }
  }
  if (last) subscriber_->Unsubscribe(stream->channel());
}

bool StreamHub::ChannelActive(const std::string& channel) const {
  return subscriber_->IsActive(channel);
}

std::vector<std::shared_ptr<DeviceStream>> StreamHub::StreamsOn(const std::string& channel) const {
  std::lock_guard lock(mu_);
  auto it = channels_.find(channel);
  if (it == channels_.end()) return {};
  return it->second;
}

std::vector<std::shared_ptr<DeviceStream>> StreamHub::AllStreams() const {
  std::vector<std::shared_ptr<DeviceStream>> all;
  std::lock_guard lock(mu_);
  for (const auto& [channel, list] : channels_) all.insert(all.end(), list.begin(), list.end());
  return all;
}

void StreamHub::OnChannelMessage(std::string_view channel, std::string_view payload) {
  v1::DeviceChannelEvent event;
  if (!event.ParseFromArray(payload.data(), static_cast<int>(payload.size()))) {
    runtime::LogWarn("unparseable device channel event", {{"bytes", payload.size()}});
    return;
  }
  for (const auto& stream : StreamsOn(std::string(channel))) stream->OnEvent(event);
}

void StreamHub::OnSubscribed(const std::string& channel) {
  for (const auto& stream : StreamsOn(channel)) stream->OnSubscribed();
}

void StreamHub::OnResubscribed(const std::vector<std::string>& channels) {
  for (const std::string& channel : channels) {
    for (const auto& stream : StreamsOn(channel)) stream->OnResubscribed();
  }
}

void StreamHub::ScheduleTick(const std::shared_ptr<DeviceStream>& stream) {
  std::lock_guard lock(mu_);
  tick_soon_.push_back(stream);
}

void StreamHub::Housekeeping() {
  // Every stream is ticked once a second (token expiry, presence re-subscription: neither needs
  // finer timing); only streams waiting to retry a failed inbox read are ticked every 250 ms.
  // Ticking all of them 4 times a second was a third of an idle gateway's CPU at 10 000 streams.
  constexpr absl::Duration kFullRound = absl::Seconds(1);
  absl::Time next_heartbeat = clock_->Now() + settings_.heartbeat_interval;
  absl::Time next_full_round = clock_->Now() + kFullRound;
  std::unique_lock lock(mu_);
  while (!stopping_) {
    wake_.wait_for(lock, std::chrono::milliseconds(250));
    if (stopping_) break;
    std::vector<std::weak_ptr<DeviceStream>> soon;
    soon.swap(tick_soon_);
    lock.unlock();
    const absl::Time now = clock_->Now();
    for (const auto& weak : soon) {
      if (std::shared_ptr<DeviceStream> stream = weak.lock()) stream->Tick(now);
    }
    if (now >= next_full_round) {
      next_full_round = now + kFullRound;
      const std::vector<std::shared_ptr<DeviceStream>> streams = AllStreams();
      for (const auto& stream : streams) stream->Tick(now);
      if (now >= next_heartbeat) {
        next_heartbeat = now + settings_.heartbeat_interval;
        Heartbeat(streams);
      }
    }
    lock.lock();
  }
}

void StreamHub::Heartbeat(const std::vector<std::shared_ptr<DeviceStream>>& streams) {
  // One asynchronous call per chunk of connections; the presence service answers which are stale
  // (expired or displaced): those streams are told to reconnect, which registers them afresh.
  // Housekeeping never waits for the answers, so a slow or frozen presence service delays no
  // token expiry or read retry; while a round is still unanswered the next one is skipped.
  constexpr size_t kChunk = 1000;
  struct Call {
    grpc::ClientContext context;
    v1::HeartbeatRequest request;
    v1::HeartbeatResponse response;
    std::map<std::pair<std::string, uint32_t>, std::pair<uint64_t, std::shared_ptr<DeviceStream>>>
        by_device;
  };
  {
    std::lock_guard lock(mu_);
    if (heartbeats_in_flight_ > 0) {
      runtime::LogWarn("presence heartbeat skipped: the previous one is unanswered",
                       {{"calls", static_cast<int64_t>(heartbeats_in_flight_)}});
      return;
    }
  }
  std::vector<std::unique_ptr<Call>> calls;
  auto next = [&] {
    calls.push_back(std::make_unique<Call>());
    calls.back()->request.set_gateway_id(settings_.gateway_id);
  };
  next();
  for (const auto& stream : streams) {
    uint64_t epoch = 0;
    {
      std::lock_guard lock(stream->mu_);
      if (stream->phase_ != DeviceStream::Phase::kLive) continue;
      epoch = stream->epoch_;
    }
    Call& call = *calls.back();
    v1::DeviceConnection* c = call.request.add_connections();
    *c->mutable_device() = Address(stream->claims());
    c->set_epoch(epoch);
    call.by_device[{stream->claims().user_id, stream->claims().device_id}] = {epoch, stream};
    if (static_cast<size_t>(call.request.connections_size()) >= kChunk) next();
  }
  if (calls.back()->request.connections_size() == 0) calls.pop_back();
  if (calls.empty()) return;
  {
    std::lock_guard lock(mu_);
    heartbeats_in_flight_ += static_cast<int>(calls.size());
    for (const auto& call : calls) heartbeat_contexts_.insert(&call->context);
  }
  for (auto& owned : calls) {
    Call* call = owned.release();
    SetDeadline(call->context, settings_.call_deadline);
    presence_->async()->Heartbeat(
        &call->context, &call->request, &call->response, [this, call](grpc::Status status) {
          std::unique_ptr<Call> done(call);
          if (!status.ok()) {
            runtime::LogWarn("presence heartbeat failed", {{"error", status.error_message()}});
          } else {
            for (const v1::DeviceConnection& stale : done->response.stale()) {
              auto it = done->by_device.find({stale.device().user_id(), stale.device().device_id()});
              if (it != done->by_device.end() && it->second.first == stale.epoch()) {
                runtime::Increment(metrics_->closed.at("stale"));
                it->second.second->Close(v1::Closing::REASON_DRAIN);
              }
            }
          }
          // Notified under the lock: once Stop sees the count reach 0 the hub may be destroyed,
          // so nothing of it may be touched after the mutex is released.
          std::lock_guard lock(mu_);
          heartbeat_contexts_.erase(&done->context);
          --heartbeats_in_flight_;
          heartbeats_done_.notify_all();
        });
  }
}

// ----- stream -----

DeviceStream::DeviceStream(StreamHub* hub, grpc::CallbackServerContext* context,
                           SessionClaims claims)
    : hub_(hub),
      context_(context),
      claims_(std::move(claims)),
      channel_(channels::DeviceChannel(claims_.user_id, claims_.device_id)),
      revision_(NegotiateRevision(context)) {
  send_tokens_ = hub_->settings_.sends_per_device.burst;
  send_tokens_at_ = hub_->clock_->Now();
}

void DeviceStream::Begin() {
  std::lock_guard lock(mu_);
  self_ = shared_from_this();
  absl::Status registered = hub_->Register(self_);
  if (!registered.ok()) {
    FinishLocked(runtime::ToGrpcStatus(registered));
    return;
  }
  registered_ = true;
  if (hub_->ChannelActive(channel_)) subscribed_ = true;
  read_pending_ = true;
  in_.set_ping(kNoFrameRead);  // see OnReadDone
  StartRead(&in_);
  std::shared_ptr<DeviceStream> self = self_;
  absl::Status submitted = hub_->executor_->Submit([self] { self->StartUp(); });
  if (!submitted.ok()) {
    runtime::Increment(hub_->metrics_->rejected.at("unavailable"));
    FinishLocked(grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED,
                              "gateway overloaded: reconnect with backoff"));
  }
}

void DeviceStream::StartUp() {
  {
    std::lock_guard lock(mu_);
    if (phase_ != Phase::kStarting || finish_status_.has_value()) return;
  }
  // The token is good; is the device still on its account's list? (Unlinked devices, deleted or
  // banned accounts lose their tokens at once.)
  absl::Status listed = hub_->auth_->CheckListed(claims_);
  if (!listed.ok()) {
    runtime::Increment(hub_->metrics_->rejected.at(
        listed.code() == absl::StatusCode::kUnauthenticated ? "unauthenticated" : "unavailable"));
    Fail(runtime::ToGrpcStatus(listed));
    return;
  }
  // Every connect renews the device's push subscription (one EXPIRE; nothing when it has none).
  // A failure costs at most an earlier expiry, never the stream.
  if (hub_->push_ != nullptr) {
    if (absl::Status s = hub_->push_->Refresh(DeviceRef{claims_.user_id, claims_.device_id});
        !s.ok()) {
      runtime::LogWarn("push subscription refresh failed",
                       {{"user", runtime::HashUserId(claims_.user_id)}, {"error", s}});
    }
  }
  grpc::ClientContext context;
  SetDeadline(context, hub_->settings_.call_deadline);
  v1::ConnectRequest request;
  *request.mutable_device() = Address(claims_);
  request.set_gateway_id(hub_->settings_.gateway_id);
  v1::ConnectResponse response;
  grpc::Status status = hub_->presence_->Connect(&context, request, &response);
  if (!status.ok()) {
    runtime::Increment(hub_->metrics_->rejected.at("unavailable"));
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
  connected.mutable_connected()->set_server_time_ms(static_cast<uint64_t>(hub_->clock_->NowMs()));
  connected.mutable_connected()->set_max_unacked(hub_->settings_.max_unacked);
  connected.mutable_connected()->set_stream_revision(revision_);
  outbox_.emplace_front(std::move(connected));  // the first frame of every stream
  if (displaced_by_ > epoch_) {
    Displace(displaced_by_);
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

void DeviceStream::Fail(const grpc::Status& status) {
  std::lock_guard lock(mu_);
  outbox_.clear();
  results_.clear();
  FinishLocked(status);
}

void DeviceStream::FinishLocked(const grpc::Status& status) {
  if (finish_status_.has_value()) return;
  finish_status_ = status;
  if (phase_ == Phase::kStarting) {  // never written: no `connected` yet
    outbox_.clear();
    results_.clear();
  }
  phase_ = Phase::kClosing;
  MaybeWriteLocked();
}

void DeviceStream::Close(v1::Closing::Reason reason) {
  std::lock_guard lock(mu_);
  if (finish_status_.has_value() || closing_reason_ != v1::Closing::REASON_UNSPECIFIED) return;
  if (phase_ == Phase::kStarting) {
    if (reason == v1::Closing::REASON_DRAIN) {
      // Accepted but still starting up: StartUp finishes it as every drained stream ends —
      // `connected`, then Closing{DRAIN}, then OK — and the drain waits for it (issue #16).
      closing_reason_ = reason;
      runtime::Increment(hub_->metrics_->closed.at("drain"));
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
  runtime::Increment(hub_->metrics_->closed.at(label));
  if (reason == v1::Closing::REASON_REVOKED) {
    // Nothing more for a revoked device: drop what waits (its sends would be refused anyway).
    for (const PendingSend& s : sends_) open_requests_.erase(s.request_id);
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
  displaced_by_ = std::max(displaced_by_, by_epoch);
  // Only a connection with a lower epoch closes; before our own epoch is known, remember it.
  if (epoch_ == 0 || by_epoch <= epoch_ || finish_status_.has_value()) return;
  runtime::Increment(hub_->metrics_->closed.at("displaced"));
  v1::ServerFrame frame;
  frame.mutable_displaced()->set_by_epoch(by_epoch);
  QueueFrameLocked(std::move(frame));
  FinishLocked(grpc::Status::OK);
}

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
      if (wakeup.sequence() <= cursor_sequence_) return;  // already handed out
      if (wakeup.sequence() == cursor_sequence_ + 1 && wakeup.has_envelope() && subscribed_ &&
          !reading_ && !need_read_ &&
          delivered_.size() < hub_->settings_.max_unacked) {
        runtime::Increment(hub_->metrics_->direct_pushes);
        PushEnvelopeLocked(wakeup.envelope(), /*tracked=*/true);
        MaybeWriteLocked();
        return;
      }
      if (wakeup.sequence() != cursor_sequence_ + 1 && !reading_ && !need_read_) {
        runtime::Increment(hub_->metrics_->gap_fills);
      }
      need_read_ = true;
      MaybeReadLocked();
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
  subscribed_ = true;
  need_read_ = true;
  MaybeReadLocked();
}

void DeviceStream::OnResubscribed() {
  std::lock_guard lock(mu_);
  // Wake-ups may have been lost while the subscription was down: read from the cursor.
  runtime::Increment(hub_->metrics_->gap_fills);
  subscribed_ = true;
  need_read_ = true;
  MaybeReadLocked();
}

void DeviceStream::Tick(absl::Time now) {
  bool expired = false;
  std::vector<std::string> renew;
  {
    std::lock_guard lock(mu_);
    tick_scheduled_ = false;
    if (finish_status_.has_value()) return;
    if (phase_ == Phase::kLive && now >= claims_.expires_at) {
      expired = true;
    } else {
      if (need_read_ && !reading_) MaybeReadLocked();  // retries a failed read
      if (phase_ == Phase::kLive && !watched_.empty() &&
          now - watched_at_ >= hub_->settings_.presence_resubscribe) {
        renew = watched_;
      }
    }
  }
  if (expired) {
    Close(v1::Closing::REASON_TOKEN_EXPIRED);
    return;
  }
  if (renew.empty()) return;
  v1::SubscribePresence again;
  for (auto& user : renew) again.add_user_ids(std::move(user));
  HandleSubscribePresence(again);
}

// ----- client frames -----

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
  const StreamHub::Metrics& metrics = *hub_->metrics_;
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
  if (sends_.size() >= hub_->settings_.max_pending_sends) {
    read_pending_ = false;
    read_paused_ = true;  // resumed when the queued sends drain
    return;
  }
  in_.set_ping(kNoFrameRead);  // see OnReadDone
  StartRead(&in_);
}

void DeviceStream::ResumeReadingLocked() {
  if (!read_paused_ || client_done_ || finished_) return;
  read_paused_ = false;
  read_pending_ = true;
  in_.set_ping(kNoFrameRead);  // see OnReadDone
  StartRead(&in_);
}

void DeviceStream::StreamErrorLocked(grpc::StatusCode code, const std::string& message,
                                     uint64_t request_id) {
  runtime::Increment(hub_->metrics_->stream_errors);
  v1::ServerFrame frame;
  frame.mutable_error()->set_code(static_cast<int32_t>(code));
  frame.mutable_error()->set_message(message);
  frame.mutable_error()->set_request_id(request_id);
  QueueFrameLocked(std::move(frame));
}

void DeviceStream::HandleSend(v1::SendRequest* send) {
  runtime::Increment(hub_->metrics_->sends);
  const StreamSettings& settings = hub_->settings_;
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
    if (open_requests_.contains(id)) {
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
      runtime::Increment(hub_->metrics_->sends_refused);
      return;
    }
    if (phase_ == Phase::kClosing) {
      runtime::Increment(hub_->metrics_->sends_refused);
      refuse(grpc::StatusCode::UNAVAILABLE,
             "stream is closing: send again (same message_id) on the next connection");
      return;
    }
    const size_t bytes = send->ByteSizeLong();
    if (bytes > settings.max_send_bytes) {
      runtime::Increment(hub_->metrics_->sends_refused);
      refuse(grpc::StatusCode::INVALID_ARGUMENT,
             absl::StrCat("send of ", bytes, " bytes exceeds the limit of ",
                          settings.max_send_bytes, " bytes"));
      return;
    }
    // Per-device token bucket, in process (a device is on one gateway).
    const absl::Time now = hub_->clock_->Now();
    const ratelimit::RateLimit& limit = settings.sends_per_device;
    send_tokens_ = std::min(limit.burst, send_tokens_ + absl::ToDoubleSeconds(now - send_tokens_at_) *
                                                            limit.per_second);
    send_tokens_at_ = now;
    if (send_tokens_ < 1.0) {
      runtime::Increment(hub_->metrics_->sends_rate_limited);
      const auto retry_ms =
          static_cast<uint32_t>(std::ceil((1.0 - send_tokens_) / limit.per_second * 1000.0));
      refuse(grpc::StatusCode::RESOURCE_EXHAUSTED,
             absl::StrCat("send rate limit for this device; retry after ", retry_ms, " ms"),
             retry_ms);
      return;
    }
    send_tokens_ -= 1.0;
    open_requests_.insert(id);
    PendingSend pending;
    pending.request_id = id;
    pending.message.Swap(send->mutable_message());
    sends_.push_back(std::move(pending));
    if (!send_scheduled_) {
      send_scheduled_ = true;
      notify = true;
    }
  }
  if (notify) hub_->sends_->Ready(shared_from_this());
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
    open_requests_.erase(request_ids[i]);
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
          runtime::Increment(hub_->metrics_->envelopes_in,
                             outcome.accepted().placements_size());
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
  if (read_paused_ && sends_.size() < hub_->settings_.max_pending_sends / 2) {
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
    const absl::Time now = hub_->clock_->Now();
    size_t removed = 0;
    auto observe = [&](const Delivered& d) {
      hub_->metrics_->push_ack->Observe(absl::ToDoubleSeconds(now - d.pushed_at));
      ++removed;
    };
    if (!ack.up_to_server_id().empty()) {
      auto it = std::find_if(delivered_.begin(), delivered_.end(), [&](const Delivered& d) {
        return d.server_id == ack.up_to_server_id();
      });
      if (it == delivered_.end()) {
        StreamErrorLocked(grpc::StatusCode::INVALID_ARGUMENT,
                          absl::StrCat("ack: server id ", ack.up_to_server_id(),
                                       " was not delivered on this stream or is already acked"),
                          0);
      } else {
        const auto end = std::next(it);
        for (auto d = delivered_.begin(); d != end; ++d) observe(*d);
        delivered_.erase(delivered_.begin(), end);
        ack_up_to_ = ack.up_to_server_id();
      }
    }
    for (const std::string& id : ack.server_ids()) {
      auto it = std::find_if(delivered_.begin(), delivered_.end(),
                             [&](const Delivered& d) { return d.server_id == id; });
      if (it == delivered_.end()) {
        StreamErrorLocked(grpc::StatusCode::INVALID_ARGUMENT,
                          absl::StrCat("ack: server id ", id,
                                       " was not delivered on this stream or is already acked"),
                          0);
        continue;
      }
      observe(*it);
      delivered_.erase(it);
      ack_ids_.push_back(id);
    }
    hub_->metrics_->unacked->Decrement(static_cast<double>(removed));
    if (schedule && (!ack_up_to_.empty() || !ack_ids_.empty()) && !ack_scheduled_) {
      ack_scheduled_ = true;
      notify = true;
    }
    MaybeReadLocked();  // acks may have opened the unacked window
    MaybeWriteLocked();
  }
  if (notify) hub_->acks_->Ready(shared_from_this());
}

void DeviceStream::ScheduleAcks() {
  {
    std::lock_guard lock(mu_);
    if ((ack_up_to_.empty() && ack_ids_.empty()) || ack_scheduled_) return;
    ack_scheduled_ = true;
  }
  hub_->acks_->Ready(shared_from_this());
}

std::optional<v1::DeviceAck> DeviceStream::TakeAcks(size_t max_ids) {
  std::lock_guard lock(mu_);
  ack_scheduled_ = false;
  const size_t ids = std::min(max_ids, ack_ids_.size());
  if (ack_up_to_.empty() && ids == 0) return std::nullopt;
  v1::DeviceAck ack;
  *ack.mutable_device() = Address(claims_);
  ack.set_up_to_server_id(std::move(ack_up_to_));
  for (size_t i = 0; i < ids; ++i) ack.add_server_ids(std::move(ack_ids_[i]));
  ack_up_to_.clear();
  ack_ids_.erase(ack_ids_.begin(), ack_ids_.begin() + static_cast<std::ptrdiff_t>(ids));
  return ack;
}

bool DeviceStream::HasPendingAcks() {
  std::lock_guard lock(mu_);
  return !ack_up_to_.empty() || !ack_ids_.empty();
}

void DeviceStream::HandleSubscribePresence(const v1::SubscribePresence& subscribe) {
  std::shared_ptr<DeviceStream> self = shared_from_this();
  {
    std::lock_guard lock(mu_);
    if (static_cast<size_t>(subscribe.user_ids_size()) > hub_->settings_.max_presence_users) {
      StreamErrorLocked(grpc::StatusCode::RESOURCE_EXHAUSTED,
                        absl::StrCat("subscribe_presence: at most ",
                                     hub_->settings_.max_presence_users, " users"),
                        0);
      MaybeWriteLocked();
      return;
    }
    watched_.assign(subscribe.user_ids().begin(), subscribe.user_ids().end());
    watched_at_ = hub_->clock_->Now();
  }
  v1::SubscribeRequest request;
  *request.mutable_subscriber() = Address(claims_);
  *request.mutable_user_ids() = subscribe.user_ids();
  absl::Status submitted = hub_->executor_->Submit([self, request = std::move(request)] {
    grpc::ClientContext context;
    SetDeadline(context, self->hub_->settings_.call_deadline);
    v1::SubscribeResponse response;
    grpc::Status status = self->hub_->presence_->Subscribe(&context, request, &response);
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
  absl::Status submitted = hub_->executor_->Submit([self, request = std::move(request)] {
    grpc::ClientContext context;
    SetDeadline(context, self->hub_->settings_.call_deadline);
    v1::SetVisibilityResponse response;
    grpc::Status status = self->hub_->presence_->SetVisibility(&context, request, &response);
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

// ----- delivery -----

void DeviceStream::MaybeReadLocked() {
  if (finish_status_.has_value() || phase_ == Phase::kClosing) return;
  if (!subscribed_ || reading_ || !need_read_) return;
  const uint32_t max_unacked = hub_->settings_.max_unacked;
  if (delivered_.size() >= max_unacked) return;  // wait for acks
  if (hub_->clock_->Now() < read_not_before_) {  // retry after a failure, from Tick
    if (!tick_scheduled_) {
      tick_scheduled_ = true;
      hub_->ScheduleTick(shared_from_this());  // lock order: stream → hub
    }
    return;
  }
  need_read_ = false;
  reading_ = true;
  runtime::Increment(hub_->metrics_->inbox_reads);
  struct Call {
    std::shared_ptr<DeviceStream> stream;
    grpc::ClientContext context;
    v1::ReadInboxRequest request;
    v1::ReadInboxResponse response;
  };
  auto* call = new Call{shared_from_this(), {}, {}, {}};
  SetDeadline(call->context, hub_->settings_.call_deadline);
  *call->request.mutable_device() = Address(claims_);
  call->request.set_after_server_id(cursor_id_);
  call->request.set_after_sequence(cursor_sequence_);
  call->request.set_max_envelopes(
      std::min<uint32_t>(256, max_unacked - static_cast<uint32_t>(delivered_.size())));
  hub_->message_queue_->async()->ReadInbox(&call->context, &call->request, &call->response,
                                           [call](grpc::Status status) {
                                             call->stream->OnInboxRead(status, call->response);
                                             delete call;
                                           });
}

void DeviceStream::OnInboxRead(const grpc::Status& status, v1::ReadInboxResponse& response) {
  std::lock_guard lock(mu_);
  reading_ = false;
  if (finish_status_.has_value()) return;
  if (!status.ok()) {
    runtime::Increment(hub_->metrics_->inbox_read_failures);
    need_read_ = true;
    read_not_before_ = hub_->clock_->Now() + hub_->settings_.read_retry;
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
    if (envelope.sequence() <= cursor_sequence_) continue;  // a wake-up pushed it meanwhile
    gaps_before(envelope.sequence());
    PushEnvelopeLocked(std::move(envelope), /*tracked=*/true);
  }
  gaps_before(UINT64_MAX);
  if (!response.next_after_server_id().empty() &&
      response.next_after_sequence() > cursor_sequence_) {
    cursor_id_ = response.next_after_server_id();
    cursor_sequence_ = response.next_after_sequence();
  }
  if (!response.end_of_inbox()) {
    need_read_ = true;
  } else if (!backlog_done_) {
    backlog_done_ = true;
    v1::ServerFrame frame;
    frame.mutable_queue_empty()->set_last_sequence(last_delivered_sequence_);
    QueueFrameLocked(std::move(frame));
  }
  MaybeReadLocked();
  MaybeWriteLocked();
}

void DeviceStream::PushEnvelopeLocked(v1::Envelope envelope, bool tracked) {
  if (tracked) {
    delivered_.push_back({envelope.server_id(), envelope.sequence(), hub_->clock_->Now()});
    cursor_id_ = envelope.server_id();
    cursor_sequence_ = envelope.sequence();
    last_delivered_sequence_ = envelope.sequence();
    hub_->metrics_->unacked->Increment();
  }
  outbox_.emplace_back(std::move(envelope));
}

void DeviceStream::QueueFrameLocked(v1::ServerFrame frame) {
  outbox_.emplace_back(std::move(frame));
}

void DeviceStream::QueueResultLocked(v1::SendResult result) {
  if (revision_ >= 2) {
    results_.push_back(std::move(result));
    return;
  }
  v1::ServerFrame frame;
  *frame.mutable_send_result() = std::move(result);
  QueueFrameLocked(std::move(frame));
}

void DeviceStream::MaybeWriteLocked() {
  if (write_pending_ || finished_) return;
  if (phase_ == Phase::kStarting) return;  // `connected` goes first
  if (outbox_.empty() && results_.empty()) {
    if (finish_status_.has_value()) {
      finished_ = true;
      Finish(*finish_status_);
    }
    return;
  }
  writing_.Clear();
  if (outbox_.empty()) {
    // Only outcomes to tell: a frame of send_results alone (below).
  } else if (auto* frame = std::get_if<v1::ServerFrame>(&outbox_.front())) {
    writing_.Swap(frame);
    outbox_.pop_front();
  } else {
    // Coalesce the envelopes at the head into one Deliver frame.
    v1::Deliver* deliver = writing_.mutable_deliver();
    size_t bytes = 0;
    while (!outbox_.empty() && deliver->envelopes_size() <
                                   static_cast<int>(hub_->settings_.deliver_batch)) {
      auto* envelope = std::get_if<v1::Envelope>(&outbox_.front());
      if (envelope == nullptr) break;
      if (deliver->envelopes_size() > 0 &&
          bytes + envelope->ciphertext().size() > hub_->settings_.deliver_batch_bytes) {
        break;
      }
      bytes += envelope->ciphertext().size();
      deliver->add_envelopes()->Swap(envelope);
      outbox_.pop_front();
    }
  }
  // Revision 2: every outcome waiting rides on this frame, whatever it is — except `connected`,
  // which a client reads first on its own (a send taken while the stream started up is answered
  // right after it).
  if (!writing_.has_connected()) {
    for (v1::SendResult& result : results_) writing_.add_send_results()->Swap(&result);
    results_.clear();
  }
  runtime::Increment(hub_->metrics_->outcomes_riding, writing_.send_results_size());
  runtime::Increment(hub_->metrics_->server_frames);
  write_pending_ = true;
  StartWrite(&writing_);
}

void DeviceStream::OnWriteDone(bool ok) {
  std::lock_guard lock(mu_);
  write_pending_ = false;
  if (writing_.has_deliver()) {
    runtime::Increment(hub_->metrics_->deliver_frames);
    runtime::Increment(hub_->metrics_->envelopes_out, writing_.deliver().envelopes_size());
  }
  if (!ok) {
    // The client is gone: nothing more can be written.
    outbox_.clear();
    results_.clear();
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
  outbox_.clear();
  results_.clear();
  if (!finish_status_.has_value()) {
    finish_status_ = grpc::Status(grpc::StatusCode::CANCELLED, "stream cancelled");
    phase_ = Phase::kClosing;
  }
  MaybeWriteLocked();
}

void DeviceStream::OnDone() {
  std::shared_ptr<DeviceStream> keep;
  uint64_t epoch = 0;
  {
    std::lock_guard lock(mu_);
    keep = std::move(self_);
    epoch = epoch_;
    hub_->metrics_->unacked->Decrement(static_cast<double>(delivered_.size()));
    delivered_.clear();
  }
  if (registered_) hub_->Unregister(this);
  if (epoch != 0) {
    // Tell presence; ignored there when a newer epoch already holds the device.
    struct Call {
      grpc::ClientContext context;
      v1::DisconnectRequest request;
      v1::DisconnectResponse response;
    };
    auto* call = new Call;
    SetDeadline(call->context, hub_->settings_.call_deadline);
    *call->request.mutable_device() = Address(claims_);
    call->request.set_epoch(epoch);
    hub_->presence_->async()->Disconnect(&call->context, &call->request, &call->response,
                                         [call](grpc::Status) { delete call; });
  }
  // `keep` releases the stream's self-reference here; pumps or calls may still hold it.
}

}  // namespace padlock::gateway
