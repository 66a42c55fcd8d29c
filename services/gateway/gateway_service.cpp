#include "services/gateway/gateway_service.h"

#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include <algorithm>
#include <functional>
#include <string>
#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/statement/ids.h"
#include "services/common/runtime/absl_compat.h"
#include "services/common/runtime/logging.h"
#include "services/common/runtime/status.h"
#include "services/common/runtime/unary.h"
#include "services/common/runtime/upstream_status.h"
#include "services/gateway/device_stream.h"
#include "services/gateway/key_directory_client.h"

namespace padlock::gateway {
namespace {

namespace v1 = padlock::v1;

absl::StatusOr<DeviceRef> ToDevice(const v1::DeviceAddress& address, const std::string& field) {
  if (!statement::IsValidUserId(address.user_id())) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, ".user_id: not a user id (E.164 or [a-z0-9._-]{3,32})"));
  }
  if (address.device_id() == 0) {
    return absl::InvalidArgumentError(absl::StrCat(field, ".device_id: required (not 0)"));
  }
  return DeviceRef{address.user_id(), address.device_id()};
}

void SetAddress(const SessionClaims& claims, v1::DeviceAddress* out) {
  out->set_user_id(claims.user_id);
  out->set_device_id(claims.device_id);
}

// "ipv4:1.2.3.4:5678" → "ipv4:1.2.3.4"; "ipv6:[::1]:5678" → "ipv6:[::1]". The port changes per
// connection, so buckets are per address.
std::string PeerAddress(const std::string& peer) {
  const size_t colon = peer.rfind(':');
  const size_t scheme = peer.find(':');
  if (colon == std::string::npos || colon == scheme) return peer;
  return peer.substr(0, colon);
}

int64_t UnixMillis(absl::Time t) { return absl::ToUnixMillis(t); }

}  // namespace

GatewayService::GatewayService(Authenticator* auth, KeyDirectoryClient* key_directory,
                               RateLimiter* limiter, runtime::BoundedExecutor* executor,
                               GatewayLimits limits, TurnOptions turn,
                               prometheus::Registry* metrics, StreamHub* streams,
                               PushRegistry* push)
    : auth_(auth),
      key_directory_(key_directory),
      limiter_(limiter),
      executor_(executor),
      limits_(limits),
      turn_(std::move(turn)),
      streams_(streams),
      push_(push) {
  if (metrics != nullptr) {
    relay_latency_ = &prometheus::BuildHistogram()
                          .Name("padlock_gateway_relay_latency_seconds")
                          .Help("Latency of calls relayed to internal services, by rpc name")
                          .Register(*metrics);
    relays_gauge_ = &prometheus::BuildGauge()
                         .Name("padlock_gateway_relays_in_flight")
                         .Help("Key-directory calls started for relays and not yet answered")
                         .Register(*metrics)
                         .Add({});
    address_limited_ = &prometheus::BuildCounter()
                            .Name("padlock_gateway_address_limited_total")
                            .Help("Calls refused by a per-client-address rate limit "
                                  "(RESOURCE_EXHAUSTED with retry-after-ms), by limit: register, "
                                  "challenge, login")
                            .Register(*metrics);
  }
}

grpc::ServerUnaryReactor* GatewayService::Reject(grpc::CallbackServerContext* context,
                                                 const absl::Status& status) {
  return runtime::FinishUnary(context, status);
}

template <typename Work>
grpc::ServerUnaryReactor* GatewayService::Offload(grpc::CallbackServerContext* context,
                                                  Work work) {
  return runtime::OffloadUnary(context, *executor_, "gateway", std::move(work));
}

template <typename Work>
grpc::ServerUnaryReactor* GatewayService::OffloadThenRelay(grpc::CallbackServerContext* context,
                                                           Work work) {
  return runtime::OffloadUnaryReactor(context, *executor_, "gateway", std::move(work));
}

namespace {

// One relay's own state, owned by the call from its start until its completion deletes it.
template <typename Request>
struct RelayCall {
  explicit RelayCall(Request r) : request(std::move(r)) {}
  grpc::ClientContext client;
  const Request request;
  absl::AnyInvocable<absl::Status(absl::Status) &&> then;
  absl::Time start;
};

}  // namespace

