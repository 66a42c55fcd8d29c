// Messenger: account upkeep — unlinking a device (the primary publishes the next signed device
// list without it; the server revokes it) and the scheduled rotation of this device's signed
// prekey (docs/CLIENT.md "Unlinking", "Signed-prekey rotation").
#include <algorithm>
#include <vector>

#include "absl/strings/str_cat.h"
#include "clients/sdk/device_list.h"
#include "clients/sdk/identity.h"
#include "clients/sdk/messenger.h"
#include "common/statement/signed_statement.h"

namespace padlock::client {

absl::Status Messenger::Register(const std::string& user_id, const std::string& invite_token) {
  if (core_.account.has_value()) {
    return absl::AlreadyExistsError(
        absl::StrCat("this folder is already registered as ", core_.account->user_id));
  }
  if (pending_link_.has_value()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "this folder is being linked to ", pending_link_->user_id, ": finish `padlock link`"));
  }
  // A folder whose earlier registration failed keeps its identity: reuse it.
  IdentityKeyPair identity;
  uint32_t registration_id = 0;
  absl::StatusOr<IdentityKeyPair> loaded = core_.store->LoadLocalIdentity();
  if (loaded.ok()) {
    identity = *loaded;
    absl::StatusOr<uint32_t> id = core_.store->LoadRegistrationId();
    if (!id.ok()) return id.status();
    registration_id = *id;
  } else if (absl::IsNotFound(loaded.status())) {
    absl::StatusOr<IdentityKeyPair> fresh = GenerateIdentityKeyPair(*core_.context);
    if (!fresh.ok()) return fresh.status();
    absl::StatusOr<uint32_t> id = GenerateRegistrationId(*core_.context);
    if (!id.ok()) return id.status();
    identity = *fresh;
    registration_id = *id;
    if (absl::Status s = core_.store->SaveLocalIdentity(identity, registration_id); !s.ok())
      return s;
  } else {
    return loaded.status();
  }
  constexpr uint32_t kSignedPreKeyId = 1;
  absl::StatusOr<SignedPreKey> signed_prekey =
      GenerateSignedPreKey(*core_.context, identity, kSignedPreKeyId,
                           static_cast<uint64_t>(absl::ToUnixMillis(core_.Now())));
  if (!signed_prekey.ok()) return signed_prekey.status();
  absl::StatusOr<std::vector<PreKey>> prekeys =
      GeneratePreKeys(*core_.context, 1, core_.options.prekey_batch);
  if (!prekeys.ok()) return prekeys.status();
  absl::Status stored = core_.store->InTransaction([&]() -> absl::Status {
    if (absl::Status s = core_.store->StoreSignedPreKey(signed_prekey->id, signed_prekey->record);
        !s.ok()) {
      return s;
    }
    for (const PreKey& key : *prekeys) {
      if (absl::Status s = core_.store->StorePreKey(key.id, key.record); !s.ok()) return s;
    }
    return absl::OkStatus();
  });
  if (!stored.ok()) return stored;

  padlock::v1::RegisterRequest request;
  request.set_user_id(user_id);
  request.set_identity_key(identity.public_key);
  request.set_registration_id(registration_id);
  padlock::v1::SignedPreKey* spk = request.mutable_signed_prekey();
  spk->set_key_id(signed_prekey->id);
  spk->set_public_key(signed_prekey->public_key);
  spk->set_signature(signed_prekey->signature);
  for (const PreKey& key : *prekeys) {
    padlock::v1::OneTimePreKey* otk = request.add_one_time_prekeys();
    otk->set_key_id(key.id);
    otk->set_public_key(key.public_key);
  }
  padlock::v1::SignedDeviceList* list = request.mutable_device_list();
  list->mutable_list()->set_user_id(user_id);
  list->mutable_list()->set_version(1);
  padlock::v1::DeviceListEntry* entry = list->mutable_list()->add_devices();
  entry->set_device_id(1);
  entry->set_identity_key(identity.public_key);
  entry->set_registration_id(registration_id);
  if (absl::Status s = SignDeviceList(*core_.context, identity.private_key, *list); !s.ok())
    return s;
  absl::StatusOr<std::string> registration_signature =
      Sign(*core_.context, identity.private_key,
           statement::EncodeRegistration(user_id, 1, identity.public_key, registration_id,
                                         signed_prekey->id, signed_prekey->public_key));
  if (!registration_signature.ok()) return registration_signature.status();
  request.set_registration_signature(*registration_signature);
  request.set_invite_token(invite_token);

  absl::StatusOr<padlock::v1::RegisterResponse> response = core_.transport->Register(request);
  if (!response.ok()) return response.status();

  AccountRecord account{user_id, response->device_id() == 0 ? 1 : response->device_id(),
                        core_.options.prekey_batch + 1, signed_prekey->id};
  absl::Status saved = core_.store->InTransaction([&]() -> absl::Status {
    if (absl::Status s = core_.store->SaveAccount(account); !s.ok()) return s;
    if (absl::Status s = core_.store->AcceptRemoteIdentity({user_id, 1}, identity.public_key);
        !s.ok()) {
      return s;
    }
    return core_.store->SaveVerifiedDeviceList(user_id, {1, list->SerializeAsString()});
  });
  if (!saved.ok()) return saved;
  core_.account = account;
  return Start();
}

