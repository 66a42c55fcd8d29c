#include "services/gateway/stream_hub.h"

#include <prometheus/counter.h>
#include <prometheus/gauge.h>

#include <algorithm>
#include <optional>
#include <utility>

#include "absl/strings/str_cat.h"
#include "services/common/runtime/logging.h"
#include "services/common/runtime/metrics_util.h"
#include "services/common/runtime/status.h"
#include "services/gateway/device_stream.h"
#include "services/gateway/stream_support.h"

namespace padlock::gateway {

namespace v1 = padlock::v1;


StreamHub::StreamHub(StreamSettings settings, Authenticator* auth, redis::RedisClient* redis,
                     std::shared_ptr<grpc::Channel> message_queue,
                     std::shared_ptr<grpc::Channel> presence, runtime::BoundedExecutor* executor,
                     prometheus::Registry* metrics, PushRegistry* push,
                     runtime::Clock* clock)
    : StreamHub(std::move(settings), auth, redis,
                std::make_unique<GrpcInboxClient>(std::move(message_queue)),
                std::make_unique<GrpcPresenceClient>(std::move(presence)), executor, metrics, push,
                clock) {}

StreamHub::StreamHub(StreamSettings settings, Authenticator* auth, redis::RedisClient* redis,
                     std::unique_ptr<InboxClient> inbox, std::unique_ptr<PresenceClient> presence,
                     runtime::BoundedExecutor* executor, prometheus::Registry* metrics,
                     PushRegistry* push, runtime::Clock* clock)
    : settings_(std::move(settings)),
      auth_(auth),
      redis_(redis),
      inbox_(std::move(inbox)),
      presence_(std::move(presence)),
      executor_(executor),
      push_(push),
      clock_(clock != nullptr ? clock : runtime::SystemClock::Get()),
      metrics_(std::make_unique<StreamMetrics>(metrics)),
      acks_(std::make_unique<AckPump>(&settings_, inbox_.get(), metrics_.get())),
      sends_(std::make_unique<SendPump>(&settings_, inbox_.get(), metrics_.get(), acks_.get())) {}

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

grpc::ServerBidiReactor<v1::ClientFrame, v1::ServerFrame>* StreamHub::Connect(
    grpc::CallbackServerContext* context, absl::StatusOr<SessionClaims> claims) {
  if (!claims.ok()) {
    runtime::Increment(metrics_->rejected.at("unauthenticated"));
    return MakeRejectedStream(runtime::ToGrpcStatus(claims.status()));
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
    const std::optional<uint64_t> live = stream->LiveEpoch();
    if (!live.has_value()) continue;
    const uint64_t epoch = *live;
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
    presence_->Heartbeat(
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

}  // namespace padlock::gateway
