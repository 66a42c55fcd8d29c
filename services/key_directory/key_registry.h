#pragma once
// KeyRegistry: the key-directory's rules (docs/KEY_DIRECTORY.md), on plain interfaces. No grpc,
// pqxx or hiredis here; the service class converts protos, adapters implement the interfaces.
//
// Every method validates its whole input first (InvalidArgument naming the field), then checks
// signatures (Unauthenticated, counted in padlock_signature_failures_total{statement}), then
// writes through one KeyStore call (one transaction). Announcements on device channels happen
// after the commit; their failures are logged and counted, never returned.
//
// Thread-safe: no mutable state of its own; the interfaces it holds must be thread-safe.
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "services/common/device_lists/device_list_summary.h"
#include "services/common/ratelimit/rate_limiter.h"
#include "services/common/runtime/clock.h"
#include "services/key_directory/key_store.h"

namespace prometheus {
class Registry;
}

namespace padlock::key_directory {

// Single-use registration invites (Redis in production). Thread-safe.
class InviteStore {
 public:
  virtual ~InviteStore() = default;
  // Stores `token` → `for_user_id` ("" = any id) for `ttl`.
  virtual absl::Status Create(const std::string& token, const std::string& for_user_id,
                              absl::Duration ttl) = 0;
  struct Invite {
    std::string for_user_id = {};
    absl::Duration ttl_left = {};
  };
  // Takes the invite for good, atomically (two registrations never share one). NotFound when
  // unknown, used or expired.
  virtual absl::StatusOr<Invite> Consume(const std::string& token) = 0;
  // Puts back an invite that Consume returned when the registration then failed (best effort).
  virtual absl::Status Restore(const std::string& token, const Invite& invite) = 0;
};

// Claim limits are token buckets (services/common/ratelimit; Redis in production).
using ratelimit::RateLimit;
using ratelimit::RateLimiter;

// Announcements on device channels (Redis in production). Thread-safe.
class DeviceEventPublisher {
 public:
  virtual ~DeviceEventPublisher() = default;
  // The device is gone: publishes DeviceChannelEvent{revoked: true} on its channel and deletes
  // its inbox keys and push subscription.
  virtual absl::Status DeviceRevoked(const std::string& user_id, uint32_t device_id) = 0;
  // Publishes DeviceChannelEvent{prekeys_remaining: remaining} on the device's channel.
  virtual absl::Status PreKeysLow(const std::string& user_id, uint32_t device_id,
                                  uint32_t remaining) = 0;
};

// The write-through of every user's device-list summary to Redis, which the message-queue's send
// check reads instead of asking the key-directory (services/common/device_lists, docs/REDIS.md
// "Device-list summaries"). Thread-safe.
//
// Protocol. A change of what GetDeviceLists answers for a user calls BeginChange before it writes
// PostgreSQL and EndChange after (committed or not). A look-up that fills a missing summary reads
// its tokens before it reads PostgreSQL's primary and passes them to Populate. A populate is
// refused when a change began or ended since its token was read, or one is in flight, so a
// summary read from PostgreSQL before a commit can never land after that commit's BeginChange.
class DeviceListSummaries {
 public:
  virtual ~DeviceListSummaries() = default;
  // Deletes the user's summary and marks a change in flight (the mark lapses after the
  // implementation's writer deadline if EndChange never comes). Returns the token for EndChange.
  // On an error nothing may be written to PostgreSQL (the summary may still be in place).
  virtual absl::StatusOr<std::string> BeginChange(const std::string& user_id) = 0;
  // Ends the change begun with `token`. Stores `after` (the state the change committed) as the
  // summary only when no other change of the user began or ended meanwhile and none is in flight;
  // otherwise, or with nullopt (a failed change, or a state the caller does not know), leaves it
  // absent for the next look-up to fill. An error leaves the summary absent and the mark in place
  // until it lapses: look-ups then read PostgreSQL, which is correct, only slower.
  virtual absl::Status EndChange(const std::string& user_id, const std::string& token,
                                 const std::optional<device_lists::Summary>& after) = 0;
  // One token per user (same order), to be read before PostgreSQL is.
  virtual absl::StatusOr<std::vector<std::string>> PopulateTokens(
      const std::vector<std::string>& user_ids) = 0;
  // Stores summaries[i] for user_ids[i] where the protocol allows it (above) and no summary is
  // there yet. Returns how many were stored.
  virtual absl::StatusOr<int> Populate(const std::vector<std::string>& user_ids,
                                       const std::vector<std::string>& tokens,
                                       const std::vector<device_lists::Summary>& summaries) = 0;
};

enum class RegistrationPolicy { kOpen, kInvite };

struct RegistryOptions {
  RegistrationPolicy policy = RegistrationPolicy::kOpen;
  uint32_t max_devices = 5;                // PADLOCK_MAX_DEVICES
  uint32_t max_prekeys_per_call = 100;
  uint32_t max_prekeys_stored = 1000;
  uint32_t prekeys_low_threshold = 10;     // PADLOCK_PREKEYS_LOW_THRESHOLD
  uint32_t max_users_per_lookup = 1024;
  RateLimit claims_per_requester{.burst = 120, .per_second = 2};
  RateLimit claims_per_target{.burst = 60, .per_second = 1};
  absl::Duration default_invite_ttl = absl::Hours(24 * 7);
  absl::Duration max_invite_ttl = absl::Hours(24 * 90);
};

// Payload key on a ResourceExhausted status from ClaimBundles: the retry-after in milliseconds
// (decimal text). The service turns it into trailing metadata `retry-after-ms`.
inline constexpr char kRetryAfterPayload[] = "padlock/retry-after-ms";

struct Registration {
  std::string user_id = {};
  std::string identity_key = {};
  uint32_t registration_id = 0;
  std::optional<SignedPreKey> signed_prekey = {};
  std::vector<OneTimePreKey> one_time_prekeys = {};
  std::optional<DeviceList> device_list = {};
  std::string registration_signature = {};
  std::string invite_token = {};
};

struct NewDeviceKeys {
  uint32_t device_id = 0;
  std::optional<SignedPreKey> signed_prekey = {};
  std::vector<OneTimePreKey> one_time_prekeys = {};
};

struct PublishDeviceListResult {
  uint64_t version = 0;
  std::vector<uint32_t> removed_device_ids = {};
};

struct IdentityChange {
  DeviceAddress device = {};
  std::string new_identity_key = {};
  uint32_t new_registration_id = 0;
  std::optional<SignedPreKey> new_signed_prekey = {};
  std::vector<OneTimePreKey> new_one_time_prekeys = {};
  std::string change_signature = {};
  std::optional<DeviceList> device_list = {};
};

struct IdentityKeyInfo {
  std::string identity_key = {};
  uint32_t registration_id = 0;
  uint64_t device_list_version = 0;
};

struct Invitation {
  std::string token = {};
  absl::Time expires_at = {};
};

class KeyRegistry {
 public:
  // `store`, `invites`, `limiter`, `publisher` and `summaries` must outlive the registry.
  // `summaries` may be null only where no message-queue reads the summaries (some tests): then
  // nothing is written through and GetDeviceLists may read the replica. `metrics` may be null (no
  // metrics); otherwise the families are added to it. `clock` (must outlive the registry) and
  // `new_token` default to the system clock and 128 random bits (URL-safe base64).
  //
  // Every change of what GetDeviceLists answers (Register, PublishDeviceList, ChangeIdentity,
  // DeleteAccount, ResetIdentity, BanAccount, UnbanAccount, AdminDeleteAccount) is bracketed by
  // DeviceListSummaries::BeginChange / EndChange: when BeginChange fails the change is refused
  // with Unavailable and nothing is written; an EndChange failure after the commit is logged and
  // counted (padlock_device_list_summary_failures_total{step="end"}), never returned.
  KeyRegistry(KeyStore* store, InviteStore* invites, RateLimiter* limiter,
              DeviceEventPublisher* publisher, DeviceListSummaries* summaries,
              RegistryOptions options,
              prometheus::Registry* metrics = nullptr,
              runtime::Clock* clock = nullptr,
              std::function<std::string()> new_token = nullptr);
  ~KeyRegistry();

