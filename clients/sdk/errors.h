#pragma once
// Errors the SDK classifies by type, not by message text: each is an absl::Status whose payload
// (under the type URL below) marks what it is. Messages stay free to change.

#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/status.h"

namespace padlock::client {

// libsignal refused a message from an identity key this device has not accepted
// (SG_ERR_UNTRUSTED_IDENTITY). Payload: empty.
inline constexpr char kUntrustedIdentityPayload[] = "padlock/untrusted-identity";
// A device of a user has a new identity key ("security code changed"); messages to that user are
// held until the user accepts it. Payload: "<user>\0<device>,<device>,...".
inline constexpr char kIdentityChangedPayload[] = "padlock/identity-changed";

// FailedPrecondition `message` marked as an untrusted-identity error.
absl::Status UntrustedIdentityError(std::string_view message);
bool IsUntrustedIdentity(const absl::Status& status);

// FailedPrecondition "security code changed" naming `user`'s `devices`, marked as above.
absl::Status IdentityChangedError(const std::string& user, const std::vector<uint32_t>& devices);
// The user and devices of an IdentityChangedError; nullopt for any other status.
std::optional<std::pair<std::string, std::vector<uint32_t>>> IdentityChanged(
    const absl::Status& status);

}  // namespace padlock::client
