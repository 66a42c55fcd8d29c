#pragma once
// The device lists the send check compares against. RedisDeviceDirectory reads the summaries the
// key-directory writes through to Redis and asks GrpcDeviceDirectory (key-directory's
// GetDeviceLists) only for users without one. Neither caches: an answer is the current list, so
// a link, unlink or identity change applies to the very next send.

#include <cstdint>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"

namespace padlock::message_queue {

struct ListedDevice {
  uint32_t device_id = 0;
  uint32_t registration_id = 0;
};

struct DeviceListInfo {
  uint64_t version = 0;
  std::vector<ListedDevice> devices;  // ascending device_id
};

// Thread-safe.
class DeviceDirectory {
 public:
  virtual ~DeviceDirectory() = default;
  // The current device lists of `user_ids` (distinct, at most 1 024). Users without a current
  // list (unknown, deleted, banned, reset) are absent from the map. Unavailable when Redis or the
  // key-directory cannot be reached in time.
  virtual absl::StatusOr<absl::flat_hash_map<std::string, DeviceListInfo>> GetDeviceLists(
      absl::Span<const std::string> user_ids) = 0;
};

}  // namespace padlock::message_queue
