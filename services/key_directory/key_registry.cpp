#include "services/key_directory/key_registry.h"

#include <openssl/rand.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <set>
#include <string_view>

#include "absl/strings/cord.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "common/statement/ids.h"
#include "common/statement/signature.h"
#include "prometheus/counter.h"
#include "prometheus/histogram.h"
#include "prometheus/registry.h"
#include "services/common/runtime/absl_compat.h"
#include "services/common/runtime/logging.h"
#include "services/common/runtime/status_macros.h"

namespace padlock::key_directory {
namespace {

namespace st = padlock::statement;
namespace runtime = padlock::runtime;

constexpr uint32_t kPrimaryDevice = 1;

std::string RandomToken() {
  unsigned char bytes[16];
  // RAND_bytes only fails when the OS entropy source is broken: an impossible state to serve in.
  if (RAND_bytes(bytes, sizeof bytes) != 1) std::abort();
  std::string token;
  absl::WebSafeBase64Escape(absl::string_view(reinterpret_cast<const char*>(bytes), sizeof bytes),
                            &token);
  return token;
}

absl::Status Invalid(const char* field, std::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat(field, ": ", ToAbsl(what)));
}

// Entries strictly ascending, each valid; returns InvalidArgument naming the field.
absl::Status ValidateList(const DeviceList& list, const char* field) {
  RETURN_IF_ERROR(ValidateUserIdField(list.user_id, field));
  if (list.version == 0) return Invalid(field, "version must be at least 1");
  if (list.entries.empty()) return Invalid(field, "no devices");
  uint32_t previous = 0;
  for (const auto& entry : list.entries) {
    if (entry.device_id == 0) return Invalid(field, "device id 0");
    if (entry.device_id <= previous) {
      return Invalid(field, "devices not in strictly ascending id order");
    }
    previous = entry.device_id;
    RETURN_IF_ERROR(ValidateKeyField(entry.identity_key, field));
  }
  return ValidateSignatureField(list.signature, field);
}

absl::Status ValidateSignedPreKeyField(const std::optional<SignedPreKey>& key, const char* field,
                                       bool required) {
  if (!key) return required ? Invalid(field, "required") : absl::OkStatus();
  RETURN_IF_ERROR(ValidateKeyField(key->public_key, field));
  return ValidateSignatureField(key->signature, field);
}

device_lists::Summary SummaryOf(const DeviceList& list) {
  device_lists::Summary summary{.listed = true, .version = list.version};
  for (const auto& entry : list.entries) {
    summary.devices.push_back({entry.device_id, entry.registration_id});
  }
  return summary;
}

const device_lists::Summary kNotListed{};

const statement::DeviceListEntry* FindEntry(const DeviceList& list, uint32_t device_id) {
  for (const auto& entry : list.entries) {
    if (entry.device_id == device_id) return &entry;
  }
  return nullptr;
}

}  // namespace

absl::Status ValidateUserIdField(std::string_view user_id, const char* field) {
  if (!st::IsValidUserId(user_id)) {
    return Invalid(field, "not a username ([a-z0-9._-]{3,32}) or E.164 phone number");
  }
  return absl::OkStatus();
}

absl::Status ValidateKeyField(std::string_view key, const char* field) {
  if (absl::Status s = st::ValidatePublicKey(key); !s.ok()) {
    return Invalid(field, ToStd(s.message()));
  }
  return absl::OkStatus();
}

absl::Status ValidateSignatureField(std::string_view signature, const char* field) {
  if (signature.size() != st::kSignatureSize) return Invalid(field, "signature must be 64 bytes");
  return absl::OkStatus();
}

absl::Status ValidateOneTimePreKeys(const std::vector<OneTimePreKey>& keys, uint32_t max,
                                    const char* field) {
  if (keys.size() > max) return Invalid(field, absl::StrCat("more than ", max, " keys"));
  std::set<uint32_t> ids;
  for (const OneTimePreKey& key : keys) {
    if (!ids.insert(key.key_id).second) return Invalid(field, "duplicate key id");
    RETURN_IF_ERROR(ValidateKeyField(key.public_key, field));
  }
  return absl::OkStatus();
}

