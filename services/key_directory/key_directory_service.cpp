#include "services/key_directory/key_directory_service.h"

#include <string>
#include <utility>

#include "services/common/runtime/status.h"
#include "services/common/runtime/unary.h"

namespace padlock::key_directory {
namespace {

namespace pb = padlock::v1;

// Runs `work` (returning absl::Status) on the executor and finishes the call with its status.
// The request/response pointers stay valid until Finish (gRPC's contract), so the task may use
// them.
template <typename F>
grpc::ServerUnaryReactor* Offload(grpc::CallbackServerContext* context,
                                  runtime::BoundedExecutor* executor, F work) {
  return runtime::OffloadUnary(
      context, *executor, "key-directory", [context, work = std::move(work)]() mutable {
        absl::Status status = work();
        if (absl::IsResourceExhausted(status)) {
          if (auto ms = status.GetPayload(kRetryAfterPayload)) {
            context->AddTrailingMetadata("retry-after-ms", std::string(*ms));
          }
        }
        return status;
      });
}

DeviceAddress FromProto(const pb::DeviceAddress& a) { return {a.user_id(), a.device_id()}; }

std::optional<SignedPreKey> FromProto(bool has, const pb::SignedPreKey& k) {
  if (!has) return std::nullopt;
  return SignedPreKey{k.key_id(), k.public_key(), k.signature()};
}

std::vector<OneTimePreKey> FromProto(
    const google::protobuf::RepeatedPtrField<pb::OneTimePreKey>& keys) {
  std::vector<OneTimePreKey> out;
  out.reserve(keys.size());
  for (const auto& k : keys) out.push_back({k.key_id(), k.public_key()});
  return out;
}

void ToProto(const Bundle& b, const std::string& user, pb::PreKeyBundle* out) {
  out->mutable_device()->set_user_id(user);
  out->mutable_device()->set_device_id(b.device_id);
  out->set_registration_id(b.registration_id);
  out->set_identity_key(b.identity_key);
  out->mutable_signed_prekey()->set_key_id(b.signed_prekey.key_id);
  out->mutable_signed_prekey()->set_public_key(b.signed_prekey.public_key);
  out->mutable_signed_prekey()->set_signature(b.signed_prekey.signature);
  if (b.one_time_prekey) {
    out->mutable_one_time_prekey()->set_key_id(b.one_time_prekey->key_id);
    out->mutable_one_time_prekey()->set_public_key(b.one_time_prekey->public_key);
  }
}

}  // namespace

DeviceList FromProto(const pb::SignedDeviceList& list) {
  DeviceList out{.user_id = list.list().user_id(),
                 .version = list.list().version(),
                 .signature = list.signature()};
  for (const auto& e : list.list().devices()) {
    out.entries.push_back({e.device_id(), e.identity_key(), e.registration_id()});
  }
  return out;
}

void ToProto(const DeviceList& list, pb::SignedDeviceList* out) {
  out->mutable_list()->set_user_id(list.user_id);
  out->mutable_list()->set_version(list.version);
  for (const auto& e : list.entries) {
    auto* entry = out->mutable_list()->add_devices();
    entry->set_device_id(e.device_id);
    entry->set_identity_key(e.identity_key);
    entry->set_registration_id(e.registration_id);
  }
  out->set_signature(list.signature);
}

KeyDirectoryService::KeyDirectoryService(KeyRegistry* registry,
                                         runtime::BoundedExecutor* executor)
    : registry_(registry), executor_(executor) {}

grpc::ServerUnaryReactor* KeyDirectoryService::Register(grpc::CallbackServerContext* context,
                                                        const pb::RegisterRequest* request,
                                                        pb::RegisterResponse* response) {
  return Offload(context, executor_, [this, request, response]() -> absl::Status {
    Registration r{.user_id = request->user_id(),
                   .identity_key = request->identity_key(),
                   .registration_id = request->registration_id(),
                   .signed_prekey =
                       FromProto(request->has_signed_prekey(), request->signed_prekey()),
                   .one_time_prekeys = FromProto(request->one_time_prekeys()),
                   .device_list = std::nullopt,
                   .registration_signature = request->registration_signature(),
                   .invite_token = request->invite_token()};
    if (request->has_device_list()) r.device_list = FromProto(request->device_list());
    absl::StatusOr<uint64_t> version = registry_->Register(r);
    if (!version.ok()) return version.status();
    response->set_device_id(1);
    response->set_device_list_version(*version);
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* KeyDirectoryService::PublishDeviceList(
    grpc::CallbackServerContext* context, const pb::PublishDeviceListRequest* request,
    pb::PublishDeviceListResponse* response) {
  return Offload(context, executor_, [this, request, response]() -> absl::Status {
    if (!request->has_device_list()) {
      return absl::InvalidArgumentError("device_list: required");
    }
    std::vector<NewDeviceKeys> keys;
    for (const auto& k : request->new_device_keys()) {
      keys.push_back({k.device_id(), FromProto(k.has_signed_prekey(), k.signed_prekey()),
                      FromProto(k.one_time_prekeys())});
    }
    auto result = registry_->PublishDeviceList(FromProto(request->caller()),
                                               FromProto(request->device_list()), keys);
    if (!result.ok()) return result.status();
    response->set_device_list_version(result->version);
    for (uint32_t id : result->removed_device_ids) response->add_removed_device_ids(id);
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* KeyDirectoryService::PublishPreKeys(
    grpc::CallbackServerContext* context, const pb::PublishPreKeysRequest* request,
    pb::PublishPreKeysResponse* response) {
  return Offload(context, executor_, [this, request, response]() -> absl::Status {
    auto remaining = registry_->PublishPreKeys(
        FromProto(request->device()),
        FromProto(request->has_signed_prekey(), request->signed_prekey()),
        FromProto(request->one_time_prekeys()));
    if (!remaining.ok()) return remaining.status();
    response->set_one_time_prekeys_remaining(*remaining);
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* KeyDirectoryService::ClaimBundles(grpc::CallbackServerContext* context,
                                                            const pb::ClaimBundlesRequest* request,
                                                            pb::ClaimBundlesResponse* response) {
  // On the executor like every rpc, although it is the busiest: a claim blocks on Redis and
  // PostgreSQL, and gRPC 1.51's callback reactions share a fixed pool of clamp(cores / 2, 2, 16)
  // threads on Linux (its CallbackAlternativeCQ). Inline, two slow claims on a 2-core host would
  // stall every rpc of the process, health checks included (docs/ARCHITECTURE.md, decisions).
  return Offload(context, executor_, [this, request, response]() -> absl::Status {
    auto result = registry_->ClaimBundles(FromProto(request->requester()), request->user_id(),
                                          request->device_id(),
                                          request->require_listed_requester());
    if (!result.ok()) return result.status();
    for (const Bundle& b : result->bundles) ToProto(b, request->user_id(), response->add_bundles());
    ToProto(result->list, response->mutable_device_list());
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* KeyDirectoryService::GetDeviceList(
    grpc::CallbackServerContext* context, const pb::GetDeviceListRequest* request,
    pb::GetDeviceListResponse* response) {
  return Offload(context, executor_, [this, request, response]() -> absl::Status {
    auto list = registry_->GetDeviceList(request->user_id());
    if (!list.ok()) return list.status();
    ToProto(*list, response->mutable_device_list());
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* KeyDirectoryService::GetDeviceLists(
    grpc::CallbackServerContext* context, const pb::GetDeviceListsRequest* request,
    pb::GetDeviceListsResponse* response) {
  return Offload(context, executor_, [this, request, response]() -> absl::Status {
    std::vector<std::string> users(request->user_ids().begin(), request->user_ids().end());
    auto lists = registry_->GetDeviceLists(users);
    if (!lists.ok()) return lists.status();
    for (const DeviceList& list : *lists) ToProto(list, response->add_device_lists());
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* KeyDirectoryService::GetIdentityKey(
    grpc::CallbackServerContext* context, const pb::GetIdentityKeyRequest* request,
    pb::GetIdentityKeyResponse* response) {
  return Offload(context, executor_, [this, request, response]() -> absl::Status {
    auto info = registry_->GetIdentityKey(FromProto(request->device()));
    if (!info.ok()) return info.status();
    response->set_identity_key(info->identity_key);
    response->set_registration_id(info->registration_id);
    response->set_device_list_version(info->device_list_version);
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* KeyDirectoryService::ChangeIdentity(
    grpc::CallbackServerContext* context, const pb::ChangeIdentityRequest* request,
    pb::ChangeIdentityResponse* response) {
  return Offload(context, executor_, [this, request, response]() -> absl::Status {
    IdentityChange c{.device = FromProto(request->device()),
                     .new_identity_key = request->new_identity_key(),
                     .new_registration_id = request->new_registration_id(),
                     .new_signed_prekey = FromProto(request->has_new_signed_prekey(),
                                                    request->new_signed_prekey()),
                     .new_one_time_prekeys = FromProto(request->new_one_time_prekeys()),
                     .change_signature = request->change_signature(),
                     .device_list = std::nullopt};
    if (request->has_device_list()) c.device_list = FromProto(request->device_list());
    auto version = registry_->ChangeIdentity(c);
    if (!version.ok()) return version.status();
    response->set_device_list_version(*version);
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* KeyDirectoryService::DeleteAccount(
    grpc::CallbackServerContext* context, const pb::DeleteAccountRequest* request,
    pb::DeleteAccountResponse*) {
  return Offload(context, executor_, [this, request]() -> absl::Status {
    return registry_->DeleteAccount(FromProto(request->caller()));
  });
}

KeyDirectoryAdminService::KeyDirectoryAdminService(KeyRegistry* registry,
                                                   runtime::BoundedExecutor* executor)
    : registry_(registry), executor_(executor) {}

grpc::ServerUnaryReactor* KeyDirectoryAdminService::CreateInvite(
    grpc::CallbackServerContext* context, const pb::CreateInviteRequest* request,
    pb::CreateInviteResponse* response) {
  return Offload(context, executor_, [this, request, response]() -> absl::Status {
    auto invite = registry_->CreateInvite(absl::Seconds(request->ttl_seconds()),
                                          request->for_user_id());
    if (!invite.ok()) return invite.status();
    response->set_token(invite->token);
    response->set_expires_at_ms(static_cast<uint64_t>(absl::ToUnixMillis(invite->expires_at)));
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* KeyDirectoryAdminService::ResetIdentity(
    grpc::CallbackServerContext* context, const pb::ResetIdentityRequest* request,
    pb::ResetIdentityResponse*) {
  return Offload(context, executor_,
                 [this, request] { return registry_->ResetIdentity(request->user_id()); });
}

grpc::ServerUnaryReactor* KeyDirectoryAdminService::BanAccount(
    grpc::CallbackServerContext* context, const pb::BanAccountRequest* request,
    pb::BanAccountResponse*) {
  // The reason is neither stored nor logged: the directory keeps keys only (docs/KEY_DIRECTORY.md).
  return Offload(context, executor_,
                 [this, request] { return registry_->BanAccount(request->user_id()); });
}

grpc::ServerUnaryReactor* KeyDirectoryAdminService::UnbanAccount(
    grpc::CallbackServerContext* context, const pb::UnbanAccountRequest* request,
    pb::UnbanAccountResponse*) {
  return Offload(context, executor_,
                 [this, request] { return registry_->UnbanAccount(request->user_id()); });
}

grpc::ServerUnaryReactor* KeyDirectoryAdminService::DeleteAccount(
    grpc::CallbackServerContext* context, const pb::AdminDeleteAccountRequest* request,
    pb::AdminDeleteAccountResponse*) {
  return Offload(context, executor_,
                 [this, request] { return registry_->AdminDeleteAccount(request->user_id()); });
}

}  // namespace padlock::key_directory
