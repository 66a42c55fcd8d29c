#pragma once
// DeviceDirectory over key-directory's GetDeviceLists (gRPC), without a cache: every call asks.
// In production it sits behind RedisDeviceDirectory, which calls it only for users whose Redis
// summary is missing; answering, the key-directory fills those summaries.

#include <memory>
#include <string>

#include "absl/time/time.h"
#include "padlock/v1/key_directory.grpc.pb.h"
#include "services/message_queue/device_directory.h"

namespace padlock::message_queue {

class GrpcDeviceDirectory final : public DeviceDirectory {
 public:
  // `channel` to the key-directory; every call has `deadline`.
  GrpcDeviceDirectory(std::shared_ptr<grpc::ChannelInterface> channel, absl::Duration deadline);

  // Unavailable / DeadlineExceeded (or the key-directory's own code) when the call fails.
  absl::StatusOr<absl::flat_hash_map<std::string, DeviceListInfo>> GetDeviceLists(
      absl::Span<const std::string> user_ids) override;

 private:
  std::unique_ptr<padlock::v1::KeyDirectory::Stub> stub_;
  const absl::Duration deadline_;
};

}  // namespace padlock::message_queue
