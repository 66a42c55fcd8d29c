#include "services/message_queue/grpc_device_directory.h"

#include <grpcpp/client_context.h>

#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "services/common/runtime/status.h"

namespace padlock::message_queue {

GrpcDeviceDirectory::GrpcDeviceDirectory(std::shared_ptr<grpc::ChannelInterface> channel,
                                         absl::Duration deadline)
    : stub_(padlock::v1::KeyDirectory::NewStub(std::move(channel))), deadline_(deadline) {}

absl::StatusOr<absl::flat_hash_map<std::string, DeviceListInfo>>
GrpcDeviceDirectory::GetDeviceLists(absl::Span<const std::string> user_ids) {
  absl::flat_hash_map<std::string, DeviceListInfo> out;
  if (user_ids.empty()) return out;
  padlock::v1::GetDeviceListsRequest request;
  for (const std::string& user : user_ids) request.add_user_ids(user);
  padlock::v1::GetDeviceListsResponse response;
  grpc::ClientContext context;
  context.set_deadline(absl::ToChronoTime(absl::Now() + deadline_));
  grpc::Status status = stub_->GetDeviceLists(&context, request, &response);
  if (!status.ok()) {
    absl::Status s = runtime::FromGrpcStatus(status);
    return absl::Status(s.code(), absl::StrCat("key-directory GetDeviceLists: ", s.message()));
  }
  for (const padlock::v1::SignedDeviceList& signed_list : response.device_lists()) {
    const padlock::v1::DeviceList& list = signed_list.list();
    DeviceListInfo info;
    info.version = list.version();
    for (const padlock::v1::DeviceListEntry& d : list.devices()) {
      info.devices.push_back({d.device_id(), d.registration_id()});
    }
    out[list.user_id()] = std::move(info);
  }
  return out;
}

}  // namespace padlock::message_queue
