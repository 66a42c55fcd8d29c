#include "clients/sdk/device_list.h"

#include <vector>

#include "absl/strings/str_cat.h"
#include "clients/sdk/identity.h"
#include "common/statement/signature.h"
#include "common/statement/signed_statement.h"
#include "google/protobuf/util/message_differencer.h"

namespace padlock::client {

absl::StatusOr<std::string> EncodeDeviceListStatement(const padlock::v1::DeviceList& list) {
  std::vector<statement::DeviceListEntry> entries;
  entries.reserve(list.devices_size());
  for (const padlock::v1::DeviceListEntry& e : list.devices()) {
    entries.push_back({e.device_id(), e.identity_key(), e.registration_id()});
  }
  return statement::EncodeDeviceList(list.user_id(), list.version(), entries);
}

absl::Status SignDeviceList(SignalContext& context, std::string_view private_key,
                            padlock::v1::SignedDeviceList& signed_list) {
  absl::StatusOr<std::string> encoded = EncodeDeviceListStatement(signed_list.list());
  if (!encoded.ok()) return encoded.status();
  absl::StatusOr<std::string> signature = Sign(context, private_key, *encoded);
  if (!signature.ok()) return signature.status();
  signed_list.set_signature(*std::move(signature));
  return absl::OkStatus();
}

const padlock::v1::DeviceListEntry* FindDevice(const padlock::v1::DeviceList& list,
                                               uint32_t device_id) {
  for (const padlock::v1::DeviceListEntry& entry : list.devices()) {
    if (entry.device_id() == device_id) return &entry;
  }
  return nullptr;
}

absl::Status VerifyDeviceList(const std::string& user_id,
                              const padlock::v1::SignedDeviceList& signed_list,
                              const std::optional<std::string>& trusted_primary_key,
                              const std::optional<padlock::v1::SignedDeviceList>& highest_seen) {
  const padlock::v1::DeviceList& list = signed_list.list();
  if (list.user_id() != user_id) {
    return absl::InvalidArgumentError(
        absl::StrCat("device list of ", user_id, " names another user"));
  }
  const padlock::v1::DeviceListEntry* primary = FindDevice(list, 1);
  if (primary == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat("device list of ", user_id, " has no device 1"));
  }
  absl::StatusOr<std::string> encoded = EncodeDeviceListStatement(list);
  if (!encoded.ok()) return encoded.status();
  if (!statement::VerifySignature(primary->identity_key(), *encoded, signed_list.signature())) {
    return absl::DataLossError(
        absl::StrCat("device list of ", user_id, ": the primary's signature does not verify"));
  }
  if (trusted_primary_key.has_value() && *trusted_primary_key != primary->identity_key()) {
    return absl::FailedPreconditionError(
        absl::StrCat("security code changed: ", user_id, "'s primary identity key is new"));
  }
  if (highest_seen.has_value()) {
    const uint64_t seen = highest_seen->list().version();
    if (list.version() < seen) {
      return absl::FailedPreconditionError(absl::StrCat(
          "older device list for ", user_id, ": version ", list.version(), " < ", seen));
    }
    if (list.version() == seen &&
        !google::protobuf::util::MessageDifferencer::Equals(list, highest_seen->list())) {
      return absl::FailedPreconditionError(absl::StrCat(
          "device list of ", user_id, " version ", seen, " differs from the one verified before"));
    }
  }
  return absl::OkStatus();
}

}  // namespace padlock::client