template <typename Request, typename Start>
void GatewayService::Relay(grpc::CallbackServerContext* server, grpc::ServerUnaryReactor* reactor,
                           const char* method, Request request, Start start,
                           absl::AnyInvocable<absl::Status(absl::Status) &&> then) {
  const size_t limit = limits_.max_relays_in_flight;
  if (relays_in_flight_.fetch_add(1) >= limit) {
    relays_in_flight_.fetch_sub(1);
    reactor->Finish(runtime::ToGrpcStatus(absl::ResourceExhaustedError(
        absl::StrCat("gateway busy: ", limit, " key-directory calls in flight"))));
    return;
  }
  if (relays_gauge_ != nullptr) relays_gauge_->Increment();
  auto* call = new RelayCall<Request>(std::move(request));
  call->then = std::move(then);
  key_directory_->Prepare(call->client);
  call->start = absl::Now();
  // The completion may run on any gRPC thread, even inline inside `start`: nothing here touches
  // `call` after starting it. It finishes the rpc last, after everything it does with `this`
  // (the server's shutdown waits for that Finish, and only then may the service go away).
  start(&call->client, &call->request, [this, server, reactor, method, call](grpc::Status rpc) {
    if (relay_latency_ != nullptr) {
      static const prometheus::Histogram::BucketBoundaries kBuckets = {
          0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5};
      relay_latency_->Add({{"method", method}}, kBuckets)
          .Observe(absl::ToDoubleSeconds(absl::Now() - call->start));
    }
    const auto& trailers = call->client.GetServerTrailingMetadata();
    if (auto it = trailers.find(kRetryAfterMetadata); it != trailers.end()) {
      server->AddTrailingMetadata(kRetryAfterMetadata,
                                  std::string(it->second.data(), it->second.size()));
    }
    // Transport failures name internal addresses: never pass them to the public caller.
    absl::Status status =
        runtime::FromGrpcStatus(runtime::PublicUpstreamStatus("key-directory", rpc));
    if (call->then) status = std::move(call->then)(std::move(status));
    delete call;
    if (relays_gauge_ != nullptr) relays_gauge_->Decrement();
    relays_in_flight_.fetch_sub(1);
    reactor->Finish(runtime::ToGrpcStatus(status));
  });
}

absl::StatusOr<SessionClaims> GatewayService::Caller(grpc::CallbackServerContext* context) {
  const auto& metadata = context->client_metadata();
  std::optional<std::string_view> header;
  if (auto it = metadata.find("authorization"); it != metadata.end()) {
    header = std::string_view(it->second.data(), it->second.size());
  }
  return auth_->Authenticate(header);
}

absl::Status GatewayService::TakeAddressToken(grpc::CallbackServerContext* context,
                                              const char* what, const RateLimit& limit) {
  const std::string bucket =
      absl::StrCat("gateway:ratelimit:", what, ":{", PeerAddress(context->peer()), "}");
  absl::StatusOr<absl::Duration> wait = limiter_->Take(bucket, limit);
  if (!wait.ok()) return wait.status();
  if (*wait > absl::ZeroDuration()) {
    if (address_limited_ != nullptr) address_limited_->Add({{"limit", what}}).Increment();
    const int64_t ms = std::max<int64_t>(1, absl::ToInt64Milliseconds(*wait));
    context->AddTrailingMetadata(kRetryAfterMetadata, absl::StrCat(ms));
    return absl::ResourceExhaustedError(
        absl::StrCat(what, " rate limit for this address; retry after ", ms, " ms"));
  }
  return absl::OkStatus();
}

grpc::ServerUnaryReactor* GatewayService::Register(grpc::CallbackServerContext* context,
                                                   const v1::RegisterRequest* request,
                                                   v1::RegisterResponse* response) {
  return OffloadThenRelay(context, [this, context, request,
                                    response](grpc::ServerUnaryReactor* reactor) {
    if (absl::Status s = TakeAddressToken(context, "register", limits_.register_per_address);
        !s.ok()) {
      reactor->Finish(runtime::ToGrpcStatus(s));
      return;
    }
    Relay(context, reactor, "Register", *request,
          [this, response](grpc::ClientContext* client, const v1::RegisterRequest* internal,
                           std::function<void(grpc::Status)> done) {
            key_directory_->stub().async()->Register(client, internal, response, std::move(done));
          });
  });
}

