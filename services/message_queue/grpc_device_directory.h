#pragma once
// DeviceDirectory over key-directory's GetDeviceLists (gRPC), with a short per-user TTL cache.
//
// Cache: a user's list is reused for `cache_ttl` after it was fetched (0 disables the cache).
// A send that does not match a cached list is checked again against a fresh one
// (GetFreshDeviceLists) before the mismatch is reported, so a device linked or unlinked a moment
// ago never makes a correct send fail. What the cache can still let through within `cache_ttl`: a
// send that matches the old list — it lacks a device linked a moment ago (the sender learns of the
// device from its next check) or still addresses an unlinked one (whose inbox the unlink purges).

#include <memory>
#include <mutex>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/time/time.h"
#include "padlock/v1/key_directory.grpc.pb.h"
#include "services/message_queue/device_directory.h"

namespace padlock::message_queue {

class GrpcDeviceDirectory final : public DeviceDirectory {
 public:
  // `channel` to the key-directory; every call has `deadline`.
  GrpcDeviceDirectory(std::shared_ptr<grpc::ChannelInterface> channel, absl::Duration deadline,
                      absl::Duration cache_ttl);

  // Unavailable (or the key-directory's own code) when the call fails; cached users are served
  // without a call.
  absl::StatusOr<absl::flat_hash_map<std::string, DeviceListInfo>> GetDeviceLists(
      absl::Span<const std::string> user_ids) override;
  absl::StatusOr<absl::flat_hash_map<std::string, DeviceListInfo>> GetFreshDeviceLists(
      absl::Span<const std::string> user_ids) override;

 private:
  absl::StatusOr<absl::flat_hash_map<std::string, DeviceListInfo>> Fetch(
      absl::Span<const std::string> user_ids, bool use_cache);

  struct Cached {
    absl::Time fetched;
    bool known = false;
    DeviceListInfo list;
  };

  std::unique_ptr<padlock::v1::KeyDirectory::Stub> stub_;
  const absl::Duration deadline_;
  const absl::Duration cache_ttl_;
  std::mutex mu_;  // std::mutex: see services/common/runtime/executor.h on TSan
  absl::flat_hash_map<std::string, Cached> cache_ ABSL_GUARDED_BY(mu_);
};

}  // namespace padlock::message_queue
