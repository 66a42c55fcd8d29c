#include "services/common/wiring/wiring.h"

#include <grpcpp/create_channel.h>
#include <grpcpp/security/credentials.h>
#include <grpcpp/support/channel_arguments.h>

#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "services/common/runtime/health_client.h"

namespace padlock::wiring {

redis::RedisOptions RedisOptionsFromConfig(runtime::Config& config, prometheus::Registry* metrics) {
  redis::RedisOptions options;
  const std::string addrs = config.String("PADLOCK_REDIS_ADDRS", "127.0.0.1:6379");
  for (absl::string_view part : absl::StrSplit(addrs, ',', absl::SkipWhitespace())) {
    std::string addr(absl::StripAsciiWhitespace(part));
    auto colon = addr.rfind(':');
    int port = 0;
    if (colon == std::string::npos || colon == 0 ||
        !absl::SimpleAtoi(addr.substr(colon + 1), &port) || port < 1 || port > 65535) {
      config.AddError("PADLOCK_REDIS_ADDRS", absl::StrCat("not host:port: '", addr, "'"));
      continue;
    }
    options.addresses.push_back(addr);
  }
  if (options.addresses.empty()) {
    config.AddError("PADLOCK_REDIS_ADDRS", "needs at least one host:port");
  }
  options.mode = config.OneOf("PADLOCK_REDIS_MODE", "standalone", {"standalone", "cluster"}) ==
                         "cluster"
                     ? redis::RedisMode::kCluster
                     : redis::RedisMode::kStandalone;
  options.pool_size = static_cast<int>(config.Int("PADLOCK_REDIS_POOL_SIZE", 4, 1, 256));
  options.command_timeout = config.Duration("PADLOCK_REDIS_TIMEOUT", absl::Seconds(2),
                                            absl::Milliseconds(10), absl::Minutes(1));
  options.password = config.String("PADLOCK_REDIS_PASSWORD", "");
  options.metrics = metrics;
  return options;
}

PostgresSettings PostgresSettingsFromConfig(runtime::Config& config,
                                            prometheus::Registry* metrics) {
  PostgresSettings settings;
  if (!config.Has("PADLOCK_POSTGRES_DSN")) {
    config.AddError("PADLOCK_POSTGRES_DSN", "required (a libpq connection string)");
  }
  const std::string dsn = config.String("PADLOCK_POSTGRES_DSN", "");
  settings.pool.conninfo = dsn;
  settings.pool.size = static_cast<int>(config.Int("PADLOCK_POSTGRES_POOL_SIZE", 8, 1, 512));
  settings.pool.acquire_timeout = config.Duration("PADLOCK_POSTGRES_ACQUIRE_TIMEOUT",
                                                  absl::Seconds(2), absl::Milliseconds(1),
                                                  absl::Minutes(10));
  settings.pool.statement_timeout = config.Duration("PADLOCK_POSTGRES_STATEMENT_TIMEOUT",
                                                    absl::Seconds(5), absl::ZeroDuration(),
                                                    absl::Hours(1));
  settings.pool.connect_timeout = config.Duration("PADLOCK_POSTGRES_CONNECT_TIMEOUT",
                                                  absl::Seconds(5), absl::Seconds(1),
                                                  absl::Minutes(10));
  settings.pool.metrics = metrics;
  settings.migrate.conninfo = dsn;
  settings.migrate.connect_timeout = settings.pool.connect_timeout;
  settings.migrate.timeout = config.Duration("PADLOCK_POSTGRES_MIGRATE_TIMEOUT", absl::Minutes(10),
                                             absl::ZeroDuration(), absl::Hours(24));
  settings.run_migrations = config.Bool("PADLOCK_POSTGRES_MIGRATE", true);
  settings.startup_timeout = config.Duration("PADLOCK_POSTGRES_STARTUP_TIMEOUT", absl::Seconds(60),
                                             absl::Seconds(1), absl::Hours(1));
  return settings;
}

std::string TargetFromConfig(runtime::Config& config, std::string_view name,
                             std::string_view default_target) {
  return config.String(absl::StrCat("PADLOCK_", std::string(name), "_TARGET"), default_target);
}

std::shared_ptr<grpc::Channel> MakeInternalChannel(const std::string& target,
                                                   const runtime::InternalTls& tls,
                                                   std::string_view server_name) {
  grpc::ChannelArguments args;
  // Verify the server by the service it must be, not by the address dialled (an IP from DNS
  // round-robin, a Kubernetes Service name).
  if (!tls.insecure) args.SetSslTargetNameOverride(std::string(server_name));
  args.SetLoadBalancingPolicyName("round_robin");
  args.SetInt(GRPC_ARG_KEEPALIVE_TIME_MS, 30'000);
  args.SetInt(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, 10'000);
  args.SetInt(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  return grpc::CreateCustomChannel(target, runtime::InternalChannelCredentials(tls), args);
}

absl::Status CheckRedis(redis::RedisClient& client) {
  for (const auto& node : client.ExecuteOnEachMaster(redis::Command::Keyless({"PING"}))) {
    if (!node.reply.ok()) return node.reply.status();
    // An answer is not readiness: a Redis still loading its AOF answers "-LOADING …" (and one
    // that wants a password "-NOAUTH …"), and every command would fail the same way.
    if (node.reply->is_error()) {
      return absl::UnavailableError(absl::StrCat("redis not ready: ", node.reply->str()));
    }
  }
  return absl::OkStatus();
}

absl::Status CheckGrpcDependency(const std::shared_ptr<grpc::Channel>& channel,
                                 std::string_view name, absl::Duration timeout) {
  absl::StatusOr<runtime::HealthState> state = runtime::CheckHealth(channel, "", timeout);
  if (!state.ok()) {
    return absl::UnavailableError(
        absl::StrCat(std::string(name), " unreachable: ", state.status().message()));
  }
  if (*state != runtime::HealthState::kServing) {
    return absl::UnavailableError(absl::StrCat(
        std::string(name), " is ", std::string(runtime::HealthStateName(*state))));
  }
  return absl::OkStatus();
}

}  // namespace padlock::wiring