  // Creates the account with device 1. Returns the stored version. Codes: InvalidArgument
  // (field named), Unauthenticated (signed prekey, device list or registration statement),
  // PermissionDenied (invite required, unknown/used/for another id; banned id), AlreadyExists.
  // A reset account is re-registered with an invite made for its id and a device list version
  // above the last one.
  absl::StatusOr<uint64_t> Register(const Registration& request);

  // Codes: InvalidArgument, PermissionDenied (caller not device 1 of the list's user), NotFound,
  // FailedPrecondition (version not higher, too many devices, a removed id reused, primary
  // missing or changed, a kept device's keys changed), Unauthenticated, Aborted (concurrent
  // change).
  absl::StatusOr<PublishDeviceListResult> PublishDeviceList(
      const DeviceAddress& caller, const DeviceList& list,
      const std::vector<NewDeviceKeys>& new_device_keys);

  // Returns the one-time prekeys stored afterwards. Codes: InvalidArgument (over 100, duplicate
  // ids in the call, bad keys), NotFound, Unauthenticated, AlreadyExists, ResourceExhausted.
  absl::StatusOr<uint32_t> PublishPreKeys(const DeviceAddress& device,
                                          const std::optional<SignedPreKey>& signed_prekey,
                                          const std::vector<OneTimePreKey>& one_time_prekeys);

