#pragma once
// Session tokens: short-lived bearer tokens that any gateway replica verifies without a shared
// store. A token is base64url (no padding) of
//   payload = version (1 byte, 1) · key id (4 bytes) · device id (4, big-endian) ·
//             device-list version (8) · expiry Unix ms (8) · user id length (1) · user id
//   mac     = HMAC-SHA256(secret, payload) (32 bytes)
// concatenated. The key id names the secret that signed it (the first 4 bytes of
// SHA-256("padlock-token-key-id-v1" · secret)), so verification picks the current or the previous
// secret directly and the secret can rotate without invalidating live tokens. MACs are compared in
// constant time (CRYPTO_memcmp). No grpc, hiredis or pqxx here.

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace padlock::gateway {

// The one message of every token failure (missing, malformed, forged, expired, revoked): a client
// learns nothing about which check failed.
inline constexpr char kInvalidTokenMessage[] = "invalid or expired session token";

// What a valid token says.
struct SessionClaims {
  std::string user_id = {};
  uint32_t device_id = 0;
  uint64_t device_list_version = 0;
  absl::Time expires_at = absl::InfinitePast();
  // Hex of the signing secret's key id (for logs; never the secret).
  std::string key_id = {};
};

// Issues and verifies tokens. Immutable after construction; thread-safe.
class SessionTokens {
 public:
  // `secret` signs new tokens; `previous` (may be empty) is accepted for verification only. Both
  // are raw bytes (runtime::ParseSecret); the caller guarantees at least 32 bytes each.
  SessionTokens(std::string secret, std::string previous);

  // A token carrying `claims` (its key_id is ignored and set to the current secret's).
  // Aborts on an empty or over-255-byte user id (callers pass validated ids).
  std::string Issue(const SessionClaims& claims) const;

  // The claims of `token` when it is well-formed, signed by the current or previous secret, and
  // `now` is before its expiry. Unauthenticated(kInvalidTokenMessage) otherwise, whatever the
  // reason.
  absl::StatusOr<SessionClaims> Verify(std::string_view token, absl::Time now) const;

  // Hex key id of the current secret.
  std::string current_key_id() const;

 private:
  struct Key {
    std::string secret;
    std::string id;  // 4 raw bytes
  };
  static Key MakeKey(std::string secret);

  Key current_;
  std::optional<Key> previous_;
};

}  // namespace padlock::gateway