struct KeyRegistry::Metrics {
  explicit Metrics(prometheus::Registry& registry)
      : registrations(prometheus::BuildCounter()
                          .Name("padlock_registrations_total")
                          .Help("Register calls by outcome")
                          .Register(registry)),
        claims(prometheus::BuildCounter()
                   .Name("padlock_bundle_claims_total")
                   .Help("Bundles handed out, by whether they carried a one-time prekey")
                   .Register(registry)),
        remaining(prometheus::BuildHistogram()
                      .Name("padlock_prekeys_remaining")
                      .Help("One-time prekeys left on a device after a claim")
                      .Register(registry)),
        signature_failures(prometheus::BuildCounter()
                               .Name("padlock_signature_failures_total")
                               .Help("Signatures that did not verify, by statement")
                               .Register(registry)),
        publish_failures(prometheus::BuildCounter()
                             .Name("padlock_key_directory_announce_failures_total")
                             .Help("Device channel announcements or inbox purges that failed "
                                   "after a commit")
                             .Register(registry)),
        summary_failures(prometheus::BuildCounter()
                             .Name("padlock_device_list_summary_failures_total")
                             .Help("Redis device-list summary steps that failed, by step "
                                   "(begin refuses the change; end and populate leave the "
                                   "summary absent)")
                             .Register(registry)),
        summary_populates(prometheus::BuildCounter()
                              .Name("padlock_device_list_summary_populates_total")
                              .Help("Device-list summaries a look-up wrote to Redis")
                              .Register(registry)
                              .Add({})),
        claims_with_key(claims.Add({{"one_time_key", "yes"}})),
        claims_without_key(claims.Add({{"one_time_key", "no"}})),
        remaining_histogram(remaining.Add(
            {}, prometheus::Histogram::BucketBoundaries{0, 1, 5, 10, 25, 50, 100, 250, 500, 1000})),
        announce_failures(publish_failures.Add({})) {}

  prometheus::Family<prometheus::Counter>& registrations;
  prometheus::Family<prometheus::Counter>& claims;
  prometheus::Family<prometheus::Histogram>& remaining;
  prometheus::Family<prometheus::Counter>& signature_failures;
  prometheus::Family<prometheus::Counter>& publish_failures;
  prometheus::Family<prometheus::Counter>& summary_failures;
  prometheus::Counter& summary_populates;
  prometheus::Counter& claims_with_key;
  prometheus::Counter& claims_without_key;
  prometheus::Histogram& remaining_histogram;
  prometheus::Counter& announce_failures;
};

KeyRegistry::KeyRegistry(KeyStore* store, InviteStore* invites, RateLimiter* limiter,
                         DeviceEventPublisher* publisher, DeviceListSummaries* summaries,
                         RegistryOptions options,
                         prometheus::Registry* metrics, runtime::Clock* clock,
                         std::function<std::string()> new_token)
    : store_(store),
      invites_(invites),
      limiter_(limiter),
      publisher_(publisher),
      summaries_(summaries),
      options_(std::move(options)),
      metrics_(metrics != nullptr ? std::make_unique<Metrics>(*metrics) : nullptr),
      clock_(clock != nullptr ? clock : runtime::SystemClock::Get()),
      new_token_(new_token ? std::move(new_token) : RandomToken) {}

KeyRegistry::~KeyRegistry() = default;

void KeyRegistry::RecordRegistration(const char* result) {
  if (metrics_) metrics_->registrations.Add({{"result", result}}).Increment();
}

absl::Status KeyRegistry::CountedSignatureFailure(const char* statement, std::string message) {
  if (metrics_) metrics_->signature_failures.Add({{"statement", statement}}).Increment();
  return absl::UnauthenticatedError(std::move(message));
}

