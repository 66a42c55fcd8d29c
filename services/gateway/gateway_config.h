#pragma once
// Gateway settings from the environment (errors recorded in `config`, as every getter does):
//   PADLOCK_TOKEN_SECRET                 required: session-token HMAC secret, ≥ 32 bytes, hex or
//                                        base64 (same value on every replica)
//   PADLOCK_TOKEN_SECRET_PREVIOUS        optional: the secret before the last rotation
//                                        (verification only)
//   PADLOCK_TOKEN_TTL                    session-token lifetime (default 1h)
//   PADLOCK_CHALLENGE_TTL                login-challenge lifetime (default 60s)
//   PADLOCK_GATEWAY_AUDIENCE             audience in login statements (default "padlock")
//   PADLOCK_KEY_DIRECTORY_DEADLINE       deadline of each key-directory call (default 2s)
//   PADLOCK_REGISTER_BURST               registrations per client address in a burst (default 5)
//   PADLOCK_REGISTER_REFILL              one more registration allowed per this period
//                                        (default 12m)
//   PADLOCK_RATE_LIMIT_PROFILE           production (default) | test: test raises every limit
//                                        to 1e6 burst / 1e6 per second (tests, benchmarks)
//   PADLOCK_TURN_SECRET                  coturn static-auth-secret (unset: no TURN)
//   PADLOCK_TURN_URLS                    comma-separated turn:/turns: URLs
//   PADLOCK_TURN_TTL                     TURN credential lifetime (default 1h)
//   PADLOCK_LOGIN_BURST / PADLOCK_LOGIN_REFILL   logins per client address (default 30 / 2s)
//   PADLOCK_CHALLENGE_BURST / PADLOCK_CHALLENGE_REFILL  GetChallenge calls per client address
//                                        (default: the login values)
//   PADLOCK_GATEWAY_ID                   this replica's id in the presence registry (default: host
//                                        name)
//   PADLOCK_MAX_STREAMS                  device streams per gateway (default 20000)
//   PADLOCK_MAX_UNACKED                  envelopes pushed per stream before acks (default 256)
//   PADLOCK_SEND_BURST / PADLOCK_SEND_RATE  per-device send token bucket (default 200 / 50 per s)
//   PADLOCK_MAX_SEND_BYTES               largest SendRequest accepted (default 1 MiB; larger is
//                                        refused on the stream, which stays open)
//   PADLOCK_MAX_FRAME_BYTES              transport limit per frame (default 4 MiB; beyond it the
//                                        stream ends with RESOURCE_EXHAUSTED)
//   PADLOCK_INTERNAL_DEADLINE            deadline of calls to message-queue/presence (default 5s)
//   PADLOCK_PRESENCE_HEARTBEAT           presence heartbeat period (default 15s)
//   PADLOCK_KEEPALIVE_TIME / PADLOCK_KEEPALIVE_TIMEOUT  HTTP/2 pings to silent clients (default
//                                        30s / 10s): a client that does not answer is dropped
//   PADLOCK_TLS_CERT / PADLOCK_TLS_KEY   PEM files: TLS on the public port (required unless
//                                        PADLOCK_TLS=off, for local runs and tests)
//   PADLOCK_TLS                          on (default) | off
//   PADLOCK_PUSH_ENDPOINT_TTL            how long a device's Web Push subscription lives without a
//                                        Connect (default 30 days = 720h; 1m .. 365 days)
//   PADLOCK_PUSH_ALLOWED_HOSTS           comma-separated push hosts exempt from the private /
//                                        loopback / link-local address rule (default none; local
//                                        stacks and tests: 127.0.0.1,localhost)
//   PADLOCK_VAPID_PUBLIC_KEY             the server's VAPID public key, base64url of the 65-byte
//                                        uncompressed P-256 point (unset: GetPushConfig answers
//                                        FAILED_PRECONDITION "push not configured")
//   PADLOCK_VAPID_KEY_FILE               or a PEM file with the VAPID public or private key
//   PADLOCK_GATEWAY_WORKERS              executor threads for blocking calls (default 16)
//   PADLOCK_GATEWAY_QUEUE                executor queue bound, and the bound on key-directory
//                                        calls in flight (default 4096)

#include <string>

#include "services/common/runtime/config.h"
#include "services/gateway/authenticator.h"
#include "services/gateway/stream_settings.h"
#include "services/gateway/gateway_service.h"
#include "services/gateway/push_registry.h"
#include "services/gateway/turn.h"

namespace padlock::gateway {

struct GatewaySettings {
  std::string token_secret;           // raw bytes
  std::string token_secret_previous;  // raw bytes; empty when unset
  AuthOptions auth;
  absl::Duration key_directory_deadline = absl::Seconds(2);
  GatewayLimits limits;
  TurnOptions turn;
  PushOptions push;
  StreamSettings streams;
  absl::Duration keepalive_time = absl::Seconds(30);
  absl::Duration keepalive_timeout = absl::Seconds(10);
  bool tls = true;
  std::string tls_cert_pem = {};
  std::string tls_key_pem = {};
  int workers = 16;
  size_t queue = 4096;
};

GatewaySettings GatewaySettingsFromConfig(runtime::Config& config);

}  // namespace padlock::gateway
