#pragma once
// Client-side verification of a user's signed device list (docs/PROTOCOL.md "Device list"): the
// primary's signature over the padlock-device-list-v1 statement, built with the same encoder the
// services use (statement::EncodeDeviceList), and the rule that a list never goes back to an
// older version than the highest one this device has verified. A client encrypts only to devices
// on a list that passed this check.

#include <cstdint>
#include <optional>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "clients/sdk/crypto_provider.h"
#include "padlock/v1/common.pb.h"

namespace padlock::client {

// Checks `signed_list` for `user_id`:
// - InvalidArgument: the list names another user, has no device 1, or its devices are not in
//   strictly ascending order (the encoder refuses it);
// - DataLoss: the signature does not verify with the device-1 entry's identity key;
// - FailedPrecondition "security code changed": `trusted_primary_key` is set and differs from the
//   list's device-1 key (the primary's identity changed; the user must accept it first);
// - FailedPrecondition "older device list": `highest_seen` is set and the list's version is below
//   it, or equal to it while `highest_seen_list` (the stored list) differs.
// The signer of every version is the list's own device 1: version 1 is self-signed by definition,
// and the key-directory only accepts later versions signed by the current primary, whose key the
// client pins by trust on first use (`trusted_primary_key`).
absl::Status VerifyDeviceList(const std::string& user_id,
                              const padlock::v1::SignedDeviceList& signed_list,
                              const std::optional<std::string>& trusted_primary_key,
                              const std::optional<padlock::v1::SignedDeviceList>& highest_seen);

// The padlock-device-list-v1 statement of `list` (the bytes its primary signs).
// InvalidArgument when its devices are not in strictly ascending order.
absl::StatusOr<std::string> EncodeDeviceListStatement(const padlock::v1::DeviceList& list);

// Signs `signed_list.list()` as it stands with `private_key` (the primary's identity key) and sets
// `signed_list.signature`.
absl::Status SignDeviceList(SignalContext& context, std::string_view private_key,
                            padlock::v1::SignedDeviceList& signed_list);

// The entry of `device_id`, or nullptr.
const padlock::v1::DeviceListEntry* FindDevice(const padlock::v1::DeviceList& list,
                                               uint32_t device_id);

}  // namespace padlock::client
