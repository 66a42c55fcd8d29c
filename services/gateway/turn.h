#pragma once
// TURN credentials in coturn's shared-secret scheme ("TURN REST API", coturn's
// --use-auth-secret / static-auth-secret): username "<expiry unix seconds>:<opaque id>",
// password base64(HMAC-SHA1(secret, username)). No grpc here.

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace padlock::gateway {

struct TurnOptions {
  std::string secret = {};             // coturn's static-auth-secret; empty = TURN not configured
  std::vector<std::string> urls = {};  // turn:/turns: URLs handed to clients
  absl::Duration ttl = absl::Hours(1);
};

struct TurnCredentials {
  std::string username = {};
  std::string password = {};
  std::vector<std::string> urls = {};
  uint32_t ttl_seconds = 0;
};

// Credentials valid until now + ttl for the opaque id `subject` (a pseudonym, never a raw user
// id). FailedPrecondition when no secret or no URL is configured.
absl::StatusOr<TurnCredentials> MakeTurnCredentials(const TurnOptions& options,
                                                    std::string_view subject, absl::Time now);

}  // namespace padlock::gateway