absl::Status Messenger::UnlinkDevice(uint32_t device_id) {
  if (!core_.account.has_value()) return core_.RequireAccount();
  if (core_.account->device_id != 1) {
    return absl::FailedPreconditionError(
        "only the primary device (device 1) can unlink devices");
  }
  if (device_id == 1) {
    return absl::InvalidArgumentError(
        "device 1 is the primary: it cannot be unlinked (delete the account instead)");
  }
  absl::StatusOr<padlock::v1::SignedDeviceList> current = RefreshDeviceList(core_.account->user_id);
  if (!current.ok()) return current.status();
  if (FindDevice(current->list(), device_id) == nullptr) {
    return absl::NotFoundError(absl::StrCat("device ", device_id, " is not on the device list of ",
                                            core_.account->user_id));
  }
  padlock::v1::SignedDeviceList next;
  next.mutable_list()->set_user_id(core_.account->user_id);
  next.mutable_list()->set_version(current->list().version() + 1);
  for (const padlock::v1::DeviceListEntry& e : current->list().devices()) {
    if (e.device_id() == device_id) continue;
    *next.mutable_list()->add_devices() = e;
  }
  absl::StatusOr<IdentityKeyPair> identity = core_.store->LoadLocalIdentity();
  if (!identity.ok()) return identity.status();
  if (absl::Status s = SignDeviceList(*core_.context, identity->private_key, next); !s.ok())
    return s;

  padlock::v1::GatewayPublishDeviceListRequest request;
  *request.mutable_device_list() = next;
  // The server answers UNAUTHENTICATED for a token older than the account's list; the gateway
  // client logs in again and retries once.
  absl::StatusOr<padlock::v1::PublishDeviceListResponse> published =
      core_.transport->PublishDeviceList(request);
  if (!published.ok()) return published.status();
  // From now on this device encrypts only to the remaining devices.
  return core_.store->InTransaction([&]() -> absl::Status {
    if (absl::Status s = core_.store->SaveVerifiedDeviceList(
            core_.account->user_id, {next.list().version(), next.SerializeAsString()});
        !s.ok()) {
      return s;
    }
    return core_.store->DeleteSession({core_.account->user_id, static_cast<int32_t>(device_id)});
  });
}

absl::StatusOr<bool> Messenger::RotateSignedPreKeyIfDue() {
  if (!core_.account.has_value()) return core_.RequireAccount();
  const int64_t now = absl::ToUnixMillis(ClockNow());
  absl::StatusOr<std::vector<SignedPreKeyInfo>> keys = core_.store->ListSignedPreKeys();
  if (!keys.ok()) return keys.status();
  const uint32_t current_id = core_.account->signed_prekey_id;
  auto current = std::find_if(keys->begin(), keys->end(),
                              [&](const SignedPreKeyInfo& k) { return k.id == current_id; });
  if (current == keys->end()) {
    return absl::DataLossError(
        absl::StrCat("the current signed prekey ", current_id, " is missing from the store"));
  }
  // Retired keys whose grace has passed: no PreKey message built on them can still be queued.
  const int64_t grace_ms = absl::ToInt64Milliseconds(core_.options.signed_prekey_grace);
  for (const SignedPreKeyInfo& k : *keys) {
    if (k.id == current_id) continue;
    if (k.retired_at_ms == 0) {
      // Not current and never retired: an earlier rotation stored it but did not finish (the
      // publish failed, or this process died before switching). It may have reached the server,
      // so it gets the grace period like any replaced key.
      if (absl::Status s = core_.store->SetSignedPreKeyAge({k.id, k.created_at_ms, now}); !s.ok()) {
        return s;
      }
    } else if (now - k.retired_at_ms >= grace_ms) {
      if (absl::Status s = core_.store->DeleteSignedPreKey(k.id); !s.ok()) return s;
    }
  }
  if (current->created_at_ms == 0) {
    // Stored without an age (by registration, linking, or before ages were kept): it is as old as
    // this first check says.
    if (absl::Status s = core_.store->SetSignedPreKeyAge({current_id, now, 0}); !s.ok()) return s;
    current->created_at_ms = now;
  }
  if (now - current->created_at_ms <
      absl::ToInt64Milliseconds(core_.options.signed_prekey_rotation)) {
    return false;
  }
  // A fresh id above every stored one (and never 0): a key published by an earlier attempt that
  // crashed before it became current is not reused with different bytes.
  uint32_t next_id = current_id;
  for (const SignedPreKeyInfo& k : *keys) next_id = std::max(next_id, k.id);
  next_id = next_id >= kMaxPreKeyId ? 1 : next_id + 1;
  absl::StatusOr<IdentityKeyPair> identity = core_.store->LoadLocalIdentity();
  if (!identity.ok()) return identity.status();
  absl::StatusOr<SignedPreKey> fresh =
      GenerateSignedPreKey(*core_.context, *identity, next_id, static_cast<uint64_t>(now));
  if (!fresh.ok()) return fresh.status();
  // Stored before it is published, so that a bundle claimed the moment it is published always
  // finds its private half here. It becomes current (account row) only once the server has it.
  if (absl::Status s = core_.store->StoreSignedPreKeyAt(fresh->id, fresh->record, now); !s.ok()) {
    return s;
  }
  padlock::v1::GatewayPublishPreKeysRequest request;
  request.mutable_signed_prekey()->set_key_id(fresh->id);
  request.mutable_signed_prekey()->set_public_key(fresh->public_key);
  request.mutable_signed_prekey()->set_signature(fresh->signature);
  absl::StatusOr<padlock::v1::PublishPreKeysResponse> published =
      core_.transport->PublishPreKeys(request);
  if (!published.ok()) return published.status();
  absl::Status switched = core_.store->InTransaction([&]() -> absl::Status {
    if (absl::Status s = core_.store->SetSignedPreKeyAge({current_id, current->created_at_ms, now});
        !s.ok()) {
      return s;
    }
    return core_.store->UpdatePreKeyIds(core_.account->next_prekey_id, fresh->id);
  });
  if (!switched.ok()) return switched;
  core_.account->signed_prekey_id = fresh->id;
  return true;
}

}  // namespace padlock::client
