// padlock-gateway: composition root only (config → adapters → service → serve → drain).
#include <memory>

#include "services/common/ratelimit/redis_rate_limiter.h"
#include "services/common/redis/redis_client.h"
#include "services/common/runtime/config.h"
#include "services/common/runtime/executor.h"
#include "services/common/runtime/logging.h"
#include "services/common/runtime/server.h"
#include "services/common/wiring/wiring.h"
#include "services/gateway/authenticator.h"
#include "services/gateway/stream_hub.h"
#include "services/gateway/gateway_config.h"
#include "services/gateway/gateway_service.h"
#include "services/gateway/key_directory_client.h"
#include "services/gateway/redis_adapters.h"
#include "services/gateway/session_token.h"

namespace runtime = padlock::runtime;
namespace wiring = padlock::wiring;
namespace gateway = padlock::gateway;

int main() {
  auto config = runtime::Config::FromEnvironment();
  runtime::InitLoggingFromConfig(config, "gateway");
  // The public edge: long-lived device streams, so no max connection age by default.
  runtime::ServerOptions options = runtime::ServerOptionsFromConfig(config, "gateway", 7400, 9400);
  // The gateway accepts its connections itself: caps, a handshake deadline, EMFILE recovery.
  options.admission = runtime::AdmissionOptionsFromConfig(config);
  gateway::GatewaySettings settings = gateway::GatewaySettingsFromConfig(config);
  // The public port is TLS for devices (PADLOCK_TLS); the internal channels are mutual TLS.
  const runtime::InternalTls internal_tls = runtime::InternalTlsFromConfig(config);
  const std::string key_directory_target =
      wiring::TargetFromConfig(config, "KEY_DIRECTORY", "dns:///127.0.0.1:7430");
  const std::string message_queue_target =
      wiring::TargetFromConfig(config, "MESSAGE_QUEUE", "dns:///127.0.0.1:7420");
  const std::string presence_target =
      wiring::TargetFromConfig(config, "PRESENCE", "dns:///127.0.0.1:7410");
  const absl::Duration dependency_timeout = config.Duration(
      "PADLOCK_DEPENDENCY_TIMEOUT", absl::Seconds(1), absl::Milliseconds(10), absl::Minutes(1));
  if (settings.tls) {
    grpc::SslServerCredentialsOptions tls;
    tls.pem_key_cert_pairs.push_back({settings.tls_key_pem, settings.tls_cert_pem});
    options.credentials = grpc::SslServerCredentials(tls);
  }
  runtime::ServiceRunner runner(options);
  padlock::redis::RedisOptions redis_options =
      wiring::RedisOptionsFromConfig(config, &runner.metrics());
  runtime::ExitIfInvalid(config);
  if (!settings.tls) {
    runtime::LogWarn("PADLOCK_TLS=off: the public port serves plaintext (local runs and tests, "
                     "or behind a TLS-terminating balancer, only)");
  }

  auto redis = padlock::redis::RedisClient::Create(std::move(redis_options));
  if (!redis.ok()) {
    runtime::LogError("adapter set-up failed", {{"error", redis.status()}});
    return 1;
  }
  auto key_directory =
      wiring::MakeInternalChannel(key_directory_target, internal_tls, "key-directory");
  auto message_queue =
      wiring::MakeInternalChannel(message_queue_target, internal_tls, "message-queue");
  auto presence = wiring::MakeInternalChannel(presence_target, internal_tls, "presence");

  gateway::SessionTokens tokens(settings.token_secret, settings.token_secret_previous);
  gateway::RedisChallengeStore challenges(redis->get());
  padlock::ratelimit::RedisRateLimiter limiter(redis->get());
  gateway::KeyDirectoryClient key_directory_client(key_directory, settings.key_directory_deadline);
  gateway::Authenticator authenticator(&challenges, &key_directory_client, &tokens, settings.auth,
                                       &runner.metrics());
  runtime::BoundedExecutor executor("gateway", settings.workers, settings.queue);
  gateway::SystemHostResolver resolver;
  gateway::RedisPushSubscriptionStore push_store(redis->get());
  gateway::PushRegistry push(settings.push, &resolver, &push_store, &runner.metrics());
  gateway::StreamHub streams(settings.streams, &authenticator, redis->get(), message_queue,
                             presence, &executor, &runner.metrics(), &push);
  gateway::GatewayService service(&authenticator, &key_directory_client, &limiter, &executor,
                                  settings.limits, settings.turn, &runner.metrics(), &streams,
                                  &push);
  const bool has_previous = !settings.token_secret_previous.empty();
  if (!settings.push.allowed_hosts.empty()) {
    runtime::LogWarn("PADLOCK_PUSH_ALLOWED_HOSTS is set: push subscriptions to these hosts skip "
                     "the private-address rule (local runs and tests only)",
                     {{"hosts", static_cast<int64_t>(settings.push.allowed_hosts.size())}});
  }
  runtime::LogInfo("session tokens",
                   {{"key_id", tokens.current_key_id()}, {"previous_secret", has_previous}});

  // Frames up to the transport limit reach the service, which refuses oversize sends on the
  // stream; keepalive pings drop clients that stopped answering.
  grpc::ServerBuilder& builder = runner.builder();
  builder.SetMaxReceiveMessageSize(static_cast<int>(settings.streams.max_frame_bytes));
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIME_MS,
                             static_cast<int>(absl::ToInt64Milliseconds(settings.keepalive_time)));
  builder.AddChannelArgument(
      GRPC_ARG_KEEPALIVE_TIMEOUT_MS,
      static_cast<int>(absl::ToInt64Milliseconds(settings.keepalive_timeout)));
  // (Clients' own pings between calls are accepted by every service: runtime::ServiceRunner.)
  builder.AddChannelArgument(GRPC_ARG_HTTP2_MAX_PINGS_WITHOUT_DATA, 0);
  // No HTTP/2 bandwidth-delay probes: device streams carry small frames, so the window never
  // needs to grow, and each probe is a ping plus window updates on every busy connection —
  // about a third of the gateway's syscalls per envelope in chat-1k (docs/PERFORMANCE.md).
  builder.AddChannelArgument(GRPC_ARG_HTTP2_BDP_PROBE, 0);

  runner.AddService(&service);
  runner.AddReadinessCheck("redis", [&] { return wiring::CheckRedis(**redis); });
  runner.AddReadinessCheck("key-directory", [&] {
    return wiring::CheckGrpcDependency(key_directory, "key-directory", dependency_timeout);
  });
  runner.AddReadinessCheck("message-queue", [&] {
    return wiring::CheckGrpcDependency(message_queue, "message-queue", dependency_timeout);
  });
  runner.AddReadinessCheck("presence", [&] {
    return wiring::CheckGrpcDependency(presence, "presence", dependency_timeout);
  });
  // SIGTERM: streams are told to reconnect elsewhere; sends in flight are answered and acks
  // flushed before the server stops.
  runner.AddDrainHook([&](absl::Time deadline) { streams.Drain(deadline); });
  if (absl::Status s = streams.Start(); !s.ok()) {
    runtime::LogError("stream hub start failed", {{"error", s}});
    return 1;
  }
  if (absl::Status s = runner.Start(); !s.ok()) {
    runtime::LogError("start failed", {{"error", s}});
    return 1;
  }
  runner.Wait();
  streams.Stop();
  executor.Shutdown();
  return 0;
}