grpc::ServerUnaryReactor* GatewayService::GetChallenge(grpc::CallbackServerContext* context,
                                                       const v1::GetChallengeRequest* request,
                                                       v1::GetChallengeResponse* response) {
  absl::StatusOr<DeviceRef> device = ToDevice(request->device(), "device");
  if (!device.ok()) return Reject(context, device.status());
  // The address's token is taken before anything is stored: a refused call costs Redis one
  // script run and no memory beyond the address's bucket.
  return Offload(context, [this, context, device = *std::move(device),
                           response]() -> absl::Status {
    if (absl::Status s =
            TakeAddressToken(context, "challenge", limits_.challenge_per_address);
        !s.ok()) {
      return s;
    }
    absl::StatusOr<Challenge> challenge = auth_->NewChallenge(device);
    if (!challenge.ok()) return challenge.status();
    response->set_challenge(challenge->challenge);
    response->set_expires_at_ms(static_cast<uint64_t>(UnixMillis(challenge->expires_at)));
    response->set_audience(challenge->audience);
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* GatewayService::Login(grpc::CallbackServerContext* context,
                                                const v1::LoginRequest* request,
                                                v1::LoginResponse* response) {
  absl::StatusOr<DeviceRef> device = ToDevice(request->device(), "device");
  if (!device.ok()) return Reject(context, device.status());
  return Offload(context,
                 [this, context, device = *std::move(device), request,
                  response]() -> absl::Status {
                   if (absl::Status s =
                           TakeAddressToken(context, "login", limits_.login_per_address);
                       !s.ok()) {
                     return s;
                   }
                   absl::StatusOr<Session> session =
                       auth_->Login(device, request->challenge(), request->signature());
                   if (!session.ok()) return session.status();
                   response->set_token(session->token);
                   response->set_expires_at_ms(
                       static_cast<uint64_t>(UnixMillis(session->expires_at)));
                   response->set_device_list_version(session->device_list_version);
                   return absl::OkStatus();
                 });
}

grpc::ServerUnaryReactor* GatewayService::PublishDeviceList(
    grpc::CallbackServerContext* context, const v1::GatewayPublishDeviceListRequest* request,
    v1::PublishDeviceListResponse* response) {
  absl::StatusOr<SessionClaims> caller = Caller(context);
  if (!caller.ok()) return Reject(context, caller.status());
  return OffloadThenRelay(context, [this, context, caller = *std::move(caller), request,
                                    response](grpc::ServerUnaryReactor* reactor) {
    if (absl::Status s = auth_->CheckCurrent(caller); !s.ok()) {
      reactor->Finish(runtime::ToGrpcStatus(s));
      return;
    }
    v1::PublishDeviceListRequest internal;
    SetAddress(caller, internal.mutable_caller());
    *internal.mutable_device_list() = request->device_list();
    *internal.mutable_new_device_keys() = request->new_device_keys();
    Relay(context, reactor, "PublishDeviceList", std::move(internal),
          [this, response](grpc::ClientContext* client,
                           const v1::PublishDeviceListRequest* internal,
                           std::function<void(grpc::Status)> done) {
            key_directory_->stub().async()->PublishDeviceList(client, internal, response,
                                                              std::move(done));
          });
  });
}

grpc::ServerUnaryReactor* GatewayService::PublishPreKeys(
    grpc::CallbackServerContext* context, const v1::GatewayPublishPreKeysRequest* request,
    v1::PublishPreKeysResponse* response) {
  absl::StatusOr<SessionClaims> caller = Caller(context);
  if (!caller.ok()) return Reject(context, caller.status());
  return OffloadThenRelay(context, [this, context, caller = *std::move(caller), request,
                                    response](grpc::ServerUnaryReactor* reactor) {
    if (absl::Status s = auth_->CheckListed(caller); !s.ok()) {
      reactor->Finish(runtime::ToGrpcStatus(s));
      return;
    }
    v1::PublishPreKeysRequest internal;
    SetAddress(caller, internal.mutable_device());
    if (request->has_signed_prekey()) {
      *internal.mutable_signed_prekey() = request->signed_prekey();
    }
    *internal.mutable_one_time_prekeys() = request->one_time_prekeys();
    Relay(context, reactor, "PublishPreKeys", std::move(internal),
          [this, response](grpc::ClientContext* client, const v1::PublishPreKeysRequest* internal,
                           std::function<void(grpc::Status)> done) {
            key_directory_->stub().async()->PublishPreKeys(client, internal, response,
                                                           std::move(done));
          });
  });
}

grpc::ServerUnaryReactor* GatewayService::ClaimBundles(
    grpc::CallbackServerContext* context, const v1::GatewayClaimBundlesRequest* request,
    v1::ClaimBundlesResponse* response) {
  absl::StatusOr<SessionClaims> caller = Caller(context);
  if (!caller.ok()) return Reject(context, caller.status());
  // Nothing here blocks (the token is checked above, the listing by the key-directory), so the
  // relay starts right on this callback thread: no executor, no thread waiting for the answer.
  // The CheckListed rule is checked by the key-directory in the claim's own statement (one
  // look-up less per claim): its UNAUTHENTICATED is that.
  v1::ClaimBundlesRequest internal;
  SetAddress(*caller, internal.mutable_requester());
  internal.set_user_id(request->user_id());
  internal.set_device_id(request->device_id());
  internal.set_require_listed_requester(true);
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  Relay(
      context, reactor, "ClaimBundles", std::move(internal),
      [this, response](grpc::ClientContext* client, const v1::ClaimBundlesRequest* internal,
                       std::function<void(grpc::Status)> done) {
        key_directory_->stub().async()->ClaimBundles(client, internal, response, std::move(done));
      },
      [this](absl::Status status) {
        return absl::IsUnauthenticated(status) ? auth_->RefuseUnlisted() : status;
      });
  return reactor;
}

grpc::ServerUnaryReactor* GatewayService::GetDeviceList(grpc::CallbackServerContext* context,
                                                        const v1::GetDeviceListRequest* request,
                                                        v1::GetDeviceListResponse* response) {
  absl::StatusOr<SessionClaims> caller = Caller(context);
  if (!caller.ok()) return Reject(context, caller.status());
  return OffloadThenRelay(context, [this, context, caller = *std::move(caller), request,
                                    response](grpc::ServerUnaryReactor* reactor) {
    if (absl::Status s = auth_->CheckListed(caller); !s.ok()) {
      reactor->Finish(runtime::ToGrpcStatus(s));
      return;
    }
    Relay(context, reactor, "GetDeviceList", *request,
          [this, response](grpc::ClientContext* client, const v1::GetDeviceListRequest* internal,
                           std::function<void(grpc::Status)> done) {
            key_directory_->stub().async()->GetDeviceList(client, internal, response,
                                                          std::move(done));
          });
  });
}

grpc::ServerUnaryReactor* GatewayService::ChangeIdentity(
    grpc::CallbackServerContext* context, const v1::GatewayChangeIdentityRequest* request,
    v1::ChangeIdentityResponse* response) {
  absl::StatusOr<SessionClaims> caller = Caller(context);
  if (!caller.ok()) return Reject(context, caller.status());
  return OffloadThenRelay(context, [this, context, caller = *std::move(caller), request,
                                    response](grpc::ServerUnaryReactor* reactor) {
    if (absl::Status s = auth_->CheckCurrent(caller); !s.ok()) {
      reactor->Finish(runtime::ToGrpcStatus(s));
      return;
    }
    v1::ChangeIdentityRequest internal;
    SetAddress(caller, internal.mutable_device());
    internal.set_new_identity_key(request->new_identity_key());
    internal.set_new_registration_id(request->new_registration_id());
    if (request->has_new_signed_prekey()) {
      *internal.mutable_new_signed_prekey() = request->new_signed_prekey();
    }
    *internal.mutable_new_one_time_prekeys() = request->new_one_time_prekeys();
    internal.set_change_signature(request->change_signature());
    if (request->has_device_list()) {
      *internal.mutable_device_list() = request->device_list();
    }
    Relay(context, reactor, "ChangeIdentity", std::move(internal),
          [this, response](grpc::ClientContext* client, const v1::ChangeIdentityRequest* internal,
                           std::function<void(grpc::Status)> done) {
            key_directory_->stub().async()->ChangeIdentity(client, internal, response,
                                                           std::move(done));
          });
  });
}

grpc::ServerUnaryReactor* GatewayService::DeleteAccount(
    grpc::CallbackServerContext* context, const v1::GatewayDeleteAccountRequest* /*request*/,
    v1::DeleteAccountResponse* response) {
  absl::StatusOr<SessionClaims> caller = Caller(context);
  if (!caller.ok()) return Reject(context, caller.status());
  return OffloadThenRelay(context, [this, context, caller = *std::move(caller),
                                    response](grpc::ServerUnaryReactor* reactor) {
    if (absl::Status s = auth_->CheckCurrent(caller); !s.ok()) {
      reactor->Finish(runtime::ToGrpcStatus(s));
      return;
    }
    v1::DeleteAccountRequest internal;
    SetAddress(caller, internal.mutable_caller());
    Relay(
        context, reactor, "DeleteAccount", std::move(internal),
        [this, response](grpc::ClientContext* client, const v1::DeleteAccountRequest* internal,
                         std::function<void(grpc::Status)> done) {
          key_directory_->stub().async()->DeleteAccount(client, internal, response,
                                                        std::move(done));
        },
        [user = caller.user_id](absl::Status status) {
          if (status.ok()) {
            runtime::LogInfo("account deleted", {{"user", runtime::HashUserId(user)}});
          }
          return status;
        });
  });
}

grpc::ServerUnaryReactor* GatewayService::GetTurnCredentials(
    grpc::CallbackServerContext* context, const v1::GetTurnCredentialsRequest* /*request*/,
    v1::GetTurnCredentialsResponse* response) {
  absl::StatusOr<SessionClaims> caller = Caller(context);
  if (!caller.ok()) return Reject(context, caller.status());
  return Offload(context, [this, caller = *std::move(caller), response]() -> absl::Status {
    if (absl::Status s = auth_->CheckListed(caller); !s.ok()) return s;
    absl::StatusOr<TurnCredentials> credentials =
        MakeTurnCredentials(turn_, runtime::HashUserId(caller.user_id), absl::Now());
    if (!credentials.ok()) return credentials.status();
    response->set_username(credentials->username);
    response->set_password(credentials->password);
    for (const std::string& url : credentials->urls) response->add_urls(url);
    response->set_ttl_seconds(credentials->ttl_seconds);
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* GatewayService::SetPushSubscription(
    grpc::CallbackServerContext* context, const v1::SetPushSubscriptionRequest* request,
    v1::SetPushSubscriptionResponse* response) {
  absl::StatusOr<SessionClaims> caller = Caller(context);
  if (!caller.ok()) return Reject(context, caller.status());
  if (push_ == nullptr) {
    return Reject(context, absl::FailedPreconditionError("push not configured"));
  }
  if (!request->has_subscription()) {
    return Reject(context, absl::InvalidArgumentError("subscription: required"));
  }
  // The host's resolution (DNS) blocks: the executor's thread waits for it, not gRPC's.
  return Offload(context, [this, caller = *std::move(caller), request,
                           response]() -> absl::Status {
    if (absl::Status s = auth_->CheckListed(caller); !s.ok()) return s;
    const v1::PushSubscription& in = request->subscription();
    if (absl::Status s = push_->Register(DeviceRef{caller.user_id, caller.device_id},
                                         PushSubscription{in.endpoint(), in.p256dh(), in.auth()});
        !s.ok()) {
      return s;
    }
    response->set_ttl_seconds(static_cast<uint32_t>(absl::ToInt64Seconds(push_->ttl())));
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* GatewayService::DeletePushSubscription(
    grpc::CallbackServerContext* context, const v1::DeletePushSubscriptionRequest* /*request*/,
    v1::DeletePushSubscriptionResponse* /*response*/) {
  absl::StatusOr<SessionClaims> caller = Caller(context);
  if (!caller.ok()) return Reject(context, caller.status());
  if (push_ == nullptr) {
    return Reject(context, absl::FailedPreconditionError("push not configured"));
  }
  // No CheckListed: an unlisted device has no subscription left to remove, and removing
  // nothing is harmless.
  return Offload(context, [this, caller = *std::move(caller)]() -> absl::Status {
    return push_->Remove(DeviceRef{caller.user_id, caller.device_id});
  });
}

grpc::ServerUnaryReactor* GatewayService::GetPushConfig(
    grpc::CallbackServerContext* context, const v1::GetPushConfigRequest* /*request*/,
    v1::GetPushConfigResponse* response) {
  // Token checked, nothing blocking: answered on the callback thread.
  absl::StatusOr<SessionClaims> caller = Caller(context);
  if (!caller.ok()) return Reject(context, caller.status());
  absl::StatusOr<std::string> key =
      push_ == nullptr ? absl::FailedPreconditionError("push not configured")
                       : push_->VapidPublicKey();
  if (!key.ok()) return Reject(context, key.status());
  response->set_vapid_public_key(*std::move(key));
  return runtime::FinishUnary(context, absl::OkStatus());
}

grpc::ServerBidiReactor<v1::ClientFrame, v1::ServerFrame>* GatewayService::Connect(
    grpc::CallbackServerContext* context) {
  if (streams_ == nullptr) {
    return MakeRejectedStream(
        grpc::Status(grpc::StatusCode::UNIMPLEMENTED, "this gateway serves no device streams"));
  }
  return streams_->Connect(context, Caller(context));
}

}  // namespace padlock::gateway
