#include "services/gateway/key_directory_client.h"

#include <utility>

#include "services/common/runtime/status.h"
#include "services/common/runtime/upstream_status.h"

namespace padlock::gateway {

KeyDirectoryClient::KeyDirectoryClient(std::shared_ptr<grpc::Channel> channel,
                                       absl::Duration deadline)
    : stub_(padlock::v1::KeyDirectory::NewStub(std::move(channel))), deadline_(deadline) {}

void KeyDirectoryClient::Prepare(grpc::ClientContext& context) const {
  context.set_deadline(absl::ToChronoTime(absl::Now() + deadline_));
}

absl::StatusOr<IdentityInfo> KeyDirectoryClient::GetIdentityKey(const DeviceRef& device) {
  grpc::ClientContext context;
  Prepare(context);
  padlock::v1::GetIdentityKeyRequest request;
  request.mutable_device()->set_user_id(device.user_id);
  request.mutable_device()->set_device_id(device.device_id);
  padlock::v1::GetIdentityKeyResponse response;
  grpc::Status status = stub_->GetIdentityKey(&context, request, &response);
  if (!status.ok()) {
    return runtime::FromGrpcStatus(runtime::PublicUpstreamStatus("key-directory", status));
  }
  return IdentityInfo{response.identity_key(), response.device_list_version()};
}

}  // namespace padlock::gateway