absl::Status KeyRegistry::CheckDeviceListSignature(const DeviceList& list,
                                                   const std::string& signer, const char* field) {
  absl::StatusOr<std::string> encoded = st::EncodeDeviceList(list.user_id, list.version,
                                                              list.entries);
  if (!encoded.ok()) return Invalid(field, ToStd(encoded.status().message()));
  if (!st::VerifySignature(signer, *encoded, list.signature)) {
    return CountedSignatureFailure("device_list",
                                   absl::StrCat(field, ": signature does not verify"));
  }
  return absl::OkStatus();
}

absl::Status KeyRegistry::CheckSignedPreKey(const std::string& identity_key,
                                            const SignedPreKey& key, const char* field) {
  if (!st::VerifySignedPreKey(identity_key, key.public_key, key.signature)) {
    return CountedSignatureFailure("signed_prekey",
                                   absl::StrCat(field, ": signature does not verify"));
  }
  return absl::OkStatus();
}

void KeyRegistry::RevokeDevices(const std::string& user_id,
                                const std::vector<uint32_t>& device_ids) {
  for (uint32_t id : device_ids) {
    if (absl::Status s = publisher_->DeviceRevoked(user_id, id); !s.ok()) {
      if (metrics_) metrics_->announce_failures.Increment();
      runtime::LogWarn("revocation announcement failed",
                       {{"user", runtime::HashUserId(user_id)},
                        {"device", static_cast<int64_t>(id)},
                        {"error", s}});
    }
  }
}

void KeyRegistry::SummaryFailure(const char* step, const std::string& user_id,
                                 const absl::Status& status) {
  if (metrics_) metrics_->summary_failures.Add({{"step", step}}).Increment();
  runtime::LogWarn("device-list summary step failed",
                   {{"step", step}, {"user", runtime::HashUserId(user_id)}, {"error", status}});
}

absl::StatusOr<std::string> KeyRegistry::BeginSummaryChange(const std::string& user_id) {
  if (summaries_ == nullptr) return std::string();
  absl::StatusOr<std::string> token = summaries_->BeginChange(user_id);
  if (!token.ok()) {
    SummaryFailure("begin", user_id, token.status());
    // Nothing was written: the caller may retry. Committing without the summary deleted first
    // could leave a stale one for the message-queue to trust.
    return absl::UnavailableError(
        absl::StrCat("device list change not started: redis: ", token.status().message()));
  }
  return token;
}

void KeyRegistry::EndSummaryChange(const std::string& user_id, const std::string& token,
                                   const std::optional<device_lists::Summary>& after) {
  if (summaries_ == nullptr) return;
  if (absl::Status s = summaries_->EndChange(user_id, token, after); !s.ok()) {
    SummaryFailure("end", user_id, s);
  }
}

