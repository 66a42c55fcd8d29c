#include "clients/sdk/recipients.h"

#include "absl/strings/str_cat.h"
#include "clients/sdk/device_list.h"
#include "clients/sdk/errors.h"

namespace padlock::client {

bool HasRecipient(const padlock::v1::OutgoingMessage& message, const std::string& user,
                  uint32_t device) {
  for (const padlock::v1::Recipient& r : message.recipients()) {
    if (r.device().user_id() == user && r.device().device_id() == device) return true;
  }
  return false;
}

absl::StatusOr<padlock::v1::SignedDeviceList> Recipients::RefreshDeviceList(
    const std::string& user_id) {
  absl::StatusOr<padlock::v1::GetDeviceListResponse> response =
      core_.transport->GetDeviceList(user_id);
  if (!response.ok()) {
    if (absl::IsNotFound(response.status())) {
      return absl::NotFoundError(absl::StrCat("user ", user_id, " is unknown"));
    }
    return response.status();
  }
  const padlock::v1::SignedDeviceList& list = response->device_list();
  absl::StatusOr<std::optional<VerifiedDeviceList>> stored =
      core_.store->LoadVerifiedDeviceList(user_id);
  if (!stored.ok()) return stored.status();
  std::optional<padlock::v1::SignedDeviceList> seen;
  if (stored->has_value()) {
    padlock::v1::SignedDeviceList parsed;
    if (!parsed.ParseFromString((*stored)->signed_list)) {
      return absl::DataLossError(absl::StrCat("stored device list of ", user_id, " is corrupt"));
    }
    seen = std::move(parsed);
  }
  absl::StatusOr<std::optional<std::string>> trusted =
      core_.store->LoadRemoteIdentity({user_id, 1});
  if (!trusted.ok()) return trusted.status();
  // The primary's signature and the version first; then every device's key against the one
  // trusted for it (the primary's pinned at first contact, the others' at their first session):
  // a changed key holds messages until the user accepts it, whoever signed the list.
  if (absl::Status s = VerifyDeviceList(user_id, list, std::nullopt, seen); !s.ok()) {
    if (absl::IsDataLoss(s)) {
      return absl::DataLossError(
          absl::StrCat(s.message(), " — the server lists devices or keys that ", user_id,
                       "'s primary did not sign; refusing to encrypt to them"));
    }
    return s;
  }
  std::vector<uint32_t> changed;
  for (const padlock::v1::DeviceListEntry& entry : list.list().devices()) {
    absl::StatusOr<std::optional<std::string>> known =
        core_.store->LoadRemoteIdentity({user_id, static_cast<int32_t>(entry.device_id())});
    if (!known.ok()) return known.status();
    if (known->has_value() && **known != entry.identity_key()) changed.push_back(entry.device_id());
  }
  if (!changed.empty()) return IdentityChangedError(user_id, changed);
  absl::Status saved = core_.store->InTransaction([&]() -> absl::Status {
    if (!trusted->has_value()) {
      const padlock::v1::DeviceListEntry* primary = FindDevice(list.list(), 1);
      if (absl::Status s = core_.store->AcceptRemoteIdentity({user_id, 1}, primary->identity_key());
          !s.ok()) {
        return s;
      }
    }
    if (!seen.has_value() || list.list().version() > seen->list().version()) {
      return core_.store->SaveVerifiedDeviceList(user_id,
                                                 {list.list().version(), list.SerializeAsString()});
    }
    return absl::OkStatus();
  });
  if (!saved.ok()) return saved;
  return list;
}

absl::StatusOr<padlock::v1::SignedDeviceList> Recipients::CachedDeviceList(
    const std::string& user_id) {
  absl::StatusOr<std::optional<VerifiedDeviceList>> stored =
      core_.store->LoadVerifiedDeviceList(user_id);
  if (!stored.ok()) return stored.status();
  if (stored->has_value()) {
    padlock::v1::SignedDeviceList parsed;
    if (parsed.ParseFromString((*stored)->signed_list)) return parsed;
  }
  return RefreshDeviceList(user_id);
}

absl::Status Recipients::EnsureSession(const padlock::v1::DeviceListEntry& entry,
                                       const std::string& user) {
  const RemoteAddress address{user, static_cast<int32_t>(entry.device_id())};
  absl::StatusOr<bool> has = core_.store->ContainsSession(address);
  if (!has.ok()) return has.status();
  if (*has) return absl::OkStatus();
  absl::StatusOr<padlock::v1::ClaimBundlesResponse> claimed =
      core_.transport->ClaimBundles(user, entry.device_id());
  if (!claimed.ok()) return claimed.status();
  for (const padlock::v1::PreKeyBundle& bundle : claimed->bundles()) {
    if (bundle.device().device_id() != entry.device_id()) continue;
    // Encrypt only to keys the primary signed for: a device the server adds on its own (a row
    // not on the signed list) or a swapped key never gets a session.
    if (bundle.identity_key() != entry.identity_key()) {
      return absl::DataLossError(absl::StrCat("bundle of ", user, ":", entry.device_id(),
                                              " does not match its signed device list"));
    }
    return core_.crypto->ProcessPreKeyBundle(bundle);
  }
  return absl::NotFoundError(absl::StrCat("no bundle for ", user, ":", entry.device_id()));
}

absl::Status Recipients::AddRecipients(const padlock::v1::SignedDeviceList& list,
                                       const Content& content,
                                       padlock::v1::OutgoingMessage& message) {
  const std::string& user = list.list().user_id();
  for (const padlock::v1::DeviceListEntry& entry : list.list().devices()) {
    if (user == core_.account->user_id && entry.device_id() == core_.account->device_id) continue;
    if (HasRecipient(message, user, entry.device_id())) continue;
    if (absl::Status s = EnsureSession(entry, user); !s.ok()) return s;
    absl::StatusOr<Ciphertext> ciphertext =
        core_.crypto->Encrypt({user, static_cast<int32_t>(entry.device_id())}, content);
    if (!ciphertext.ok()) return ciphertext.status();
    padlock::v1::Recipient* r = message.add_recipients();
    r->mutable_device()->set_user_id(user);
    r->mutable_device()->set_device_id(entry.device_id());
    r->set_registration_id(entry.registration_id());
    r->set_type(ciphertext->type);
    r->set_ciphertext(std::move(ciphertext->bytes));
  }
  return absl::OkStatus();
}

}  // namespace padlock::client
