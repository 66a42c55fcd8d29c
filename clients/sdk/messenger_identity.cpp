// Messenger: identity changes and safety numbers (docs/CLIENT.md "Identity changes and safety
// numbers"): the safety numbers of a peer's devices, accepting a peer's new identity keys (which
// releases what IdentityHolds held), and moving this primary device to a new identity key.
#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "clients/sdk/device_list.h"
#include "clients/sdk/identity.h"
#include "clients/sdk/messenger.h"
#include "clients/sdk/safety_number.h"
#include "common/statement/signed_statement.h"

namespace padlock::client {

absl::StatusOr<std::map<uint32_t, std::string>> Messenger::SafetyNumbers(const std::string& peer) {
  if (!core_.account.has_value()) return account().status();
  // From the list as the primary signed it, not only the accepted keys: after "security code
  // changed" the user compares the NEW numbers before accepting them.
  absl::StatusOr<padlock::v1::GetDeviceListResponse> response =
      core_.transport->GetDeviceList(peer);
  if (!response.ok()) return response.status();
  const padlock::v1::SignedDeviceList* list = &response->device_list();
  if (absl::Status s = VerifyDeviceList(peer, *list, std::nullopt, std::nullopt); !s.ok()) {
    return s;
  }
  absl::StatusOr<IdentityKeyPair> identity = core_.store->LoadLocalIdentity();
  if (!identity.ok()) return identity.status();
  std::map<uint32_t, std::string> out;
  for (const padlock::v1::DeviceListEntry& entry : list->list().devices()) {
    absl::StatusOr<std::string> number = SafetyNumber(
        *core_.context, core_.account->user_id, identity->public_key, peer, entry.identity_key());
    if (!number.ok()) return number.status();
    out[entry.device_id()] = *number;
  }
  return out;
}

absl::Status Messenger::AcceptIdentity(const std::string& peer) {
  absl::StatusOr<padlock::v1::GetDeviceListResponse> response =
      core_.transport->GetDeviceList(peer);
  if (!response.ok()) return response.status();
  const padlock::v1::SignedDeviceList& list = response->device_list();
  // Verify the signature only: the user accepts the new primary key and whatever version it
  // signed (an identity change restarts trust).
  if (absl::Status s = VerifyDeviceList(peer, list, std::nullopt, std::nullopt); !s.ok()) return s;
  std::set<uint32_t> changed;
  absl::Status accepted = core_.store->InTransaction([&]() -> absl::Status {
    for (const padlock::v1::DeviceListEntry& entry : list.list().devices()) {
      const RemoteAddress address{peer, static_cast<int32_t>(entry.device_id())};
      absl::StatusOr<std::optional<std::string>> known = core_.store->LoadRemoteIdentity(address);
      if (!known.ok()) return known.status();
      if (known->has_value() && **known != entry.identity_key()) {
        changed.insert(entry.device_id());
        if (absl::Status s = core_.store->DeleteSession(address); !s.ok()) return s;
      }
      if (absl::Status s = core_.store->AcceptRemoteIdentity(address, entry.identity_key());
          !s.ok()) {
        return s;
      }
    }
    return core_.store->SaveVerifiedDeviceList(peer,
                                               {list.list().version(), list.SerializeAsString()});
  });
  if (!accepted.ok()) return accepted;
  holds_.Release(peer);
  if (absl::Status s = outbox_.Readdress(peer, list, changed); !s.ok()) return s;
  // What arrived from the new key meanwhile is read now (its events come with the next Pump).
  padlock::v1::Deliver deliver;
  for (padlock::v1::Envelope& envelope : holds_.TakeIncoming(peer)) {
    *deliver.add_envelopes() = std::move(envelope);
  }
  if (deliver.envelopes_size() > 0 && connected()) {
    receiver_.HandleDeliver(deliver, holds_.events());
  }
  return outbox_.Flush();
}

absl::StatusOr<std::unique_ptr<Messenger>> Messenger::ChangeIdentity(
    MessengerOptions fresh, std::unique_ptr<Transport> transport) {
  if (!core_.account.has_value()) return account().status();
  if (core_.account->device_id != 1) {
    return absl::PermissionDeniedError(
        "only the primary device changes identity; a linked device is unlinked and linked again "
        "under a new device id");
  }
  if (fresh.home == core_.options.home) {
    return absl::InvalidArgumentError("the new identity needs a fresh folder");
  }
  absl::StatusOr<std::unique_ptr<Messenger>> next =
      transport == nullptr ? Open(std::move(fresh)) : Open(std::move(fresh), std::move(transport));
  if (!next.ok()) return next.status();
  Messenger& n = **next;
  if (n.registered() || n.link_pending()) {
    return absl::AlreadyExistsError(
        absl::StrCat(n.core_.options.home, " already holds an account"));
  }
  absl::StatusOr<IdentityKeyPair> old_identity = core_.store->LoadLocalIdentity();
  if (!old_identity.ok()) return old_identity.status();
  absl::StatusOr<padlock::v1::SignedDeviceList> current = RefreshDeviceList(core_.account->user_id);
  if (!current.ok()) return current.status();

  absl::StatusOr<IdentityKeyPair> identity = GenerateIdentityKeyPair(*n.core_.context);
  if (!identity.ok()) return identity.status();
  absl::StatusOr<uint32_t> registration_id = GenerateRegistrationId(*n.core_.context);
  if (!registration_id.ok()) return registration_id.status();
  constexpr uint32_t kSignedPreKeyId = 1;
  absl::StatusOr<SignedPreKey> signed_prekey =
      GenerateSignedPreKey(*n.core_.context, *identity, kSignedPreKeyId,
                           static_cast<uint64_t>(absl::ToUnixMillis(n.core_.Now())));
  if (!signed_prekey.ok()) return signed_prekey.status();
  const uint32_t batch = std::min<uint32_t>(n.core_.options.prekey_batch, 100);
  absl::StatusOr<std::vector<PreKey>> prekeys = GeneratePreKeys(*n.core_.context, 1, batch);
  if (!prekeys.ok()) return prekeys.status();
  // The private halves are stored before the server learns the public ones.
  absl::Status stored = n.core_.store->InTransaction([&]() -> absl::Status {
    if (absl::Status s = n.core_.store->SaveLocalIdentity(*identity, *registration_id); !s.ok()) {
      return s;
    }
    if (absl::Status s = n.core_.store->StoreSignedPreKey(signed_prekey->id, signed_prekey->record);
        !s.ok()) {
      return s;
    }
    for (const PreKey& key : *prekeys) {
      if (absl::Status s = n.core_.store->StorePreKey(key.id, key.record); !s.ok()) return s;
    }
    return absl::OkStatus();
  });
  if (!stored.ok()) return stored;

  // The same devices, device 1 with the new key, signed by the new key.
  padlock::v1::SignedDeviceList list;
  list.mutable_list()->set_user_id(core_.account->user_id);
  list.mutable_list()->set_version(current->list().version() + 1);
  for (const padlock::v1::DeviceListEntry& e : current->list().devices()) {
    padlock::v1::DeviceListEntry* added = list.mutable_list()->add_devices();
    *added = e;
    if (e.device_id() == 1) {
      added->set_identity_key(identity->public_key);
      added->set_registration_id(*registration_id);
    }
  }
  if (absl::Status s = SignDeviceList(*n.core_.context, identity->private_key, list); !s.ok()) {
    return s;
  }
  absl::StatusOr<std::string> change_signature =
      Sign(*core_.context, old_identity->private_key,
           statement::EncodeIdentityChange(core_.account->user_id, 1, old_identity->public_key,
                                           identity->public_key, *registration_id));
  if (!change_signature.ok()) return change_signature.status();

  padlock::v1::GatewayChangeIdentityRequest request;
  request.set_new_identity_key(identity->public_key);
  request.set_new_registration_id(*registration_id);
  request.mutable_new_signed_prekey()->set_key_id(signed_prekey->id);
  request.mutable_new_signed_prekey()->set_public_key(signed_prekey->public_key);
  request.mutable_new_signed_prekey()->set_signature(signed_prekey->signature);
  for (const PreKey& key : *prekeys) {
    padlock::v1::OneTimePreKey* otk = request.add_new_one_time_prekeys();
    otk->set_key_id(key.id);
    otk->set_public_key(key.public_key);
  }
  request.set_change_signature(*change_signature);
  *request.mutable_device_list() = list;
  absl::StatusOr<padlock::v1::ChangeIdentityResponse> response =
      core_.transport->ChangeIdentity(request);
  if (!response.ok()) return response.status();
  Disconnect();  // this key no longer logs in

  const AccountRecord account{core_.account->user_id, 1, batch + 1, signed_prekey->id};
  absl::Status saved = n.core_.store->InTransaction([&]() -> absl::Status {
    if (absl::Status s = n.core_.store->SaveAccount(account); !s.ok()) return s;
    if (absl::Status s =
            n.core_.store->AcceptRemoteIdentity({account.user_id, 1}, identity->public_key);
        !s.ok()) {
      return s;
    }
    return n.core_.store->SaveVerifiedDeviceList(account.user_id,
                                                 {list.list().version(), list.SerializeAsString()});
  });
  if (!saved.ok()) return saved;
  n.core_.account = account;
  if (absl::Status s = n.Start(); !s.ok()) return s;
  return next;
}

}  // namespace padlock::client
