#include "services/key_directory/in_memory_key_store.h"

#include <algorithm>

#include "absl/status/status.h"

namespace padlock::key_directory {

DeviceList InMemoryKeyStore::ListOf(const std::string& user_id, const Account& account) {
  DeviceList list{.user_id = user_id, .version = account.version, .signature = account.signature};
  for (const auto& [id, device] : account.devices) {
    list.entries.push_back({id, device.identity_key, device.registration_id});
  }
  return list;
}

void InMemoryKeyStore::Write(Account& account, const DeviceKeys& keys) {
  Device& device = account.devices[keys.device_id];
  device = Device{.identity_key = keys.identity_key,
                  .registration_id = keys.registration_id,
                  .signed_prekey = keys.signed_prekey};
  for (const OneTimePreKey& key : keys.one_time_prekeys) {
    device.one_time_prekeys[key.key_id] = key.public_key;
  }
}

absl::StatusOr<AccountState> InMemoryKeyStore::GetAccount(const std::string& user_id) {
  std::lock_guard lock(mu_);
  auto it = accounts_.find(user_id);
  if (it == accounts_.end()) return absl::NotFoundError("no account");
  const Account& account = it->second;
  return AccountState{.banned = account.banned,
                      .reset = account.devices.empty(),
                      .max_device_id = account.max_device_id,
                      .list = ListOf(user_id, account)};
}

absl::Status InMemoryKeyStore::CreateAccount(const NewAccount& account, bool reclaim_reset) {
  std::lock_guard lock(mu_);
  const std::string& user = account.list.user_id;
  auto it = accounts_.find(user);
  if (it != accounts_.end()) {
    Account& existing = it->second;
    if (existing.banned) return absl::PermissionDeniedError("account banned");
    if (!existing.devices.empty() || !reclaim_reset) {
      return absl::AlreadyExistsError("user id taken");
    }
    if (account.list.version <= existing.version) {
      return absl::FailedPreconditionError("device_list.version must exceed the reset version");
    }
    existing.version = account.list.version;
    existing.signature = account.list.signature;
    existing.max_device_id = std::max<uint32_t>(existing.max_device_id, 1);
    Write(existing, account.primary);
    return absl::OkStatus();
  }
  Account created{.version = account.list.version, .signature = account.list.signature};
  Write(created, account.primary);
  accounts_.emplace(user, std::move(created));
  return absl::OkStatus();
}

absl::Status InMemoryKeyStore::ApplyDeviceList(const DeviceListUpdate& update) {
  std::lock_guard lock(mu_);
  auto it = accounts_.find(update.list.user_id);
  if (it == accounts_.end() || it->second.banned || it->second.devices.empty()) {
    return absl::NotFoundError("no account");
  }
  Account& account = it->second;
  if (account.version != update.expected_version) {
    return absl::AbortedError("device list changed concurrently");
  }
  for (uint32_t id : update.removed_device_ids) account.devices.erase(id);
  for (const DeviceKeys& keys : update.written_devices) Write(account, keys);
  account.version = update.list.version;
  account.signature = update.list.signature;
  for (const auto& entry : update.list.entries) {
    account.max_device_id = std::max(account.max_device_id, entry.device_id);
  }
  return absl::OkStatus();
}

absl::StatusOr<uint32_t> InMemoryKeyStore::AddPreKeys(
    const DeviceAddress& address, const std::optional<SignedPreKey>& signed_prekey,
    const std::vector<OneTimePreKey>& one_time_prekeys, uint32_t max_stored) {
  std::lock_guard lock(mu_);
  auto it = accounts_.find(address.user_id);
  if (it == accounts_.end() || it->second.banned) return absl::NotFoundError("no account");
  auto device = it->second.devices.find(address.device_id);
  if (device == it->second.devices.end()) return absl::NotFoundError("device not listed");
  auto& stored = device->second.one_time_prekeys;
  for (const OneTimePreKey& key : one_time_prekeys) {
    if (stored.contains(key.key_id)) {
      return absl::AlreadyExistsError("one-time prekey id already stored");
    }
  }
  if (stored.size() + one_time_prekeys.size() > max_stored) {
    return absl::ResourceExhaustedError("too many one-time prekeys stored");
  }
  if (signed_prekey) device->second.signed_prekey = signed_prekey;
  for (const OneTimePreKey& key : one_time_prekeys) stored[key.key_id] = key.public_key;
  return static_cast<uint32_t>(stored.size());
}

absl::StatusOr<ClaimResult> InMemoryKeyStore::ClaimBundles(
    const std::string& user_id, uint32_t device_id,
    const std::optional<DeviceAddress>& listed_requester) {
  std::lock_guard lock(mu_);
  if (listed_requester) {
    auto requester = accounts_.find(listed_requester->user_id);
    if (requester == accounts_.end() || requester->second.banned ||
        !requester->second.devices.contains(listed_requester->device_id)) {
      return absl::UnauthenticatedError(kRequesterNotListedMessage);
    }
  }
  auto it = accounts_.find(user_id);
  if (it == accounts_.end() || it->second.banned || it->second.devices.empty()) {
    return absl::NotFoundError("no account");
  }
  Account& account = it->second;
  ClaimResult result{.list = ListOf(user_id, account)};
  for (auto& [id, device] : account.devices) {
    if (device_id != 0 && id != device_id) continue;
    if (!device.signed_prekey) continue;
    Bundle bundle{.device_id = id,
                  .identity_key = device.identity_key,
                  .registration_id = device.registration_id,
                  .signed_prekey = *device.signed_prekey};
    if (!device.one_time_prekeys.empty()) {
      auto first = device.one_time_prekeys.begin();
      bundle.one_time_prekey = OneTimePreKey{first->first, first->second};
      device.one_time_prekeys.erase(first);
    }
    bundle.one_time_prekeys_remaining = static_cast<uint32_t>(device.one_time_prekeys.size());
    result.bundles.push_back(std::move(bundle));
  }
  if (device_id != 0 && result.bundles.empty()) {
    return absl::NotFoundError("device not listed or without signed prekey");
  }
  return result;
}

absl::StatusOr<std::vector<DeviceList>> InMemoryKeyStore::GetDeviceLists(
    const std::vector<std::string>& user_ids, ReadFrom /*from: one copy only*/) {
  std::lock_guard lock(mu_);
  std::vector<DeviceList> lists;
  for (const std::string& user : user_ids) {
    auto it = accounts_.find(user);
    if (it == accounts_.end() || it->second.banned || it->second.devices.empty()) continue;
    if (std::any_of(lists.begin(), lists.end(),
                    [&](const DeviceList& l) { return l.user_id == user; })) {
      continue;
    }
    lists.push_back(ListOf(user, it->second));
  }
  return lists;
}

absl::StatusOr<std::vector<uint32_t>> InMemoryKeyStore::DeleteAccount(const std::string& user_id) {
  std::lock_guard lock(mu_);
  auto it = accounts_.find(user_id);
  if (it == accounts_.end()) return absl::NotFoundError("no account");
  std::vector<uint32_t> ids;
  for (const auto& [id, device] : it->second.devices) ids.push_back(id);
  accounts_.erase(it);
  return ids;
}

absl::StatusOr<std::vector<uint32_t>> InMemoryKeyStore::SetBanned(const std::string& user_id,
                                                                  bool banned) {
  std::lock_guard lock(mu_);
  auto it = accounts_.find(user_id);
  if (it == accounts_.end()) return absl::NotFoundError("no account");
  it->second.banned = banned;
  std::vector<uint32_t> ids;
  for (const auto& [id, device] : it->second.devices) ids.push_back(id);
  return ids;
}

absl::StatusOr<std::vector<uint32_t>> InMemoryKeyStore::ResetAccount(const std::string& user_id) {
  std::lock_guard lock(mu_);
  auto it = accounts_.find(user_id);
  if (it == accounts_.end()) return absl::NotFoundError("no account");
  std::vector<uint32_t> ids;
  for (const auto& [id, device] : it->second.devices) ids.push_back(id);
  it->second.devices.clear();
  it->second.signature.clear();
  return ids;
}

}  // namespace padlock::key_directory
