#pragma once
// The gRPC face of the gateway service: validates requests, authenticates the caller's bearer
// token, converts proto ↔ domain types, runs the logic or relays to the key-directory, and maps
// absl::Status to grpc::Status (services/common/runtime/status.h).
//
// Threading: the callback API; nothing blocks a gRPC callback thread (STYLE.md). Validation and
// token verification (pure CPU) run inline. Calls to the key-directory use the async stub: the
// relay starts the call and its completion finishes the rpc, so no thread waits for the answer.
// Work that blocks (Redis, the identity look-up of CheckListed / CheckCurrent) runs first on a
// BoundedExecutor, whose full queue answers RESOURCE_EXHAUSTED at once. ClaimBundles needs no
// blocking work and never touches the executor: it relays straight from the callback thread.
//
// Connect (the device stream) is handed to the StreamHub (stream_hub.h).

#include <atomic>
#include <cstddef>
#include <memory>
#include <string>

#include "absl/functional/any_invocable.h"
#include "absl/time/time.h"
#include "padlock/v1/gateway.grpc.pb.h"
#include "services/common/runtime/executor.h"
#include "services/gateway/authenticator.h"
#include "services/gateway/stream_hub.h"
#include "services/gateway/push_registry.h"
#include "services/gateway/rate_limiter.h"
#include "services/gateway/turn.h"

namespace prometheus {
class Counter;
class Gauge;
class Histogram;
class Registry;
template <typename T>
class Family;
}  // namespace prometheus

namespace padlock::gateway {

class KeyDirectoryClient;

// Trailing metadata key carrying the retry delay (decimal ms) of a rate-limited call.
inline constexpr char kRetryAfterMetadata[] = "retry-after-ms";

struct GatewayLimits {
  // Register calls per client address (the peer's IP, port dropped).
  RateLimit register_per_address = {.burst = 5, .per_second = 1.0 / 720};
  // Login calls per client address.
  RateLimit login_per_address = {.burst = 30, .per_second = 0.5};
  // GetChallenge calls per client address (each one stores a challenge in Redis until it is used
  // or expires; one per login, so the same budget as login by default).
  RateLimit challenge_per_address = {.burst = 30, .per_second = 0.5};
  // Key-directory calls in flight at once (all relays of this gateway). Beyond it a relay answers
  // RESOURCE_EXHAUSTED "gateway busy" at once: the bound the executor's queue gave relays before
  // they became async (main.cpp sets it to PADLOCK_GATEWAY_QUEUE).
  size_t max_relays_in_flight = 4096;
};

// padlock.v1.Gateway. Thread-safe; every pointer must outlive the server. `metrics` may be null.
class GatewayService final : public padlock::v1::Gateway::CallbackService {
 public:
  GatewayService(Authenticator* auth, KeyDirectoryClient* key_directory, RateLimiter* limiter,
                 runtime::BoundedExecutor* executor, GatewayLimits limits, TurnOptions turn,
                 prometheus::Registry* metrics = nullptr, StreamHub* streams = nullptr,
                 PushRegistry* push = nullptr);

