#include "tests/unit/key_directory/test_identities.h"

#include <cstdlib>

#include "common/statement/signed_statement.h"

namespace padlock::key_directory::testing {
namespace {
template <typename T>
T Must(absl::StatusOr<T> value) {
  if (!value.ok()) std::abort();  // test set-up cannot continue without keys
  return *std::move(value);
}
}  // namespace

TestKeys::TestKeys() : context_(Must(client::SignalContext::Create())) {}

SignedPreKey TestKeys::NewSignedPreKey(const TestDevice& device, uint32_t id) {
  client::SignedPreKey key = Must(client::GenerateSignedPreKey(*context_, device.identity, id, 0));
  return SignedPreKey{id, key.public_key, key.signature};
}

std::vector<OneTimePreKey> TestKeys::NewPreKeys(uint32_t first_id, uint32_t count) {
  std::vector<OneTimePreKey> keys;
  for (const client::PreKey& key : Must(client::GeneratePreKeys(*context_, first_id, count))) {
    keys.push_back({key.id, key.public_key});
  }
  return keys;
}

TestDevice TestKeys::NewDevice(uint32_t device_id, uint32_t prekeys, uint32_t first_prekey_id) {
  TestDevice device{.device_id = device_id,
                    .identity = Must(client::GenerateIdentityKeyPair(*context_)),
                    .registration_id = Must(client::GenerateRegistrationId(*context_))};
  device.signed_prekey = NewSignedPreKey(device, 7);
  device.one_time_prekeys = NewPreKeys(first_prekey_id, prekeys);
  return device;
}

std::string TestKeys::Sign(const TestDevice& signer, std::string_view message) {
  return Must(client::Sign(*context_, signer.identity.private_key, message));
}

DeviceList TestKeys::SignedList(const std::string& user, uint64_t version,
                                const std::vector<const TestDevice*>& devices,
                                const TestDevice& signer) {
  DeviceList list{.user_id = user, .version = version};
  for (const TestDevice* device : devices) list.entries.push_back(device->Entry());
  list.signature = Sign(signer, Must(statement::EncodeDeviceList(user, version, list.entries)));
  return list;
}

Registration TestKeys::MakeRegistration(const std::string& user, const TestDevice& primary) {
  Registration r{.user_id = user,
                 .identity_key = primary.identity.public_key,
                 .registration_id = primary.registration_id,
                 .signed_prekey = primary.signed_prekey,
                 .one_time_prekeys = primary.one_time_prekeys,
                 .device_list = SignedList(user, 1, {&primary}, primary)};
  r.registration_signature = Sign(
      primary, statement::EncodeRegistration(user, 1, primary.identity.public_key,
                                             primary.registration_id,
                                             primary.signed_prekey.key_id,
                                             primary.signed_prekey.public_key));
  return r;
}

IdentityChange TestKeys::MakeIdentityChange(const std::string& user,
                                            const TestDevice& old_primary,
                                            const TestDevice& new_primary,
                                            const std::vector<const TestDevice*>& others,
                                            uint64_t version) {
  std::vector<const TestDevice*> devices{&new_primary};
  devices.insert(devices.end(), others.begin(), others.end());
  IdentityChange c{.device = {user, 1},
                   .new_identity_key = new_primary.identity.public_key,
                   .new_registration_id = new_primary.registration_id,
                   .new_signed_prekey = new_primary.signed_prekey,
                   .new_one_time_prekeys = new_primary.one_time_prekeys,
                   .device_list = SignedList(user, version, devices, new_primary)};
  c.change_signature =
      Sign(old_primary, statement::EncodeIdentityChange(user, 1, old_primary.identity.public_key,
                                                        new_primary.identity.public_key,
                                                        new_primary.registration_id));
  return c;
}

}  // namespace padlock::key_directory::testing
