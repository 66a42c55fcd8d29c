#pragma once
// A KeyStore in process memory for unit tests; held to PostgresKeyStore's behaviour by the
// contract suite (tests/fakes/key_store_contract.h). Thread-safe (one mutex).
#include <map>
#include <mutex>
#include <string>

#include "absl/base/thread_annotations.h"
#include "services/key_directory/key_store.h"

namespace padlock::key_directory {

class InMemoryKeyStore final : public KeyStore {
 public:
  absl::StatusOr<AccountState> GetAccount(const std::string& user_id) override;
  absl::Status CreateAccount(const NewAccount& account, bool reclaim_reset) override;
  absl::Status ApplyDeviceList(const DeviceListUpdate& update) override;
  absl::StatusOr<uint32_t> AddPreKeys(const DeviceAddress& device,
                                      const std::optional<SignedPreKey>& signed_prekey,
                                      const std::vector<OneTimePreKey>& one_time_prekeys,
                                      uint32_t max_stored) override;
  absl::StatusOr<ClaimResult> ClaimBundles(
      const std::string& user_id, uint32_t device_id,
      const std::optional<DeviceAddress>& listed_requester) override;
  absl::StatusOr<std::vector<DeviceList>> GetDeviceLists(
      const std::vector<std::string>& user_ids, ReadFrom from) override;
  absl::StatusOr<std::vector<uint32_t>> DeleteAccount(const std::string& user_id) override;
  absl::StatusOr<std::vector<uint32_t>> SetBanned(const std::string& user_id,
                                                  bool banned) override;
  absl::StatusOr<std::vector<uint32_t>> ResetAccount(const std::string& user_id) override;

 private:
  struct Device {
    std::string identity_key = {};
    uint32_t registration_id = 0;
    std::optional<SignedPreKey> signed_prekey = {};
    std::map<uint32_t, std::string> one_time_prekeys = {};  // key id → public key
  };
  struct Account {
    uint64_t version = 0;
    std::string signature = {};  // empty when reset
    uint32_t max_device_id = 1;
    bool banned = false;
    std::map<uint32_t, Device> devices = {};
  };
  static DeviceList ListOf(const std::string& user_id, const Account& account);
  static void Write(Account& account, const DeviceKeys& keys);

  std::mutex mu_;
  std::map<std::string, Account> accounts_ ABSL_GUARDED_BY(mu_);
};

}  // namespace padlock::key_directory