absl::StatusOr<uint64_t> KeyRegistry::Register(const Registration& r) {
  auto reject = [&](absl::Status s) {
    RecordRegistration(absl::IsUnauthenticated(s)        ? "bad_signature"
                       : absl::IsAlreadyExists(s)        ? "taken"
                       : absl::IsPermissionDenied(s)     ? "denied"
                       : absl::IsInvalidArgument(s)      ? "invalid"
                                                         : "error");
    return s;
  };
  if (absl::Status s = ValidateUserIdField(r.user_id, "user_id"); !s.ok()) return reject(s);
  if (absl::Status s = ValidateKeyField(r.identity_key, "identity_key"); !s.ok()) return reject(s);
  if (absl::Status s = ValidateSignedPreKeyField(r.signed_prekey, "signed_prekey", true); !s.ok()) {
    return reject(s);
  }
  if (absl::Status s = ValidateOneTimePreKeys(r.one_time_prekeys, options_.max_prekeys_per_call,
                                              "one_time_prekeys");
      !s.ok()) {
    return reject(s);
  }
  if (!r.device_list) return reject(Invalid("device_list", "required"));
  const DeviceList& list = *r.device_list;
  if (absl::Status s = ValidateList(list, "device_list"); !s.ok()) return reject(s);
  if (list.user_id != r.user_id) return reject(Invalid("device_list", "user_id differs"));
  if (list.entries.size() != 1 || list.entries[0].device_id != kPrimaryDevice ||
      list.entries[0].identity_key != r.identity_key ||
      list.entries[0].registration_id != r.registration_id) {
    return reject(Invalid("device_list",
                          "must list exactly device 1 with identity_key and registration_id"));
  }
  if (absl::Status s = ValidateSignatureField(r.registration_signature, "registration_signature");
      !s.ok()) {
    return reject(s);
  }
  if (r.invite_token.size() > 64) {
    return reject(Invalid("invite_token", "longer than 64 characters"));
  }
  // Signatures: the signed prekey, the device list, the registration statement.
  if (absl::Status s = CheckSignedPreKey(r.identity_key, *r.signed_prekey, "signed_prekey");
      !s.ok()) {
    return reject(s);
  }
  if (absl::Status s = CheckDeviceListSignature(list, r.identity_key, "device_list"); !s.ok()) {
    return reject(s);
  }
  const std::string statement =
      st::EncodeRegistration(r.user_id, kPrimaryDevice, r.identity_key, r.registration_id,
                             r.signed_prekey->key_id, r.signed_prekey->public_key);
  if (!st::VerifySignature(r.identity_key, statement, r.registration_signature)) {
    return reject(CountedSignatureFailure("registration",
                                          "registration_signature: does not verify"));
  }

  // Who may take the id: a banned id never; a reset id with an invite made for it; a new id
  // under the policy (phone numbers always need an invite).
  bool reclaim = false;
  absl::StatusOr<AccountState> existing = store_->GetAccount(r.user_id);
  if (existing.ok()) {
    if (existing->banned) return reject(absl::PermissionDeniedError("user id is banned"));
    if (!existing->reset) return reject(absl::AlreadyExistsError("user id taken"));
    reclaim = true;
    if (list.version <= existing->list.version) {
      return reject(absl::FailedPreconditionError(absl::StrCat(
          "device_list: version must exceed ", existing->list.version, " (account was reset)")));
    }
  } else if (!absl::IsNotFound(existing.status())) {
    return reject(existing.status());
  } else if (list.version != 1) {
    return reject(Invalid("device_list", "version must be 1 for a new account"));
  }
  const bool needs_invite = reclaim || options_.policy == RegistrationPolicy::kInvite ||
                            st::IsPhoneNumberUserId(r.user_id);
  std::optional<InviteStore::Invite> invite;
  if (needs_invite) {
    if (r.invite_token.empty()) {
      return reject(absl::PermissionDeniedError("invite_token: an invite is required"));
    }
    absl::StatusOr<InviteStore::Invite> consumed = invites_->Consume(r.invite_token);
    if (absl::IsNotFound(consumed.status())) {
      return reject(absl::PermissionDeniedError("invite_token: unknown, used or expired"));
    }
    if (!consumed.ok()) return reject(consumed.status());
    invite = *std::move(consumed);
    const bool bound = !invite->for_user_id.empty();
    if ((bound && invite->for_user_id != r.user_id) || (reclaim && !bound)) {
      (void)invites_->Restore(r.invite_token, *invite);
      return reject(absl::PermissionDeniedError("invite_token: not valid for this user id"));
    }
  }
  NewAccount account{.list = list,
                     .primary = DeviceKeys{.device_id = kPrimaryDevice,
                                           .identity_key = r.identity_key,
                                           .registration_id = r.registration_id,
                                           .signed_prekey = r.signed_prekey,
                                           .one_time_prekeys = r.one_time_prekeys}};
  absl::Status created = WithSummaryChange(r.user_id, SummaryOf(list), [&] {
    return store_->CreateAccount(account, reclaim);
  });
  if (!created.ok()) {
    // The invite did not buy an account: give it back so the user can retry.
    if (invite) (void)invites_->Restore(r.invite_token, *invite);
    return reject(created);
  }
  RecordRegistration("ok");
  runtime::LogInfo("account registered", {{"user", runtime::HashUserId(r.user_id)},
                                          {"reclaimed", reclaim}});
  return list.version;
}

