#pragma once
// KeyStore on PostgreSQL (schema: migrations/0001_accounts_devices_prekeys.sql). Every method is
// one transaction on the primary pool, except GetDeviceLists(ReadFrom::kReplica), which reads from
// the optional read-replica pool (PADLOCK_POSTGRES_READ_DSN; replication lag makes it slightly
// stale, see docs/KEY_DIRECTORY.md). libpqxx exceptions become Status in the pool (never escape).
//
// Thread-safe (the pools are).
#include <vector>

#include "services/common/postgres/pool.h"
#include "services/key_directory/key_store.h"

namespace padlock::key_directory {

class PostgresKeyStore final : public KeyStore {
 public:
  // Statements this store runs prepared; add them to the PoolOptions of both pools.
  static std::vector<postgres::PreparedStatement> Statements();

  // `primary` (and `replica`, which may be null = use primary) must outlive the store and have
  // been created with Statements().
  PostgresKeyStore(postgres::Pool* primary, postgres::Pool* replica);

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
  postgres::Pool* const primary_;
  postgres::Pool* const replica_;
};

}  // namespace padlock::key_directory
