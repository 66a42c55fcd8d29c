// padlock-key-directory: composition root only (config → adapters → service → serve → drain).
#include <memory>
#include <thread>

#include "absl/time/clock.h"
#include "services/common/postgres/migrations.h"
#include "services/common/postgres/pool.h"
#include "services/common/redis/redis_client.h"
#include "services/common/runtime/config.h"
#include "services/common/runtime/logging.h"
#include "services/common/runtime/server.h"
#include "services/common/wiring/wiring.h"
#include "services/key_directory/embedded_migrations.h"
#include "services/key_directory/key_directory_service.h"

namespace runtime = padlock::runtime;

int main() {
  auto config = runtime::Config::FromEnvironment();
  runtime::InitLoggingFromConfig(config, "key-directory");
  runtime::ServerOptions options = runtime::ServerOptionsFromConfig(
      config, "key-directory", 7430, 9430, /*default_max_connection_age=*/absl::Minutes(5));
  runtime::ServiceRunner runner(options);
  padlock::redis::RedisOptions redis_options =
      padlock::wiring::RedisOptionsFromConfig(config, &runner.metrics());
  padlock::wiring::PostgresSettings pg =
      padlock::wiring::PostgresSettingsFromConfig(config, &runner.metrics());
  runtime::ExitIfInvalid(config);

  // Migrations first, under the advisory lock (replicas may start together). PostgreSQL may still
  // be starting (compose, Kubernetes): retry Unavailable until the start-up timeout.
  const absl::Time give_up = absl::Now() + pg.startup_timeout;
  while (pg.run_migrations) {
    auto migrated =
        padlock::postgres::Migrate(pg.migrate, padlock::key_directory::EmbeddedMigrations());
    if (migrated.ok()) {
      runtime::LogInfo("schema migrated",
                       {{"previous_version", migrated->previous_version},
                        {"current_version", migrated->current_version},
                        {"applied", static_cast<int64_t>(migrated->applied.size())}});
      break;
    }
    if (!absl::IsUnavailable(migrated.status()) || absl::Now() >= give_up) {
      runtime::LogError("migration failed", {{"error", migrated.status()}});
      return 1;
    }
    runtime::LogWarn("postgres not reachable yet, retrying", {{"error", migrated.status()}});
    std::this_thread::sleep_for(std::chrono::seconds(1));
  }

  auto pool = padlock::postgres::Pool::Create(std::move(pg.pool));
  auto redis = padlock::redis::RedisClient::Create(std::move(redis_options));
  if (!pool.ok() || !redis.ok()) {
    runtime::LogError("adapter set-up failed",
                      {{"error", pool.ok() ? redis.status() : pool.status()}});
    return 1;
  }

  padlock::key_directory::KeyDirectoryService service;
  padlock::key_directory::KeyDirectoryAdminService admin;
  runner.AddService(&service);
  runner.AddService(&admin);
  runner.AddReadinessCheck("postgres", [&] { return (*pool)->Ping(); });
  runner.AddReadinessCheck("redis", [&] { return padlock::wiring::CheckRedis(**redis); });
  if (absl::Status s = runner.Start(); !s.ok()) {
    runtime::LogError("start failed", {{"error", s}});
    return 1;
  }
  runner.Wait();
  return 0;
}