absl::StatusOr<PublishDeviceListResult> KeyRegistry::PublishDeviceList(
    const DeviceAddress& caller, const DeviceList& list,
    const std::vector<NewDeviceKeys>& new_device_keys) {
  RETURN_IF_ERROR(ValidateUserIdField(caller.user_id, "caller.user_id"));
  RETURN_IF_ERROR(ValidateList(list, "device_list"));
  if (caller.user_id != list.user_id || caller.device_id != kPrimaryDevice) {
    return absl::PermissionDeniedError("only the primary device publishes its device list");
  }
  std::set<uint32_t> keyed;
  for (const NewDeviceKeys& keys : new_device_keys) {
    if (!keyed.insert(keys.device_id).second) {
      return Invalid("new_device_keys", "device listed twice");
    }
    RETURN_IF_ERROR(
        ValidateSignedPreKeyField(keys.signed_prekey, "new_device_keys.signed_prekey", true));
    RETURN_IF_ERROR(ValidateOneTimePreKeys(keys.one_time_prekeys, options_.max_prekeys_per_call,
                                           "new_device_keys.one_time_prekeys"));
  }
  ASSIGN_OR_RETURN(AccountState account, store_->GetAccount(list.user_id));
  if (account.banned || account.reset) return absl::NotFoundError("no account");
  const DeviceList& current = account.list;
  if (list.version <= current.version) {
    return absl::FailedPreconditionError(
        absl::StrCat("device_list: version must exceed ", current.version));
  }
  if (list.entries.size() > options_.max_devices) {
    return absl::FailedPreconditionError(
        absl::StrCat("device_list: more than ", options_.max_devices, " devices"));
  }
  const statement::DeviceListEntry* primary = FindEntry(current, kPrimaryDevice);
  if (primary == nullptr || list.entries.front() != *primary) {
    return absl::FailedPreconditionError(
        "device_list: the primary (device 1) must stay, with its identity key");
  }
  DeviceListUpdate update{.expected_version = current.version, .list = list};
  for (const auto& entry : list.entries) {
    if (const auto* old = FindEntry(current, entry.device_id)) {
      if (*old != entry) {
        return absl::FailedPreconditionError(absl::StrCat(
            "device_list: device ", entry.device_id,
            " changed keys; identity changes go through ChangeIdentity or a new device id"));
      }
      if (keyed.contains(entry.device_id)) {
        return Invalid("new_device_keys", "keys given for a device that is not new");
      }
      continue;
    }
    if (entry.device_id <= account.max_device_id) {
      return absl::FailedPreconditionError(absl::StrCat(
          "device_list: device id ", entry.device_id, " was used before; ids are never reused"));
    }
    DeviceKeys written{.device_id = entry.device_id,
                       .identity_key = entry.identity_key,
                       .registration_id = entry.registration_id};
    for (const NewDeviceKeys& keys : new_device_keys) {
      if (keys.device_id != entry.device_id) continue;
      written.signed_prekey = keys.signed_prekey;
      written.one_time_prekeys = keys.one_time_prekeys;
    }
    update.written_devices.push_back(std::move(written));
  }
  for (const NewDeviceKeys& keys : new_device_keys) {
    if (FindEntry(list, keys.device_id) == nullptr) {
      return Invalid("new_device_keys", "keys given for a device not on the list");
    }
  }
  for (const auto& old : current.entries) {
    if (FindEntry(list, old.device_id) == nullptr) {
      update.removed_device_ids.push_back(old.device_id);
    }
  }
  RETURN_IF_ERROR(CheckDeviceListSignature(list, primary->identity_key, "device_list"));
  for (const DeviceKeys& written : update.written_devices) {
    if (!written.signed_prekey) continue;
    RETURN_IF_ERROR(CheckSignedPreKey(written.identity_key, *written.signed_prekey,
                                      "new_device_keys.signed_prekey"));
  }
  absl::Status applied = WithSummaryChange(
      list.user_id, SummaryOf(list), [&] { return store_->ApplyDeviceList(update); });
  if (!applied.ok()) return applied;
  RevokeDevices(list.user_id, update.removed_device_ids);
  runtime::LogInfo("device list published",
                   {{"user", runtime::HashUserId(list.user_id)},
                    {"version", static_cast<int64_t>(list.version)},
                    {"removed", static_cast<int64_t>(update.removed_device_ids.size())}});
  return PublishDeviceListResult{list.version, update.removed_device_ids};
}

