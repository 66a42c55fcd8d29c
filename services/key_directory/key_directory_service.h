#pragma once
// The gRPC face of the key-directory service: converts proto ↔ domain types, calls KeyRegistry
// and maps absl::Status to grpc::Status (runtime::ToGrpcStatus) — in this one place.
//
// Threading: every rpc's work (PostgreSQL, Redis) runs on a runtime::BoundedExecutor, never on
// gRPC's callback threads; a full executor queue answers RESOURCE_EXHAUSTED at once. A
// ResourceExhausted carrying kRetryAfterPayload adds trailing metadata `retry-after-ms`.
// Thread-safe; `registry` and `executor` must outlive the services (and the server).
#include "padlock/v1/key_directory.grpc.pb.h"
#include "services/common/runtime/executor.h"
#include "services/key_directory/key_registry.h"

namespace padlock::key_directory {

// Proto ↔ domain conversions (exposed for tests and the benchmark).
DeviceList FromProto(const padlock::v1::SignedDeviceList& list);
void ToProto(const DeviceList& list, padlock::v1::SignedDeviceList* out);

// padlock.v1.KeyDirectory.
class KeyDirectoryService final : public padlock::v1::KeyDirectory::CallbackService {
 public:
  KeyDirectoryService(KeyRegistry* registry, runtime::BoundedExecutor* executor);

  grpc::ServerUnaryReactor* Register(grpc::CallbackServerContext* context,
                                     const padlock::v1::RegisterRequest* request,
                                     padlock::v1::RegisterResponse* response) override;
  grpc::ServerUnaryReactor* PublishDeviceList(
      grpc::CallbackServerContext* context, const padlock::v1::PublishDeviceListRequest* request,
      padlock::v1::PublishDeviceListResponse* response) override;
  grpc::ServerUnaryReactor* PublishPreKeys(grpc::CallbackServerContext* context,
                                           const padlock::v1::PublishPreKeysRequest* request,
                                           padlock::v1::PublishPreKeysResponse* response) override;
  grpc::ServerUnaryReactor* ClaimBundles(grpc::CallbackServerContext* context,
                                         const padlock::v1::ClaimBundlesRequest* request,
                                         padlock::v1::ClaimBundlesResponse* response) override;
  grpc::ServerUnaryReactor* GetDeviceList(grpc::CallbackServerContext* context,
                                          const padlock::v1::GetDeviceListRequest* request,
                                          padlock::v1::GetDeviceListResponse* response) override;
  grpc::ServerUnaryReactor* GetDeviceLists(grpc::CallbackServerContext* context,
                                           const padlock::v1::GetDeviceListsRequest* request,
                                           padlock::v1::GetDeviceListsResponse* response) override;
  grpc::ServerUnaryReactor* GetIdentityKey(grpc::CallbackServerContext* context,
                                           const padlock::v1::GetIdentityKeyRequest* request,
                                           padlock::v1::GetIdentityKeyResponse* response) override;
  grpc::ServerUnaryReactor* ChangeIdentity(grpc::CallbackServerContext* context,
                                           const padlock::v1::ChangeIdentityRequest* request,
                                           padlock::v1::ChangeIdentityResponse* response) override;
  grpc::ServerUnaryReactor* DeleteAccount(grpc::CallbackServerContext* context,
                                          const padlock::v1::DeleteAccountRequest* request,
                                          padlock::v1::DeleteAccountResponse* response) override;

 private:
  KeyRegistry* const registry_;
  runtime::BoundedExecutor* const executor_;
};

// padlock.v1.KeyDirectoryAdmin. RotateTokenSecret is UNIMPLEMENTED: the token secret belongs to
// the gateway.
class KeyDirectoryAdminService final : public padlock::v1::KeyDirectoryAdmin::CallbackService {
 public:
  KeyDirectoryAdminService(KeyRegistry* registry, runtime::BoundedExecutor* executor);

  grpc::ServerUnaryReactor* CreateInvite(grpc::CallbackServerContext* context,
                                         const padlock::v1::CreateInviteRequest* request,
                                         padlock::v1::CreateInviteResponse* response) override;
  grpc::ServerUnaryReactor* ResetIdentity(grpc::CallbackServerContext* context,
                                          const padlock::v1::ResetIdentityRequest* request,
                                          padlock::v1::ResetIdentityResponse* response) override;
  grpc::ServerUnaryReactor* BanAccount(grpc::CallbackServerContext* context,
                                       const padlock::v1::BanAccountRequest* request,
                                       padlock::v1::BanAccountResponse* response) override;
  grpc::ServerUnaryReactor* UnbanAccount(grpc::CallbackServerContext* context,
                                         const padlock::v1::UnbanAccountRequest* request,
                                         padlock::v1::UnbanAccountResponse* response) override;
  grpc::ServerUnaryReactor* DeleteAccount(
      grpc::CallbackServerContext* context, const padlock::v1::AdminDeleteAccountRequest* request,
      padlock::v1::AdminDeleteAccountResponse* response) override;

 private:
  KeyRegistry* const registry_;
  runtime::BoundedExecutor* const executor_;
};

}  // namespace padlock::key_directory