  grpc::ServerUnaryReactor* Register(grpc::CallbackServerContext* context,
                                     const padlock::v1::RegisterRequest* request,
                                     padlock::v1::RegisterResponse* response) override;
  grpc::ServerUnaryReactor* GetChallenge(grpc::CallbackServerContext* context,
                                         const padlock::v1::GetChallengeRequest* request,
                                         padlock::v1::GetChallengeResponse* response) override;
  grpc::ServerUnaryReactor* Login(grpc::CallbackServerContext* context,
                                  const padlock::v1::LoginRequest* request,
                                  padlock::v1::LoginResponse* response) override;
  grpc::ServerUnaryReactor* PublishDeviceList(
      grpc::CallbackServerContext* context,
      const padlock::v1::GatewayPublishDeviceListRequest* request,
      padlock::v1::PublishDeviceListResponse* response) override;
  grpc::ServerUnaryReactor* PublishPreKeys(grpc::CallbackServerContext* context,
                                           const padlock::v1::GatewayPublishPreKeysRequest* request,
                                           padlock::v1::PublishPreKeysResponse* response) override;
  grpc::ServerUnaryReactor* ClaimBundles(grpc::CallbackServerContext* context,
                                         const padlock::v1::GatewayClaimBundlesRequest* request,
                                         padlock::v1::ClaimBundlesResponse* response) override;
  grpc::ServerUnaryReactor* GetDeviceList(grpc::CallbackServerContext* context,
                                          const padlock::v1::GetDeviceListRequest* request,
                                          padlock::v1::GetDeviceListResponse* response) override;
  grpc::ServerUnaryReactor* ChangeIdentity(
      grpc::CallbackServerContext* context,
      const padlock::v1::GatewayChangeIdentityRequest* request,
      padlock::v1::ChangeIdentityResponse* response) override;
  grpc::ServerUnaryReactor* DeleteAccount(grpc::CallbackServerContext* context,
                                          const padlock::v1::GatewayDeleteAccountRequest* request,
                                          padlock::v1::DeleteAccountResponse* response) override;
  // The device stream (StreamHub). Without a hub (tests of the unary rpcs): UNIMPLEMENTED.
  grpc::ServerBidiReactor<padlock::v1::ClientFrame, padlock::v1::ServerFrame>* Connect(
      grpc::CallbackServerContext* context) override;
  grpc::ServerUnaryReactor* GetTurnCredentials(
      grpc::CallbackServerContext* context, const padlock::v1::GetTurnCredentialsRequest* request,
      padlock::v1::GetTurnCredentialsResponse* response) override;
  // Web Push subscriptions (PushRegistry). Without a registry: FAILED_PRECONDITION
  // "push not configured".
  grpc::ServerUnaryReactor* SetPushSubscription(
      grpc::CallbackServerContext* context, const padlock::v1::SetPushSubscriptionRequest* request,
      padlock::v1::SetPushSubscriptionResponse* response) override;
  grpc::ServerUnaryReactor* DeletePushSubscription(
      grpc::CallbackServerContext* context,
      const padlock::v1::DeletePushSubscriptionRequest* request,
      padlock::v1::DeletePushSubscriptionResponse* response) override;
  grpc::ServerUnaryReactor* GetPushConfig(grpc::CallbackServerContext* context,
                                          const padlock::v1::GetPushConfigRequest* request,
                                          padlock::v1::GetPushConfigResponse* response) override;

  // Key-directory calls started and not yet completed (for tests).
  size_t relays_in_flight() const { return relays_in_flight_.load(); }

 private:
  // Finishes at once with `status`.
  static grpc::ServerUnaryReactor* Reject(grpc::CallbackServerContext* context,
                                          const absl::Status& status);
  // Runs `work` (returning absl::Status) on the executor and finishes with its status.
  template <typename Work>
  grpc::ServerUnaryReactor* Offload(grpc::CallbackServerContext* context, Work work);
  // Runs `work(reactor)` on the executor; it finishes the reactor itself, at once or by Relay.
  template <typename Work>
  grpc::ServerUnaryReactor* OffloadThenRelay(grpc::CallbackServerContext* context, Work work);
  // One key-directory call with the async stub; returns at once. `start(client, request, done)`
  // begins the call (`stub().async()->Method(client, request, response, done)`); `request` is
  // kept alive until it completes. The completion, on a gRPC thread: observes the latency
  // metric, copies the key-directory's trailing `retry-after-ms` to `server`, maps the status
  // (code and message pass through), hands it to `then` (a non-blocking rewrite, e.g. counting a
  // refusal) and finishes `reactor` with the result. The deadline is the configured one
  // (KeyDirectoryClient::Prepare). Beyond limits_.max_relays_in_flight the call is not started
  // and `reactor` finishes at once with ResourceExhausted.
  template <typename Request, typename Start>
  void Relay(grpc::CallbackServerContext* server, grpc::ServerUnaryReactor* reactor,
             const char* method, Request request, Start start,
             absl::AnyInvocable<absl::Status(absl::Status) &&> then = nullptr);
  // The caller's token claims (Unauthenticated, identical message, when missing or invalid).
  absl::StatusOr<SessionClaims> Caller(grpc::CallbackServerContext* context);
  // A per-address token bucket; ResourceExhausted with `retry-after-ms` when empty (counted in
  // padlock_gateway_address_limited_total{limit=what}).
  absl::Status TakeAddressToken(grpc::CallbackServerContext* context, const char* what,
                                const RateLimit& limit);

  Authenticator* const auth_;
  KeyDirectoryClient* const key_directory_;
  RateLimiter* const limiter_;
  runtime::BoundedExecutor* const executor_;
  const GatewayLimits limits_;
  const TurnOptions turn_;
  prometheus::Family<prometheus::Histogram>* relay_latency_ = nullptr;
  prometheus::Gauge* relays_gauge_ = nullptr;
  prometheus::Family<prometheus::Counter>* address_limited_ = nullptr;
  StreamHub* const streams_;
  PushRegistry* const push_;
  std::atomic<size_t> relays_in_flight_{0};
};

}  // namespace padlock::gateway