absl::StatusOr<uint32_t> KeyRegistry::PublishPreKeys(
    const DeviceAddress& device, const std::optional<SignedPreKey>& signed_prekey,
    const std::vector<OneTimePreKey>& one_time_prekeys) {
  RETURN_IF_ERROR(ValidateUserIdField(device.user_id, "device.user_id"));
  if (device.device_id == 0) return Invalid("device.device_id", "must be at least 1");
  RETURN_IF_ERROR(ValidateSignedPreKeyField(signed_prekey, "signed_prekey", false));
  RETURN_IF_ERROR(
      ValidateOneTimePreKeys(one_time_prekeys, options_.max_prekeys_per_call, "one_time_prekeys"));
  if (signed_prekey) {
    ASSIGN_OR_RETURN(AccountState account, store_->GetAccount(device.user_id));
    const auto* entry = FindEntry(account.list, device.device_id);
    if (account.banned || entry == nullptr) return absl::NotFoundError("device not listed");
    RETURN_IF_ERROR(CheckSignedPreKey(entry->identity_key, *signed_prekey, "signed_prekey"));
  }
  return store_->AddPreKeys(device, signed_prekey, one_time_prekeys, options_.max_prekeys_stored);
}

absl::StatusOr<ClaimResult> KeyRegistry::ClaimBundles(const DeviceAddress& requester,
                                                      const std::string& user_id,
                                                      uint32_t device_id,
                                                      bool require_listed_requester) {
  RETURN_IF_ERROR(ValidateUserIdField(requester.user_id, "requester.user_id"));
  RETURN_IF_ERROR(ValidateUserIdField(user_id, "user_id"));
  // Both buckets are charged before the claim, in one round trip: a refused claim still costs
  // the requester, which is what stops enumeration of other users' keys.
  const ratelimit::BucketTake takes[] = {
      {absl::StrCat("rl:claim:from:", requester.user_id), options_.claims_per_requester},
      {absl::StrCat("rl:claim:to:", user_id), options_.claims_per_target}};
  ASSIGN_OR_RETURN(std::vector<absl::Duration> waits, limiter_->TakeEach(takes));
  absl::Duration wait = absl::ZeroDuration();
  for (absl::Duration bucket_wait : waits) wait = std::max(wait, bucket_wait);
  if (wait > absl::ZeroDuration()) {
    const int64_t ms = std::max<int64_t>(1, absl::ToInt64Milliseconds(absl::Ceil(
                                                wait, absl::Milliseconds(1))));
    absl::Status s = absl::ResourceExhaustedError(
        absl::StrCat("bundle claims rate-limited; retry after ", ms, " ms"));
    s.SetPayload(kRetryAfterPayload, absl::Cord(absl::StrCat(ms)));
    return s;
  }
  ASSIGN_OR_RETURN(
      ClaimResult result,
      store_->ClaimBundles(user_id, device_id,
                           require_listed_requester ? std::optional(requester) : std::nullopt));
  for (const Bundle& bundle : result.bundles) {
    if (metrics_) {
      (bundle.one_time_prekey ? metrics_->claims_with_key : metrics_->claims_without_key)
          .Increment();
      metrics_->remaining_histogram.Observe(bundle.one_time_prekeys_remaining);
    }
    if (bundle.one_time_prekeys_remaining < options_.prekeys_low_threshold) {
      absl::Status s =
          publisher_->PreKeysLow(user_id, bundle.device_id, bundle.one_time_prekeys_remaining);
      if (!s.ok()) {
        if (metrics_) metrics_->announce_failures.Increment();
        runtime::LogWarn("prekeys-low announcement failed",
                         {{"user", runtime::HashUserId(user_id)}, {"error", s}});
      }
    }
  }
  return result;
}