  // Codes: InvalidArgument, NotFound (unknown/banned user, device), ResourceExhausted (rate
  // limit; payload kRetryAfterPayload), Unauthenticated(kRequesterNotListedMessage) when
  // `require_listed_requester` and the requester is not listed (checked in the claim's
  // statement, after the rate limits are charged).
  absl::StatusOr<ClaimResult> ClaimBundles(const DeviceAddress& requester,
                                           const std::string& user_id, uint32_t device_id,
                                           bool require_listed_requester = false);

  absl::StatusOr<DeviceList> GetDeviceList(const std::string& user_id);
  // The message-queue's look-up: reads PostgreSQL's primary (with summaries) and fills the
  // missing summaries of `user_ids` (unknown ones as not listed). A failure to fill is logged and
  // counted, never returned.
  absl::StatusOr<std::vector<DeviceList>> GetDeviceLists(const std::vector<std::string>& user_ids);
  absl::StatusOr<IdentityKeyInfo> GetIdentityKey(const DeviceAddress& device);

  // Only the primary (device 1) changes identity; a linked device is unlinked and linked again
  // under a new id. Codes: InvalidArgument (device_list missing), NotFound, PermissionDenied (not
  // the primary), Unauthenticated, FailedPrecondition (list rules as PublishDeviceList), Aborted.
  absl::StatusOr<uint64_t> ChangeIdentity(const IdentityChange& change);

  // Self-deletion by the primary. Codes: InvalidArgument, PermissionDenied, NotFound.
  absl::Status DeleteAccount(const DeviceAddress& caller);

  // Operator actions.
  absl::StatusOr<Invitation> CreateInvite(absl::Duration ttl, const std::string& for_user_id);
  absl::Status ResetIdentity(const std::string& user_id);
  absl::Status BanAccount(const std::string& user_id);
  absl::Status UnbanAccount(const std::string& user_id);  // NotFound when not banned
  absl::Status AdminDeleteAccount(const std::string& user_id);

 private:
  struct Metrics;
  absl::Status CheckDeviceListSignature(const DeviceList& list, const std::string& signer,
                                        const char* field);
  absl::Status CheckSignedPreKey(const std::string& identity_key, const SignedPreKey& key,
                                 const char* field);
  absl::Status CountedSignatureFailure(const char* statement, std::string message);
  void RevokeDevices(const std::string& user_id, const std::vector<uint32_t>& device_ids);
  // Runs `change` (returning absl::Status or absl::StatusOr<T>) inside a change of `user_id`'s
  // device-list summary: BeginChange deletes it first, and EndChange writes `after` only when the
  // change succeeded (nothing otherwise: the next look-up fills it from PostgreSQL). Unavailable,
  // with `change` not run, when the summary could not be deleted first. Without summaries it
  // just runs `change`.
  template <typename Change>
  auto WithSummaryChange(const std::string& user_id, std::optional<device_lists::Summary> after,
                         Change change) -> decltype(change());
  // BeginChange, or "" when there are no summaries; Unavailable naming the step on failure.
  absl::StatusOr<std::string> BeginSummaryChange(const std::string& user_id);
  // EndChange when there are summaries; failures logged and counted.
  void EndSummaryChange(const std::string& user_id, const std::string& token,
                        const std::optional<device_lists::Summary>& after);
  void SummaryFailure(const char* step, const std::string& user_id, const absl::Status& status);
  void RecordRegistration(const char* result);

  KeyStore* const store_;
  InviteStore* const invites_;
  RateLimiter* const limiter_;
  DeviceEventPublisher* const publisher_;
  DeviceListSummaries* const summaries_;
  const RegistryOptions options_;
  std::unique_ptr<Metrics> metrics_;
  runtime::Clock* const clock_;
  std::function<std::string()> new_token_;
};

// Field checks shared by the registry (exposed for tests). InvalidArgument naming `field`.
absl::Status ValidateUserIdField(std::string_view user_id, const char* field);
absl::Status ValidateKeyField(std::string_view key, const char* field);
absl::Status ValidateSignatureField(std::string_view signature, const char* field);
absl::Status ValidateOneTimePreKeys(const std::vector<OneTimePreKey>& keys, uint32_t max,
                                    const char* field);

template <typename Change>
auto KeyRegistry::WithSummaryChange(const std::string& user_id,
                                    std::optional<device_lists::Summary> after, Change change)
    -> decltype(change()) {
  absl::StatusOr<std::string> token = BeginSummaryChange(user_id);
  if (!token.ok()) return token.status();
  auto result = change();
  EndSummaryChange(user_id, *token, result.ok() ? std::move(after) : std::nullopt);
  return result;
}

}  // namespace padlock::key_directory
