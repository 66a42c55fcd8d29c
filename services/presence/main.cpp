// padlock-presence: composition root only (config → adapters → service → serve → drain).
#include <memory>

#include "services/common/redis/redis_client.h"
#include "services/common/runtime/config.h"
#include "services/common/runtime/logging.h"
#include "services/common/runtime/server.h"
#include "services/common/wiring/wiring.h"
#include "services/presence/presence_service.h"

namespace runtime = padlock::runtime;

int main() {
  auto config = runtime::Config::FromEnvironment();
  runtime::InitLoggingFromConfig(config, "presence");
  runtime::ServerOptions options = runtime::ServerOptionsFromConfig(
      config, "presence", 7410, 9410, /*default_max_connection_age=*/absl::Minutes(5));
  runtime::ServiceRunner runner(options);
  padlock::redis::RedisOptions redis_options =
      padlock::wiring::RedisOptionsFromConfig(config, &runner.metrics());
  runtime::ExitIfInvalid(config);

  auto redis = padlock::redis::RedisClient::Create(std::move(redis_options));
  if (!redis.ok()) {
    runtime::LogError("adapter set-up failed", {{"error", redis.status()}});
    return 1;
  }

  padlock::presence::PresenceService service;
  runner.AddService(&service);
  runner.AddReadinessCheck("redis", [&] { return padlock::wiring::CheckRedis(**redis); });
  if (absl::Status s = runner.Start(); !s.ok()) {
    runtime::LogError("start failed", {{"error", s}});
    return 1;
  }
  runner.Wait();
  return 0;
}
