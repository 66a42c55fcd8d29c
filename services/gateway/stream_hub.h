#pragma once
// The StreamHub: what every device stream of one gateway shares — the registry of streams by
// device channel, the Redis subscriber that routes channel events to them, the send and ack pumps,
// and the housekeeping thread (token expiry, read retries, presence re-subscription, heartbeats).
//
// Housekeeping ticks every stream once a second and a stream waiting to retry a failed inbox read
// every 250 ms. Presence heartbeats go out every heartbeat_interval in batched asynchronous calls
// (1 000 connections each) that housekeeping never waits for; streams presence reports stale are
// told to reconnect. While a round is unanswered the next one is skipped.
//
// Thread-safe. Lock order: pump mutex → stream mutex → hub mutex.

#include <grpcpp/grpcpp.h>

#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "padlock/v1/gateway.grpc.pb.h"
#include "services/common/redis/redis_client.h"
#include "services/common/redis/redis_subscriber.h"
#include "services/common/runtime/clock.h"
#include "services/common/runtime/executor.h"
#include "services/gateway/authenticator.h"
#include "services/gateway/push_registry.h"
#include "services/gateway/stream_metrics.h"
#include "services/gateway/stream_pumps.h"
#include "services/gateway/stream_settings.h"
#include "services/gateway/upstream_clients.h"

namespace prometheus {
class Registry;
}  // namespace prometheus

namespace padlock::gateway {

class DeviceStream;

class StreamHub {
 public:
  // `clock` (the system clock when null; must outlive the hub) times the send rate, read retries,
  // presence watches, heartbeats and push-to-ack latency.
  StreamHub(StreamSettings settings, Authenticator* auth, redis::RedisClient* redis,
            std::shared_ptr<grpc::Channel> message_queue, std::shared_ptr<grpc::Channel> presence,
            runtime::BoundedExecutor* executor, prometheus::Registry* metrics,
            PushRegistry* push = nullptr, runtime::Clock* clock = nullptr);
  // The same over any message-queue and presence clients (fakes in tests).
  StreamHub(StreamSettings settings, Authenticator* auth, redis::RedisClient* redis,
            std::unique_ptr<InboxClient> inbox, std::unique_ptr<PresenceClient> presence,
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

  // ----- for the streams -----
  // Adds `stream` to the registry (subscribing its channel if it is the first on it); refused
  // with UNAVAILABLE while draining, RESOURCE_EXHAUSTED at max_streams.
  absl::Status Register(const std::shared_ptr<DeviceStream>& stream);
  void Unregister(const DeviceStream* stream);
  // The subscription to `channel` is confirmed (no OnSubscribed will follow for it).
  bool ChannelActive(const std::string& channel) const;
  // Has housekeeping tick `stream` within its next 250 ms round (a read retry is waiting).
  void ScheduleTick(const std::shared_ptr<DeviceStream>& stream);

  Authenticator* auth() const { return auth_; }
  PushRegistry* push() const { return push_; }  // null: no push
  runtime::BoundedExecutor* executor() const { return executor_; }
  runtime::Clock* clock() const { return clock_; }
  StreamMetrics& metrics() const { return *metrics_; }
  InboxClient* inbox() const { return inbox_.get(); }
  PresenceClient* presence() const { return presence_.get(); }
  SendPump& send_pump() const { return *sends_; }
  AckPump& ack_pump() const { return *acks_; }

 private:
  // Subscriber callbacks.
  void OnChannelMessage(std::string_view channel, std::string_view payload);
  void OnSubscribed(const std::string& channel);
  void OnResubscribed(const std::vector<std::string>& channels);
  std::vector<std::shared_ptr<DeviceStream>> StreamsOn(const std::string& channel) const;
  std::vector<std::shared_ptr<DeviceStream>> AllStreams() const;
  void Housekeeping();
  void Heartbeat(const std::vector<std::shared_ptr<DeviceStream>>& streams);

  const StreamSettings settings_;
  Authenticator* const auth_;
  redis::RedisClient* const redis_;
  const std::unique_ptr<InboxClient> inbox_;
  const std::unique_ptr<PresenceClient> presence_;
  runtime::BoundedExecutor* const executor_;
  // Renews the device's push subscription at each stream start-up; null: no push.
  PushRegistry* const push_;
  runtime::Clock* const clock_;  // the streams' time (gRPC deadlines use the real clock)
  std::unique_ptr<StreamMetrics> metrics_;
  std::unique_ptr<AckPump> acks_;
  std::unique_ptr<SendPump> sends_;
  std::unique_ptr<redis::RedisSubscriber> subscriber_;  // set by Start

  mutable std::mutex mu_;
  // channel → streams on it (normally one; two during a reconnect race on this gateway).
  std::map<std::string, std::vector<std::shared_ptr<DeviceStream>>> channels_ ABSL_GUARDED_BY(mu_);
  size_t streams_ ABSL_GUARDED_BY(mu_) = 0;
  bool draining_ ABSL_GUARDED_BY(mu_) = false;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<std::weak_ptr<DeviceStream>> tick_soon_ ABSL_GUARDED_BY(mu_);  // ScheduleTick
  // Heartbeat calls not yet answered (Stop cancels them and waits for their callbacks).
  int heartbeats_in_flight_ ABSL_GUARDED_BY(mu_) = 0;
  std::set<grpc::ClientContext*> heartbeat_contexts_ ABSL_GUARDED_BY(mu_);
  std::condition_variable heartbeats_done_;
  std::condition_variable wake_;
  std::thread housekeeping_;
};

}  // namespace padlock::gateway
