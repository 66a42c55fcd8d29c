#include "services/gateway/gateway_config.h"

#include <unistd.h>

#include <fstream>
#include <sstream>

#include "absl/strings/ascii.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "services/common/runtime/absl_compat.h"
#include "services/common/runtime/secret.h"

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
  absl::StatusOr<std::string> secret = runtime::ParseSecret(config.String(variable, ""), variable);
  if (!secret.ok()) {
    config.AddError(variable, ToStd(secret.status().message()));
    return "";
  }
  return *std::move(secret);
}

std::string HostName() {
  char name[256] = {};
  if (gethostname(name, sizeof(name) - 1) != 0) return "gateway";
  return name;
}

// The contents of the PEM file named by `variable` (required).
std::string ReadPem(runtime::Config& config, std::string_view variable) {
  const std::string path = config.String(variable, "");
  if (path.empty()) {
    config.AddError(variable, "required with PADLOCK_TLS=on (PEM file); PADLOCK_TLS=off serves "
                              "plaintext (local runs and tests only)");
    return "";
  }
  std::ifstream in(path);
  std::stringstream contents;
  contents << in.rdbuf();
  if (!in.good() && !in.eof()) {
    config.AddError(variable, "cannot read " + path);
    return "";
  }
  if (contents.str().find("-----BEGIN") == std::string::npos) {
    config.AddError(variable, path + " is not a PEM file");
    return "";
  }
  return contents.str();
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
  const double login_burst =
      static_cast<double>(config.Int("PADLOCK_LOGIN_BURST", 30, 1, 1000000));
  const absl::Duration login_refill = config.Duration(
      "PADLOCK_LOGIN_REFILL", absl::Seconds(2), absl::Microseconds(1), absl::Hours(24));
  s.limits.login_per_address = {.burst = login_burst,
                                .per_second = 1.0 / absl::ToDoubleSeconds(login_refill)};
  // Every login takes one challenge first, so by default the challenge limit is the login limit
  // (a client within its login budget never meets this one).
  const double challenge_burst = static_cast<double>(config.Int(
      "PADLOCK_CHALLENGE_BURST", static_cast<int64_t>(login_burst), 1, 1000000));
  const absl::Duration challenge_refill = config.Duration(
      "PADLOCK_CHALLENGE_REFILL", login_refill, absl::Microseconds(1), absl::Hours(24));
  s.limits.challenge_per_address = {
      .burst = challenge_burst, .per_second = 1.0 / absl::ToDoubleSeconds(challenge_refill)};

  StreamSettings& st = s.streams;
  st.gateway_id = config.String("PADLOCK_GATEWAY_ID", HostName());
  if (st.gateway_id.empty() || st.gateway_id.size() > 128) {
    config.AddError("PADLOCK_GATEWAY_ID", "1 to 128 characters required");
  }
  st.max_streams = static_cast<size_t>(config.Int("PADLOCK_MAX_STREAMS", 20000, 1, 10000000));
  st.max_unacked = static_cast<uint32_t>(config.Int("PADLOCK_MAX_UNACKED", 256, 1, 65536));
  st.sends_per_device = {
      .burst = static_cast<double>(config.Int("PADLOCK_SEND_BURST", 200, 1, 100000000)),
      .per_second = static_cast<double>(config.Int("PADLOCK_SEND_RATE", 50, 1, 100000000))};
  st.max_send_bytes =
      static_cast<size_t>(config.Int("PADLOCK_MAX_SEND_BYTES", 1 << 20, 1024, 64 << 20));
  st.max_frame_bytes =
      static_cast<size_t>(config.Int("PADLOCK_MAX_FRAME_BYTES", 4 << 20, 4096, 256 << 20));
  if (st.max_frame_bytes < st.max_send_bytes) {
    config.AddError("PADLOCK_MAX_FRAME_BYTES", "must be at least PADLOCK_MAX_SEND_BYTES");
  }
  st.call_deadline = config.Duration("PADLOCK_INTERNAL_DEADLINE", absl::Seconds(5),
                                     absl::Milliseconds(10), absl::Minutes(1));
  st.ack_linger = config.Duration("PADLOCK_ACK_LINGER", absl::Milliseconds(5), absl::ZeroDuration(),
                                  absl::Minutes(1));
  st.heartbeat_interval = config.Duration("PADLOCK_PRESENCE_HEARTBEAT", absl::Seconds(15),
                                          absl::Milliseconds(100), absl::Minutes(10));
  s.keepalive_time = config.Duration("PADLOCK_KEEPALIVE_TIME", absl::Seconds(30),
                                     absl::Milliseconds(100), absl::Hours(2));
  s.keepalive_timeout = config.Duration("PADLOCK_KEEPALIVE_TIMEOUT", absl::Seconds(10),
                                        absl::Milliseconds(100), absl::Minutes(10));
  s.tls = config.OneOf("PADLOCK_TLS", "on", {"on", "off"}) == "on";
  if (s.tls) {
    s.tls_cert_pem = ReadPem(config, "PADLOCK_TLS_CERT");
    s.tls_key_pem = ReadPem(config, "PADLOCK_TLS_KEY");
  }

  if (config.OneOf("PADLOCK_RATE_LIMIT_PROFILE", "production", {"production", "test"}) ==
      "test") {
    // Tests and benchmarks: many registrations and logins from one address, fast senders.
    s.limits.register_per_address = {.burst = 1e6, .per_second = 1e6};
    s.limits.login_per_address = {.burst = 1e6, .per_second = 1e6};
    s.limits.challenge_per_address = {.burst = 1e6, .per_second = 1e6};
    if (!config.Has("PADLOCK_SEND_BURST")) st.sends_per_device = {.burst = 1e6, .per_second = 1e6};
  }
  s.turn.secret = config.String("PADLOCK_TURN_SECRET", "");
  const std::string urls = config.String("PADLOCK_TURN_URLS", "");
  for (absl::string_view url : absl::StrSplit(urls, ',', absl::SkipWhitespace())) {
    s.turn.urls.emplace_back(absl::StripAsciiWhitespace(url));
  }
  s.turn.ttl = config.Duration("PADLOCK_TURN_TTL", absl::Hours(1), absl::Minutes(1),
                               absl::Hours(48));
  s.push.ttl = config.Duration("PADLOCK_PUSH_ENDPOINT_TTL", absl::Hours(24 * 30), absl::Minutes(1),
                               absl::Hours(24 * 365));
  const std::string allowed = config.String("PADLOCK_PUSH_ALLOWED_HOSTS", "");
  for (absl::string_view host : absl::StrSplit(allowed, ',', absl::SkipWhitespace())) {
    s.push.allowed_hosts.insert(absl::AsciiStrToLower(absl::StripAsciiWhitespace(host)));
  }
  if (config.Has("PADLOCK_VAPID_PUBLIC_KEY") && config.Has("PADLOCK_VAPID_KEY_FILE")) {
    config.AddError("PADLOCK_VAPID_KEY_FILE", "set PADLOCK_VAPID_PUBLIC_KEY or this, not both");
  } else if (config.Has("PADLOCK_VAPID_PUBLIC_KEY")) {
    absl::StatusOr<std::string> key =
        ParseVapidPublicKey(config.String("PADLOCK_VAPID_PUBLIC_KEY", ""));
    if (key.ok()) {
      s.push.vapid_public_key = *std::move(key);
    } else {
      config.AddError("PADLOCK_VAPID_PUBLIC_KEY", ToStd(key.status().message()));
    }
  } else if (config.Has("PADLOCK_VAPID_KEY_FILE")) {
    const std::string path = config.String("PADLOCK_VAPID_KEY_FILE", "");
    std::ifstream in(path);
    std::stringstream contents;
    contents << in.rdbuf();
    absl::StatusOr<std::string> key = in.is_open()
                                          ? VapidPublicKeyFromPem(contents.str())
                                          : absl::InvalidArgumentError("cannot read " + path);
    if (key.ok()) {
      s.push.vapid_public_key = *std::move(key);
    } else {
      config.AddError("PADLOCK_VAPID_KEY_FILE", ToStd(key.status().message()));
    }
  }
  s.workers = static_cast<int>(config.Int("PADLOCK_GATEWAY_WORKERS", 16, 1, 1024));
  s.queue = static_cast<size_t>(config.Int("PADLOCK_GATEWAY_QUEUE", 4096, 1, 1000000));
  s.limits.max_relays_in_flight = s.queue;
  return s;
}

}  // namespace padlock::gateway
