// padlock-presence: composition root only (config → adapters → service → serve → drain).
#include <unistd.h>

#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "services/common/redis/redis_client.h"
#include "services/common/runtime/config.h"
#include "services/common/runtime/executor.h"
#include "services/common/runtime/logging.h"
#include "services/common/runtime/server.h"
#include "services/common/wiring/wiring.h"
#include "services/presence/presence_config.h"
#include "services/presence/presence_registry.h"
#include "services/presence/presence_service.h"
#include "services/presence/presence_sweeper.h"
#include "services/presence/redis_event_publisher.h"
#include "services/presence/redis_presence_store.h"

namespace runtime = padlock::runtime;
namespace presence = padlock::presence;

int main() {
  auto config = runtime::Config::FromEnvironment();
  runtime::InitLoggingFromConfig(config, "presence");
  runtime::ServerOptions options = runtime::ServerOptionsFromConfig(
      config, "presence", 7410, 9410, /*default_max_connection_age=*/absl::Minutes(5));
  // Only gateways report connections and subscribe.
  options.internal_tls = runtime::InternalTlsFromConfig(config);
  options.callers = {{"padlock.v1.Presence", {runtime::ServiceIdentity("gateway")}}};
  runtime::ServiceRunner runner(options);
  padlock::redis::RedisOptions redis_options =
      padlock::wiring::RedisOptionsFromConfig(config, &runner.metrics());
  presence::PresenceSettings settings = presence::PresenceSettingsFromConfig(config);
  runtime::ExitIfInvalid(config);

  auto redis = padlock::redis::RedisClient::Create(std::move(redis_options));
  if (!redis.ok()) {
    runtime::LogError("adapter set-up failed", {{"error", redis.status()}});
    return 1;
  }
  char host[256] = {};
  gethostname(host, sizeof(host) - 1);
  settings.options.replica_id = absl::StrCat(host, ":", getpid());

  presence::RedisPresenceStore store(redis->get(), settings.timings);
  presence::RedisEventPublisher publisher(redis->get());
  runtime::SystemClock clock;
  presence::PresenceRegistry registry(settings.options, &store, &publisher, &clock,
                                      &runner.metrics());
  // Redis calls run here, never on gRPC callback threads.
  runtime::BoundedExecutor executor("presence", settings.workers, settings.queue);
  presence::PresenceService service(&registry, &executor, settings.limits);
  runner.AddService(&service);
  runner.AddReadinessCheck("redis", [&] { return padlock::wiring::CheckRedis(**redis); });
  if (absl::Status s = runner.Start(); !s.ok()) {
    runtime::LogError("start failed", {{"error", s}});
    return 1;
  }
  presence::PresenceSweeper sweeper(&registry, settings.sweep_interval);
  runner.Wait();
  sweeper.Stop();
  executor.Shutdown();
  return 0;
}
