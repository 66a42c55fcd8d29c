#pragma once
// Composition helpers shared by the service main()s: environment → Redis / PostgreSQL options,
// internal gRPC channels, and the readiness checks built on them. Only main.cpp files and
// integration tests include this; logic never does.
//
// Environment variables (documented in docs/OPERATIONS.md):
//   PADLOCK_REDIS_ADDRS        comma-separated host:port seeds (default 127.0.0.1:6379)
//   PADLOCK_REDIS_MODE         standalone | cluster (default standalone)
//   PADLOCK_REDIS_POOL_SIZE    connections per Redis node (default 4)
//   PADLOCK_REDIS_TIMEOUT      command timeout (default 2s)
//   PADLOCK_REDIS_PASSWORD     AUTH password (default none; never logged)
//   PADLOCK_POSTGRES_*         see docs/POSTGRES.md ("Environment variables")
//   PADLOCK_<NAME>_TARGET      gRPC target of an internal service, e.g.
//                              dns:///message-queue:7420 (round-robin over every address)

#include <grpcpp/channel.h>

#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "services/common/postgres/migrations.h"
#include "services/common/postgres/pool.h"
#include "services/common/redis/redis_client.h"
#include "services/common/redis/redis_options.h"
#include "services/common/runtime/config.h"
#include "services/common/runtime/internal_tls.h"

namespace prometheus {
class Registry;
}  // namespace prometheus

namespace padlock::wiring {

// Reads PADLOCK_REDIS_*; errors are recorded in `config`. `metrics` may be null.
redis::RedisOptions RedisOptionsFromConfig(runtime::Config& config, prometheus::Registry* metrics);

// What a PostgreSQL-backed service needs at start-up.
struct PostgresSettings {
  postgres::PoolOptions pool;
  postgres::MigrateOptions migrate;
  bool run_migrations = true;  // false when a separate job migrates (PADLOCK_POSTGRES_MIGRATE)
  // How long start-up waits for PostgreSQL to become reachable (PADLOCK_POSTGRES_STARTUP_TIMEOUT).
  absl::Duration startup_timeout = absl::Seconds(60);
};

// Reads PADLOCK_POSTGRES_* (the DSN is required); errors are recorded in `config`. `metrics` may
// be null.
PostgresSettings PostgresSettingsFromConfig(runtime::Config& config,
                                            prometheus::Registry* metrics);

// Reads PADLOCK_<name>_TARGET (e.g. name "MESSAGE_QUEUE"), default `default_target`.
std::string TargetFromConfig(runtime::Config& config, std::string_view name,
                             std::string_view default_target);

// A channel to an internal service with client-side round-robin over every address the target
// resolves to (headless Services on Kubernetes) and keepalives, so that a replica that vanishes
// is noticed and new replicas get traffic after their max connection age. Mutual TLS with `tls`
// (runtime/internal_tls.h): the server's certificate must name `server_name` ("key-directory")
// as a DNS SAN, whatever address the target resolves to. Plaintext when tls.insecure.
std::shared_ptr<grpc::Channel> MakeInternalChannel(const std::string& target,
                                                   const runtime::InternalTls& tls,
                                                   std::string_view server_name);

// Readiness: every Redis master answers PING with PONG within the client's command timeout (an
// error reply such as LOADING, while Redis reads its AOF, is Unavailable).
absl::Status CheckRedis(redis::RedisClient& client);

// Readiness: the internal service behind `channel` reports SERVING for "" within `timeout`.
// Unavailable naming `name` otherwise.
absl::Status CheckGrpcDependency(const std::shared_ptr<grpc::Channel>& channel,
                                 std::string_view name, absl::Duration timeout);

}  // namespace padlock::wiring