absl::StatusOr<DeviceList> KeyRegistry::GetDeviceList(const std::string& user_id) {
  RETURN_IF_ERROR(ValidateUserIdField(user_id, "user_id"));
  absl::StatusOr<std::vector<DeviceList>> lists =
      store_->GetDeviceLists({user_id}, ReadFrom::kReplica);
  if (!lists.ok()) return lists.status();
  if (lists->empty()) return absl::NotFoundError("no account");
  return std::move(lists->front());
}

absl::StatusOr<std::vector<DeviceList>> KeyRegistry::GetDeviceLists(
    const std::vector<std::string>& user_ids) {
  if (user_ids.size() > options_.max_users_per_lookup) {
    return Invalid("user_ids", absl::StrCat("more than ", options_.max_users_per_lookup));
  }
  for (const std::string& user : user_ids) {
    RETURN_IF_ERROR(ValidateUserIdField(user, "user_ids"));
  }
  if (summaries_ == nullptr) return store_->GetDeviceLists(user_ids, ReadFrom::kReplica);
  // Tokens first, then the primary (a replica could still show a list from before a change
  // whose EndChange has already run, and the populate would then store it).
  absl::StatusOr<std::vector<std::string>> tokens = summaries_->PopulateTokens(user_ids);
  if (!tokens.ok()) {
    SummaryFailure("populate", user_ids.empty() ? "" : user_ids[0], tokens.status());
  }
  absl::StatusOr<std::vector<DeviceList>> lists =
      store_->GetDeviceLists(user_ids, ReadFrom::kPrimary);
  if (!lists.ok() || !tokens.ok()) return lists;
  std::map<std::string_view, const DeviceList*> listed;
  for (const DeviceList& list : *lists) listed[list.user_id] = &list;
  std::vector<device_lists::Summary> summaries;
  summaries.reserve(user_ids.size());
  for (const std::string& user : user_ids) {
    auto it = listed.find(user);
    summaries.push_back(it == listed.end() ? kNotListed : SummaryOf(*it->second));
  }
  absl::StatusOr<int> stored = summaries_->Populate(user_ids, *tokens, summaries);
  if (!stored.ok()) {
    SummaryFailure("populate", user_ids.empty() ? "" : user_ids[0], stored.status());
  } else if (metrics_) {
    metrics_->summary_populates.Increment(*stored);
  }
  return lists;
}

absl::StatusOr<IdentityKeyInfo> KeyRegistry::GetIdentityKey(const DeviceAddress& device) {
  RETURN_IF_ERROR(ValidateUserIdField(device.user_id, "device.user_id"));
  ASSIGN_OR_RETURN(DeviceList list, GetDeviceList(device.user_id));
  const auto* entry = FindEntry(list, device.device_id);
  if (entry == nullptr) return absl::NotFoundError("device not listed");
  return IdentityKeyInfo{entry->identity_key, entry->registration_id, list.version};
}

