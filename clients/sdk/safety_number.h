#pragma once
// Safety numbers: the 60-digit displayable fingerprint two users compare in person
// (libsignal's fingerprint_generator, 5200 iterations, scannable format version 1). Both sides
// compute the same digits (each puts itself as "local"); any change of either identity key
// changes them.

#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "clients/sdk/crypto_provider.h"

namespace padlock::client {

inline constexpr int kSafetyNumberIterations = 5200;
inline constexpr int kSafetyNumberScannableVersion = 1;

// The 60 decimal digits for (local user, local identity key) and (remote user, remote identity
// key); user ids are the stable identifiers, keys the 33-byte serialized identity public keys.
// InvalidArgument when a key does not decode or a user id is empty; Internal on library failure.
absl::StatusOr<std::string> SafetyNumber(SignalContext& context, std::string_view local_user_id,
                                         std::string_view local_identity_key,
                                         std::string_view remote_user_id,
                                         std::string_view remote_identity_key);

}  // namespace padlock::client
