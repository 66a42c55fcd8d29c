#pragma once
// The device lists the send check compares against (key-directory's GetDeviceLists).

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
  // The current device lists of `user_ids` (distinct, at most 1 024). Unknown users are absent
  // from the map. Unavailable when the directory cannot be reached in time.
  virtual absl::StatusOr<absl::flat_hash_map<std::string, DeviceListInfo>> GetDeviceLists(
      absl::Span<const std::string> user_ids) = 0;
  // The same, bypassing any cache (and refreshing it): the send check asks again before it
  // reports a mismatch that a cached list could have caused, e.g. a device linked a moment ago.
  virtual absl::StatusOr<absl::flat_hash_map<std::string, DeviceListInfo>> GetFreshDeviceLists(
      absl::Span<const std::string> user_ids) {
    return GetDeviceLists(user_ids);
  }
};

}  // namespace padlock::message_queue
