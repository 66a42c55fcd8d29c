// Messenger: account upkeep — unlinking a device (the primary publishes the next signed device
// list without it; the server revokes it) and the scheduled rotation of this device's signed
// prekey (docs/CLIENT.md "Unlinking", "Signed-prekey rotation").
#include <algorithm>
#include <vector>

#include "absl/strings/str_cat.h"
#include "clients/sdk/device_list.h"
#include "clients/sdk/identity.h"
#include "clients/sdk/messenger.h"
#include "services/common/statement/signed_statement.h"

namespace padlock::client {

absl::Time Messenger::ClockNow() const {
  return (options_.clock != nullptr ? options_.clock : runtime::SystemClock::Get())->Now();
}

absl::Status Messenger::UnlinkDevice(uint32_t device_id) {
  if (!account_.has_value()) return account().status();
  if (account_->device_id != 1) {
    return absl::FailedPreconditionError(
        "only the primary device (device 1) can unlink devices");
  }
  if (device_id == 1) {
    return absl::InvalidArgumentError(
        "device 1 is the primary: it cannot be unlinked (delete the account instead)");
  }
  absl::StatusOr<padlock::v1::SignedDeviceList> current = RefreshDeviceList(account_->user_id);
  if (!current.ok()) return current.status();
  if (FindDevice(current->list(), device_id) == nullptr) {
    return absl::NotFoundError(absl::StrCat("device ", device_id, " is not on the device list of ",
                                            account_->user_id));
  }
  padlock::v1::SignedDeviceList next;
  next.mutable_list()->set_user_id(account_->user_id);
  next.mutable_list()->set_version(current->list().version() + 1);
  for (const padlock::v1::DeviceListEntry& e : current->list().devices()) {
    if (e.device_id() == device_id) continue;
    *next.mutable_list()->add_devices() = e;
  }
  absl::StatusOr<IdentityKeyPair> identity = store_->LoadLocalIdentity();
  if (!identity.ok()) return identity.status();
  if (absl::Status s = SignDeviceList(*context_, identity->private_key, next); !s.ok()) return s;

  padlock::v1::GatewayPublishDeviceListRequest request;
  *request.mutable_device_list() = next;
  // The server answers UNAUTHENTICATED for a token older than the account's list; the gateway
  // client logs in again and retries once.
  absl::StatusOr<padlock::v1::PublishDeviceListResponse> published =
      gateway_->PublishDeviceList(request);
  if (!published.ok()) return published.status();
  // From now on this device encrypts only to the remaining devices.
  return store_->InTransaction([&]() -> absl::Status {
    if (absl::Status s = store_->SaveVerifiedDeviceList(
            account_->user_id, {next.list().version(), next.SerializeAsString()});
        !s.ok()) {
      return s;
    }
    return store_->DeleteSession({account_->user_id, static_cast<int32_t>(device_id)});
  });
}

absl::StatusOr<bool> Messenger::RotateSignedPreKeyIfDue() {
  if (!account_.has_value()) return account().status();
  const int64_t now = absl::ToUnixMillis(ClockNow());
  absl::StatusOr<std::vector<SignedPreKeyInfo>> keys = store_->ListSignedPreKeys();
  if (!keys.ok()) return keys.status();
  const uint32_t current_id = account_->signed_prekey_id;
  auto current = std::find_if(keys->begin(), keys->end(),
                              [&](const SignedPreKeyInfo& k) { return k.id == current_id; });
  if (current == keys->end()) {
    return absl::DataLossError(
        absl::StrCat("the current signed prekey ", current_id, " is missing from the store"));
  }
  // Retired keys whose grace has passed: no PreKey message built on them can still be queued.
  const int64_t grace_ms = absl::ToInt64Milliseconds(options_.signed_prekey_grace);
  for (const SignedPreKeyInfo& k : *keys) {
    if (k.id == current_id) continue;
    if (k.retired_at_ms == 0) {
      // Not current and never retired: an earlier rotation stored it but did not finish (the
      // publish failed, or this process died before switching). It may have reached the server,
      // so it gets the grace period like any replaced key.
      if (absl::Status s = store_->SetSignedPreKeyAge({k.id, k.created_at_ms, now}); !s.ok()) {
        return s;
      }
    } else if (now - k.retired_at_ms >= grace_ms) {
      if (absl::Status s = store_->DeleteSignedPreKey(k.id); !s.ok()) return s;
    }
  }
  if (current->created_at_ms == 0) {
    // Stored without an age (by registration, linking, or before schema v3): it is as old as
    // this first check says.
    if (absl::Status s = store_->SetSignedPreKeyAge({current_id, now, 0}); !s.ok()) return s;
    current->created_at_ms = now;
  }
  if (now - current->created_at_ms < absl::ToInt64Milliseconds(options_.signed_prekey_rotation)) {
    return false;
  }
  // A fresh id above every stored one (and never 0): a key published by an earlier attempt that
  // crashed before it became current is not reused with different bytes.
  uint32_t next_id = current_id;
  for (const SignedPreKeyInfo& k : *keys) next_id = std::max(next_id, k.id);
  next_id = next_id >= kMaxPreKeyId ? 1 : next_id + 1;
  absl::StatusOr<IdentityKeyPair> identity = store_->LoadLocalIdentity();
  if (!identity.ok()) return identity.status();
  absl::StatusOr<SignedPreKey> fresh =
      GenerateSignedPreKey(*context_, *identity, next_id, static_cast<uint64_t>(now));
  if (!fresh.ok()) return fresh.status();
  // Stored before it is published, so that a bundle claimed the moment it is published always
  // finds its private half here. It becomes current (account row) only once the server has it.
  if (absl::Status s = store_->StoreSignedPreKeyAt(fresh->id, fresh->record, now); !s.ok()) {
    return s;
  }
  padlock::v1::GatewayPublishPreKeysRequest request;
  request.mutable_signed_prekey()->set_key_id(fresh->id);
  request.mutable_signed_prekey()->set_public_key(fresh->public_key);
  request.mutable_signed_prekey()->set_signature(fresh->signature);
  absl::StatusOr<padlock::v1::PublishPreKeysResponse> published =
      gateway_->PublishPreKeys(request);
  if (!published.ok()) return published.status();
  absl::Status switched = store_->InTransaction([&]() -> absl::Status {
    if (absl::Status s = store_->SetSignedPreKeyAge({current_id, current->created_at_ms, now});
        !s.ok()) {
      return s;
    }
    return store_->UpdatePreKeyIds(account_->next_prekey_id, fresh->id);
  });
  if (!switched.ok()) return switched;
  account_->signed_prekey_id = fresh->id;
  return true;
}

}  // namespace padlock::client
