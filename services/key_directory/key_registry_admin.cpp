// The operator's actions on accounts (KeyDirectoryAdmin): invites, identity reset, ban, unban,
// deletion. Each change of what GetDeviceLists answers goes through WithSummaryChange, and removed
// devices are announced as revoked.
#include <string>
#include <vector>

#include "services/common/runtime/logging.h"
#include "services/common/runtime/status_macros.h"
#include "services/key_directory/key_registry.h"

namespace padlock::key_directory {

absl::StatusOr<Invitation> KeyRegistry::CreateInvite(absl::Duration ttl,
                                                     const std::string& for_user_id) {
  if (!for_user_id.empty()) {
    RETURN_IF_ERROR(ValidateUserIdField(for_user_id, "for_user_id"));
  }
  if (ttl < absl::ZeroDuration() || ttl > options_.max_invite_ttl) {
    return absl::InvalidArgumentError("ttl_seconds: out of range");
  }
  if (ttl == absl::ZeroDuration()) ttl = options_.default_invite_ttl;
  Invitation invitation{.token = new_token_(), .expires_at = clock_->Now() + ttl};
  RETURN_IF_ERROR(invites_->Create(invitation.token, for_user_id, ttl));
  return invitation;
}

absl::Status KeyRegistry::ResetIdentity(const std::string& user_id) {
  RETURN_IF_ERROR(ValidateUserIdField(user_id, "user_id"));
  absl::StatusOr<std::vector<uint32_t>> removed =
      WithSummaryChange(user_id, device_lists::Summary{}, [&] { return store_->ResetAccount(user_id); });
  if (!removed.ok()) return removed.status();
  RevokeDevices(user_id, *removed);
  runtime::LogInfo("identity reset by operator", {{"user", runtime::HashUserId(user_id)}});
  return absl::OkStatus();
}

absl::Status KeyRegistry::BanAccount(const std::string& user_id) {
  RETURN_IF_ERROR(ValidateUserIdField(user_id, "user_id"));
  absl::StatusOr<std::vector<uint32_t>> devices =
      WithSummaryChange(user_id, device_lists::Summary{}, [&] { return store_->SetBanned(user_id, true); });
  if (!devices.ok()) return devices.status();
  // Closes the devices' streams; the keys stay so that an unban restores the account.
  RevokeDevices(user_id, *devices);
  runtime::LogInfo("account banned", {{"user", runtime::HashUserId(user_id)}});
  return absl::OkStatus();
}

absl::Status KeyRegistry::UnbanAccount(const std::string& user_id) {
  RETURN_IF_ERROR(ValidateUserIdField(user_id, "user_id"));
  ASSIGN_OR_RETURN(AccountState account, store_->GetAccount(user_id));
  if (!account.banned) return absl::NotFoundError("account is not banned");
  // The list itself is not at hand here: the next look-up fills the summary.
  absl::StatusOr<std::vector<uint32_t>> devices =
      WithSummaryChange(user_id, std::nullopt, [&] { return store_->SetBanned(user_id, false); });
  if (!devices.ok()) return devices.status();
  runtime::LogInfo("account unbanned", {{"user", runtime::HashUserId(user_id)}});
  return absl::OkStatus();
}

absl::Status KeyRegistry::AdminDeleteAccount(const std::string& user_id) {
  RETURN_IF_ERROR(ValidateUserIdField(user_id, "user_id"));
  absl::StatusOr<std::vector<uint32_t>> removed =
      WithSummaryChange(user_id, device_lists::Summary{}, [&] { return store_->DeleteAccount(user_id); });
  if (!removed.ok()) return removed.status();
  RevokeDevices(user_id, *removed);
  runtime::LogInfo("account deleted", {{"user", runtime::HashUserId(user_id)}});
  return absl::OkStatus();
}

}  // namespace padlock::key_directory
