#pragma once
// Recipients: whom a message goes to — the verified device lists of users (fetched through the
// transport, checked against what this device has seen and trusts, stored) and a Signal session
// and ciphertext for each listed device. Part of a Messenger (messenger.h); single-threaded.

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "clients/sdk/messenger_core.h"
#include "padlock/v1/common.pb.h"

namespace padlock::client {

// Whether `message` already has a ciphertext for `user`:`device`.
bool HasRecipient(const padlock::v1::OutgoingMessage& message, const std::string& user,
                  uint32_t device);

class Recipients {
 public:
  explicit Recipients(MessengerCore& core) : core_(core) {}

  // The verified device list of `user_id`, fetched from the server, verified (signature, version
  // not older than seen, trusted primary key) and stored. NotFound for an unknown user; DataLoss
  // when the list does not verify; an IdentityChangedError (errors.h) when a listed device's key
  // differs from the one trusted for it.
  absl::StatusOr<padlock::v1::SignedDeviceList> RefreshDeviceList(const std::string& user_id);
  // The stored verified list of `user_id`, or RefreshDeviceList when none is stored.
  absl::StatusOr<padlock::v1::SignedDeviceList> CachedDeviceList(const std::string& user_id);
  // Makes sure a session with `user`:`entry` exists (claiming a bundle whose identity key must be
  // the listed one: DataLoss otherwise).
  absl::Status EnsureSession(const padlock::v1::DeviceListEntry& entry, const std::string& user);
  // Adds a ciphertext of `content` for every device of `list` that `message` lacks (this device
  // excepted), starting sessions as needed. Call inside a store transaction.
  absl::Status AddRecipients(const padlock::v1::SignedDeviceList& list, const Content& content,
                             padlock::v1::OutgoingMessage& message);

 private:
  MessengerCore& core_;
};

}  // namespace padlock::client
