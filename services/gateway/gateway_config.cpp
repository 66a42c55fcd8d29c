#include "services/gateway/gateway_config.h"

#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "services/common/runtime/absl_compat.h"

namespace padlock::gateway {
namespace {

std::string Secret(runtime::Config& config, std::string_view variable, bool required) {
  if (!config.Has(variable)) {
    if (required) {
      config.AddError(variable, "required: at least 32 random bytes, hex or base64 "
                                "(e.g. openssl rand -hex 32)");
    }
    return "";
  }
  absl::StatusOr<std::string> secret = ParseTokenSecret(config.String(variable, ""), variable);
  if (!secret.ok()) {
    config.AddError(variable, ToStd(secret.status().message()));
    return "";
  }
  return *std::move(secret);
}

}  // namespace

GatewaySettings GatewaySettingsFromConfig(runtime::Config& config) {
  GatewaySettings s;
  s.token_secret = Secret(config, "PADLOCK_TOKEN_SECRET", /*required=*/true);
  s.token_secret_previous = Secret(config, "PADLOCK_TOKEN_SECRET_PREVIOUS", /*required=*/false);
  s.auth.token_ttl = config.Duration("PADLOCK_TOKEN_TTL", absl::Hours(1), absl::Seconds(10),
                                     absl::Hours(24));
  s.auth.challenge_ttl = config.Duration("PADLOCK_CHALLENGE_TTL", absl::Seconds(60),
                                         absl::Milliseconds(100), absl::Minutes(10));
  s.auth.audience = config.String("PADLOCK_GATEWAY_AUDIENCE", "padlock");
  if (s.auth.audience.empty() || s.auth.audience.size() > 128) {
    config.AddError("PADLOCK_GATEWAY_AUDIENCE", "1 to 128 characters required");
  }
  s.key_directory_deadline = config.Duration("PADLOCK_KEY_DIRECTORY_DEADLINE", absl::Seconds(2),
                                              absl::Milliseconds(10), absl::Minutes(1));
  const double burst = static_cast<double>(config.Int("PADLOCK_REGISTER_BURST", 5, 1, 1000000));
  const absl::Duration refill = config.Duration("PADLOCK_REGISTER_REFILL", absl::Minutes(12),
                                                absl::Microseconds(1), absl::Hours(24 * 7));
  s.limits.register_per_address = {.burst = burst,
                                   .per_second = 1.0 / absl::ToDoubleSeconds(refill)};
  if (config.OneOf("PADLOCK_RATE_LIMIT_PROFILE", "production", {"production", "test"}) ==
      "test") {
    s.limits.register_per_address = {.burst = 1e6, .per_second = 1e6};
  }
  s.turn.secret = config.String("PADLOCK_TURN_SECRET", "");
  const std::string urls = config.String("PADLOCK_TURN_URLS", "");
  for (absl::string_view url : absl::StrSplit(urls, ',', absl::SkipWhitespace())) {
    s.turn.urls.emplace_back(absl::StripAsciiWhitespace(url));
  }
  s.turn.ttl = config.Duration("PADLOCK_TURN_TTL", absl::Hours(1), absl::Minutes(1),
                               absl::Hours(48));
  s.workers = static_cast<int>(config.Int("PADLOCK_GATEWAY_WORKERS", 16, 1, 1024));
  s.queue = static_cast<size_t>(config.Int("PADLOCK_GATEWAY_QUEUE", 4096, 1, 1000000));
  return s;
}

}  // namespace padlock::gateway
