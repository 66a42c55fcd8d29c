#pragma once
// Domain types of the key-directory and the KeyStore interface (PostgresKeyStore in production,
// InMemoryKeyStore in unit tests; tests/fakes/key_store_contract.h keeps them equal).
// Plain C++: no grpc, pqxx or hiredis here.
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/statement/signed_statement.h"

namespace padlock::key_directory {

struct SignedPreKey {
  uint32_t key_id = 0;
  std::string public_key = {};  // 33 bytes
  std::string signature = {};   // 64 bytes, by the device's identity key over public_key
  friend bool operator==(const SignedPreKey&, const SignedPreKey&) = default;
};

struct OneTimePreKey {
  uint32_t key_id = 0;
  std::string public_key = {};  // 33 bytes
  friend bool operator==(const OneTimePreKey&, const OneTimePreKey&) = default;
};

struct DeviceAddress {
  std::string user_id = {};
  uint32_t device_id = 0;
};

// A signed device list; entries in strictly ascending device id.
struct DeviceList {
  std::string user_id = {};
  uint64_t version = 0;
  std::vector<statement::DeviceListEntry> entries = {};
  std::string signature = {};  // 64 bytes, by the primary's identity key
  friend bool operator==(const DeviceList&, const DeviceList&) = default;
};

// A device's keys as written by Register, PublishDeviceList (linking) and ChangeIdentity.
struct DeviceKeys {
  uint32_t device_id = 0;
  std::string identity_key = {};
  uint32_t registration_id = 0;
  std::optional<SignedPreKey> signed_prekey = {};  // absent: linked without keys yet
  std::vector<OneTimePreKey> one_time_prekeys = {};
};

// What write paths need to know about an account.
struct AccountState {
  bool banned = false;
  // True after an operator reset: no devices, no list signature, the id kept for its owner.
  bool reset = false;
  uint32_t max_device_id = 0;
  DeviceList list;  // the current list (entries empty and no signature when reset)
};

struct NewAccount {
  DeviceList list = {};     // version ≥ 1, exactly the primary
  DeviceKeys primary = {};  // device 1
};

// One change of the device list, applied in one transaction.
struct DeviceListUpdate {
  // The version the change was validated against; the store answers Aborted when it moved.
  uint64_t expected_version = 0;
  DeviceList list = {};
  std::vector<uint32_t> removed_device_ids = {};  // rows (and their prekeys) deleted
  // Rows inserted, or replaced when they exist (old one-time prekeys deleted).
  std::vector<DeviceKeys> written_devices = {};
};

struct Bundle {
  uint32_t device_id = 0;
  std::string identity_key = {};
  uint32_t registration_id = 0;
  SignedPreKey signed_prekey = {};
  std::optional<OneTimePreKey> one_time_prekey = {};  // taken for good; absent when none was left
  uint32_t one_time_prekeys_remaining = 0;       // after this claim
};

struct ClaimResult {
  DeviceList list = {};
  std::vector<Bundle> bundles = {};  // ascending device id
};

// Where a look-up may be served from.
enum class ReadFrom {
  kReplica,  // the read replica when one is configured: may lag behind recent commits
  kPrimary,  // the primary: sees every committed change (what a cache fill must read)
};

// The message of ClaimBundles' Unauthenticated refusal of a requester that is not listed.
inline constexpr char kRequesterNotListedMessage[] = "requester not listed";

// Holds accounts, devices and prekeys. Thread-safe. Every method is one transaction: on an
// error nothing was written. Unavailable / DeadlineExceeded / ResourceExhausted may come from
// the backend on any call.
class KeyStore {
 public:
  virtual ~KeyStore() = default;

  // Any account, banned and reset ones included. NotFound when the id is unknown.
  virtual absl::StatusOr<AccountState> GetAccount(const std::string& user_id) = 0;

  // Creates the account, or — when `reclaim_reset` — re-populates a reset account whose version
  // is below account.list.version. AlreadyExists when the id is taken (including a reset account
  // without `reclaim_reset`); PermissionDenied when banned; FailedPrecondition when reclaiming
  // with a version not above the stored one.
  virtual absl::Status CreateAccount(const NewAccount& account, bool reclaim_reset) = 0;

  // Applies `update`. NotFound (no account, banned, reset), Aborted (version moved).
  // max_device_id becomes max(old, highest listed id).
  virtual absl::Status ApplyDeviceList(const DeviceListUpdate& update) = 0;

  // Replaces the device's signed prekey (when given) and adds `one_time_prekeys`. Returns the
  // number stored afterwards. NotFound (device not listed, account banned or reset),
  // AlreadyExists (a key id already stored), ResourceExhausted (more than `max_stored`).
  virtual absl::StatusOr<uint32_t> AddPreKeys(const DeviceAddress& device,
                                              const std::optional<SignedPreKey>& signed_prekey,
                                              const std::vector<OneTimePreKey>& one_time_prekeys,
                                              uint32_t max_stored) = 0;

  // Bundles of `device_id` (0: every listed device that has a signed prekey), each taking one
  // one-time prekey (lowest key id first) for good; concurrent claims never get the same key.
  // NotFound: unknown, banned or reset user; device not listed; device without signed prekey.
  // With `listed_requester`, first (in the same statement): Unauthenticated unless that device
  // is on its account's current list and the account is not banned; nothing is taken then.
  virtual absl::StatusOr<ClaimResult> ClaimBundles(
      const std::string& user_id, uint32_t device_id,
      const std::optional<DeviceAddress>& listed_requester) = 0;

  // Current lists of the given users; unknown, banned and reset users are left out. With
  // ReadFrom::kReplica it may be served by a read replica (slightly stale).
  virtual absl::StatusOr<std::vector<DeviceList>> GetDeviceLists(
      const std::vector<std::string>& user_ids, ReadFrom from) = 0;

  // Deletes the account and everything under it. Returns the device ids it had. NotFound.
  virtual absl::StatusOr<std::vector<uint32_t>> DeleteAccount(const std::string& user_id) = 0;

  // Sets the ban flag. Returns the account's device ids. NotFound when the id is unknown.
  virtual absl::StatusOr<std::vector<uint32_t>> SetBanned(const std::string& user_id,
                                                          bool banned) = 0;

  // Deletes every device (and key) but keeps the id and the version. Returns the removed device
  // ids. NotFound when unknown.
  virtual absl::StatusOr<std::vector<uint32_t>> ResetAccount(const std::string& user_id) = 0;
};

}  // namespace padlock::key_directory
