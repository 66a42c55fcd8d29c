#pragma once
// Real keys and signatures for key-directory tests (libsignal through clients/sdk): a device with
// an identity key pair, a signed prekey and one-time prekeys, and helpers that sign statements.
// Not thread-safe (one SignalContext per TestKeys).
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "clients/sdk/crypto_provider.h"
#include "clients/sdk/identity.h"
#include "services/key_directory/key_registry.h"

namespace padlock::key_directory::testing {

struct TestDevice {
  uint32_t device_id = 1;
  client::IdentityKeyPair identity = {};
  uint32_t registration_id = 0;
  SignedPreKey signed_prekey = {};
  std::vector<OneTimePreKey> one_time_prekeys = {};
  statement::DeviceListEntry Entry() const {
    return {device_id, identity.public_key, registration_id};
  }
};

class TestKeys {
 public:
  TestKeys();
  // A device with fresh keys and `prekeys` one-time prekeys with ids first_prekey_id, ...
  TestDevice NewDevice(uint32_t device_id, uint32_t prekeys, uint32_t first_prekey_id = 1);
  // A signed prekey (id `id`) signed by `device`'s identity key.
  SignedPreKey NewSignedPreKey(const TestDevice& device, uint32_t id);
  std::vector<OneTimePreKey> NewPreKeys(uint32_t first_id, uint32_t count);
  std::string Sign(const TestDevice& signer, std::string_view message);
  // `devices` (sorted by id) signed by `signer`.
  DeviceList SignedList(const std::string& user, uint64_t version,
                        const std::vector<const TestDevice*>& devices, const TestDevice& signer);
  // A complete, valid registration of `primary` as `user`.
  Registration MakeRegistration(const std::string& user, const TestDevice& primary);
  // ChangeIdentity from `old_primary` to `new_primary` with the list `others` kept.
  IdentityChange MakeIdentityChange(const std::string& user, const TestDevice& old_primary,
                                    const TestDevice& new_primary,
                                    const std::vector<const TestDevice*>& others,
                                    uint64_t version);

 private:
  std::unique_ptr<client::SignalContext> context_;
};

}  // namespace padlock::key_directory::testing
