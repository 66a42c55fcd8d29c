#pragma once
// Login by challenge/response and bearer-token checks: the gateway's authentication logic on
// small interfaces (a challenge store, an identity source, a clock, a random source). No grpc,
// hiredis or pqxx here.

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "services/common/runtime/clock.h"
#include "services/gateway/session_token.h"

namespace prometheus {
class Counter;
class Registry;
template <typename T>
class Family;
}  // namespace prometheus

namespace padlock::gateway {

// The one message of every failed login (unknown device, bad signature, expired, replayed or
// unknown challenge): a client learns nothing about which check failed.
inline constexpr char kLoginFailedMessage[] = "login failed";

struct DeviceRef {
  std::string user_id;
  uint32_t device_id = 0;
};

// Outstanding login challenges (Redis in production). Thread-safe.
class ChallengeStore {
 public:
  virtual ~ChallengeStore() = default;
  // Remembers `challenge` for `device` with `audience`, for `ttl`, replacing the device's earlier
  // challenge if one is outstanding (at most one per device, so a device id cannot make the store
  // grow). Unavailable when the store is down.
  virtual absl::Status Put(const DeviceRef& device, const std::string& challenge,
                           const std::string& audience, absl::Duration ttl) = 0;
  // Removes the challenge atomically and returns its audience; nullopt when it is unknown,
  // expired, replaced by a newer one or already consumed (so at most one caller ever gets it).
  // Unavailable when down.
  virtual absl::StatusOr<std::optional<std::string>> Consume(const DeviceRef& device,
                                                             const std::string& challenge) = 0;
};

struct IdentityInfo {
  std::string identity_key;  // 33 bytes
  uint64_t device_list_version = 0;
};

// A device's current identity key (the key-directory in production). Thread-safe.
class IdentitySource {
 public:
  virtual ~IdentitySource() = default;
  // NotFound when the device is unknown, unlinked or its account banned; Unavailable (or another
  // code) when the source cannot answer.
  virtual absl::StatusOr<IdentityInfo> GetIdentityKey(const DeviceRef& device) = 0;
};

struct AuthOptions {
  std::string audience = "padlock";
  absl::Duration challenge_ttl = absl::Seconds(60);
  absl::Duration token_ttl = absl::Hours(1);
};

struct Challenge {
  std::string challenge;  // 32 random bytes
  absl::Time expires_at;
  std::string audience;
};

struct Session {
  std::string token;
  absl::Time expires_at;
  uint64_t device_list_version = 0;
};

// Thread-safe. Every pointer must outlive the object.
class Authenticator {
 public:
  // `metrics` may be null (no metrics). `clock` (the system clock when null) must outlive the
  // authenticator; `random32` defaults to OpenSSL RAND_bytes (32 bytes; an empty string means
  // the generator failed).
  Authenticator(ChallengeStore* challenges, IdentitySource* identities,
                const SessionTokens* tokens, AuthOptions options,
                prometheus::Registry* metrics = nullptr,
                runtime::Clock* clock = nullptr,
                std::function<std::string()> random32 = nullptr);

  // A fresh single-use challenge for `device` (which is not looked up: the answer does not reveal
  // whether it exists). Unavailable when the store is down; Internal when no randomness.
  absl::StatusOr<Challenge> NewChallenge(const DeviceRef& device);

  // Consumes the challenge, checks `signature` over statement::EncodeLogin(user, device,
  // challenge, audience) against the device's identity key and issues a token carrying the
  // account's device-list version. Unauthenticated(kLoginFailedMessage) for an unknown device, a
  // bad signature, an expired, replayed or unknown challenge; Unavailable when a backend is down.
  absl::StatusOr<Session> Login(const DeviceRef& device, const std::string& challenge,
                                const std::string& signature);

  // The claims of the value of an `authorization` header, "Bearer <token>" (scheme
  // case-insensitive). Unauthenticated(kInvalidTokenMessage) when absent (nullopt), malformed,
  // forged or expired. Counts every failure.
  absl::StatusOr<SessionClaims> Authenticate(std::optional<std::string_view> authorization);

  // The device-list rule for account-changing calls: the token's device must still be listed and
  // the token must carry the account's current device-list version.
  // Unauthenticated(kInvalidTokenMessage) otherwise (the client logs in again); other codes when
  // the identity source cannot answer.
  absl::Status CheckCurrent(const SessionClaims& claims);

  // The rule for everything else a token allows (streams, key uploads, claims): the token's device
  // must still be listed — an unlinked device, a deleted or banned account loses its tokens at
  // once. A token with an older device-list version is still good here (the device is listed).
  // Unauthenticated(kInvalidTokenMessage) otherwise; other codes when the source cannot answer.
  absl::Status CheckListed(const SessionClaims& claims);

  // The refusal CheckListed gives, for a caller found unlisted elsewhere (the key-directory's
  // claim checks the requester in its own statement): counts it and returns
  // Unauthenticated(kInvalidTokenMessage).
  absl::Status RefuseUnlisted();

  const AuthOptions& options() const { return options_; }

 private:
  void CountLogin(const char* result);
  void CountAuthFailure(const char* reason);

  ChallengeStore* const challenges_;
  IdentitySource* const identities_;
  const SessionTokens* const tokens_;
  const AuthOptions options_;
  runtime::Clock* const clock_;
  std::function<std::string()> random32_;
  prometheus::Family<prometheus::Counter>* logins_ = nullptr;
  prometheus::Family<prometheus::Counter>* auth_failures_ = nullptr;
};

}  // namespace padlock::gateway