absl::StatusOr<uint64_t> KeyRegistry::ChangeIdentity(const IdentityChange& c) {
  RETURN_IF_ERROR(ValidateUserIdField(c.device.user_id, "device.user_id"));
  if (c.device.device_id == 0) return Invalid("device.device_id", "must be at least 1");
  RETURN_IF_ERROR(ValidateKeyField(c.new_identity_key, "new_identity_key"));
  RETURN_IF_ERROR(ValidateSignedPreKeyField(c.new_signed_prekey, "new_signed_prekey", true));
  RETURN_IF_ERROR(ValidateOneTimePreKeys(c.new_one_time_prekeys, options_.max_prekeys_per_call,
                                         "new_one_time_prekeys"));
  RETURN_IF_ERROR(ValidateSignatureField(c.change_signature, "change_signature"));
  if (c.device.device_id != kPrimaryDevice) {
    return absl::PermissionDeniedError(
        "only the primary changes identity; unlink and link a linked device under a new id");
  }
  if (!c.device_list) return Invalid("device_list", "required for the primary");
  const DeviceList& list = *c.device_list;
  RETURN_IF_ERROR(ValidateList(list, "device_list"));
  if (list.user_id != c.device.user_id) return Invalid("device_list", "user_id differs");

  ASSIGN_OR_RETURN(AccountState account, store_->GetAccount(c.device.user_id));
  if (account.banned || account.reset) return absl::NotFoundError("no account");
  const DeviceList& current = account.list;
  const statement::DeviceListEntry* old = FindEntry(current, kPrimaryDevice);
  if (old == nullptr) return absl::NotFoundError("device not listed");
  const std::string statement =
      st::EncodeIdentityChange(c.device.user_id, kPrimaryDevice, old->identity_key,
                               c.new_identity_key, c.new_registration_id);
  if (!st::VerifySignature(old->identity_key, statement, c.change_signature)) {
    return CountedSignatureFailure("identity_change", "change_signature: does not verify");
  }
  if (list.version <= current.version) {
    return absl::FailedPreconditionError(
        absl::StrCat("device_list: version must exceed ", current.version));
  }
  // The same devices; device 1 with the new key, the others unchanged.
  bool same = list.entries.size() == current.entries.size();
  for (size_t i = 0; same && i < list.entries.size(); ++i) {
    const auto& next = list.entries[i];
    if (next.device_id == kPrimaryDevice) {
      same = current.entries[i].device_id == kPrimaryDevice &&
             next.identity_key == c.new_identity_key &&
             next.registration_id == c.new_registration_id;
    } else {
      same = next == current.entries[i];
    }
  }
  if (!same) {
    return absl::FailedPreconditionError(
        "device_list: must list the same devices, device 1 with new_identity_key and "
        "new_registration_id");
  }
  RETURN_IF_ERROR(CheckDeviceListSignature(list, c.new_identity_key, "device_list"));
  if (absl::Status s =
          CheckSignedPreKey(c.new_identity_key, *c.new_signed_prekey, "new_signed_prekey");
      !s.ok()) {
    return s;
  }
  DeviceListUpdate update{.expected_version = current.version, .list = list};
  update.written_devices.push_back(DeviceKeys{.device_id = kPrimaryDevice,
                                              .identity_key = c.new_identity_key,
                                              .registration_id = c.new_registration_id,
                                              .signed_prekey = c.new_signed_prekey,
                                              .one_time_prekeys = c.new_one_time_prekeys});
  absl::Status applied = WithSummaryChange(
      list.user_id, SummaryOf(list), [&] { return store_->ApplyDeviceList(update); });
  if (!applied.ok()) return applied;
  runtime::LogInfo("identity changed", {{"user", runtime::HashUserId(c.device.user_id)}});
  return list.version;
}

absl::Status KeyRegistry::DeleteAccount(const DeviceAddress& caller) {
  RETURN_IF_ERROR(ValidateUserIdField(caller.user_id, "caller.user_id"));
  if (caller.device_id != kPrimaryDevice) {
    return absl::PermissionDeniedError("only the primary device deletes the account");
  }
  ASSIGN_OR_RETURN(AccountState account, store_->GetAccount(caller.user_id));
  if (account.banned || account.reset) return absl::NotFoundError("no account");
  return AdminDeleteAccount(caller.user_id);
}

}  // namespace padlock::key_directory
