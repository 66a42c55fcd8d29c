// padlock-key-directory: composition root only (config → adapters → service → serve → drain).
#include <memory>
#include <string>
#include <thread>

#include "absl/time/clock.h"
#include "services/common/postgres/migrations.h"
#include "services/common/postgres/pool.h"
#include "services/common/ratelimit/redis_rate_limiter.h"
#include "services/common/redis/redis_client.h"
#include "services/common/runtime/executor.h"
#include "services/common/runtime/config.h"
#include "services/common/runtime/logging.h"
#include "services/common/runtime/server.h"
#include "services/common/wiring/wiring.h"
#include "services/key_directory/embedded_migrations.h"
#include "services/key_directory/key_directory_service.h"
#include "services/key_directory/key_registry.h"
#include "services/key_directory/postgres_key_store.h"
#include "services/key_directory/redis_adapters.h"

namespace runtime = padlock::runtime;

int main() {
  auto config = runtime::Config::FromEnvironment();
  runtime::InitLoggingFromConfig(config, "key-directory");
  runtime::ServerOptions options = runtime::ServerOptionsFromConfig(
      config, "key-directory", 7430, 9430, /*default_max_connection_age=*/absl::Minutes(5));
  // Look-ups from the gateway (relays, token checks) and the message-queue (device lists); the
  // operator surface only on its own port, only for operator certificates.
  runtime::AdminPortFromConfig(config, options, 7431);
  options.internal_tls = runtime::InternalTlsFromConfig(config);
  options.callers = {{"padlock.v1.KeyDirectory",
                      {runtime::ServiceIdentity("gateway"),
                       runtime::ServiceIdentity("message-queue")}}};
  options.admin_callers = {
      {"padlock.v1.KeyDirectoryAdmin", {std::string(runtime::kAnyOperator)}}};
  runtime::ServiceRunner runner(options);
  padlock::redis::RedisOptions redis_options =
      padlock::wiring::RedisOptionsFromConfig(config, &runner.metrics());
  padlock::wiring::PostgresSettings pg =
      padlock::wiring::PostgresSettingsFromConfig(config, &runner.metrics());
  pg.pool.statements = padlock::key_directory::PostgresKeyStore::Statements();
  // Look-ups (GetDeviceList(s), GetIdentityKey) may go to a read replica; see KEY_DIRECTORY.md.
  const std::string read_dsn = config.String("PADLOCK_POSTGRES_READ_DSN", "");
  padlock::key_directory::RegistryOptions registry_options;
  const std::string policy = config.String("PADLOCK_REGISTRATION_POLICY", "open");
  if (policy == "invite") {
    registry_options.policy = padlock::key_directory::RegistrationPolicy::kInvite;
  } else if (policy != "open") {
    config.AddError("PADLOCK_REGISTRATION_POLICY", "must be \"open\" or \"invite\"");
  }
  registry_options.max_devices =
      static_cast<uint32_t>(config.Int("PADLOCK_MAX_DEVICES", 5, 1, 100));
  registry_options.prekeys_low_threshold =
      static_cast<uint32_t>(config.Int("PADLOCK_PREKEYS_LOW_THRESHOLD", 10, 0, 1000));
  constexpr int64_t kMaxRate = 1000000;
  registry_options.claims_per_requester = {
      .burst = static_cast<double>(
          config.Int("PADLOCK_CLAIMS_PER_REQUESTER_BURST", 120, 1, kMaxRate)),
      .per_second = static_cast<double>(
          config.Int("PADLOCK_CLAIMS_PER_REQUESTER_PER_SECOND", 2, 1, kMaxRate))};
  registry_options.claims_per_target = {
      .burst = static_cast<double>(config.Int("PADLOCK_CLAIMS_PER_TARGET_BURST", 60, 1, kMaxRate)),
      .per_second = static_cast<double>(
          config.Int("PADLOCK_CLAIMS_PER_TARGET_PER_SECOND", 1, 1, kMaxRate))};
  registry_options.default_invite_ttl =
      config.Duration("PADLOCK_INVITE_DEFAULT_TTL", absl::Hours(24 * 7));
  const int workers = static_cast<int>(
      config.Int("PADLOCK_KEY_DIRECTORY_WORKERS", pg.pool.size, 1, 1024));
  const int queue = static_cast<int>(config.Int("PADLOCK_KEY_DIRECTORY_QUEUE", 1024, 1, 1000000));
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

  padlock::postgres::PoolOptions read_options = pg.pool;
  read_options.conninfo = read_dsn;
  read_options.metrics = nullptr;  // one latency family per process (the primary's)
  auto pool = padlock::postgres::Pool::Create(std::move(pg.pool));
  auto redis = padlock::redis::RedisClient::Create(std::move(redis_options));
  if (!pool.ok() || !redis.ok()) {
    runtime::LogError("adapter set-up failed",
                      {{"error", pool.ok() ? redis.status() : pool.status()}});
    return 1;
  }
  std::unique_ptr<padlock::postgres::Pool> read_pool;
  if (!read_dsn.empty()) {
    auto created = padlock::postgres::Pool::Create(std::move(read_options));
    if (!created.ok()) {
      runtime::LogError("read pool set-up failed", {{"error", created.status()}});
      return 1;
    }
    read_pool = *std::move(created);
  }

  // Declared before the services so that it outlives them; the runner's drain finishes every
  // call before Wait() returns, then the executor joins its (idle) workers.
  runtime::BoundedExecutor executor("key-directory", workers, static_cast<size_t>(queue));
  padlock::key_directory::PostgresKeyStore store(pool->get(), read_pool.get());
  padlock::key_directory::RedisInviteStore invites(redis->get());
  padlock::ratelimit::RedisRateLimiter limiter(redis->get());
  padlock::key_directory::RedisDeviceEventPublisher publisher(redis->get());
  // The message-queue trusts these summaries: every device-list change goes through them.
  padlock::key_directory::RedisDeviceListSummaries summaries(redis->get(), {});
  padlock::key_directory::KeyRegistry registry(&store, &invites, &limiter, &publisher,
                                               &summaries, registry_options, &runner.metrics());
  padlock::key_directory::KeyDirectoryService service(&registry, &executor);
  padlock::key_directory::KeyDirectoryAdminService admin(&registry, &executor);
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
