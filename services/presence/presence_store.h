#pragma once
// The small interfaces the presence logic (PresenceRegistry) is built on, and its domain types.
// No grpc, hiredis or protobuf here: the Redis adapters (redis_presence_store.h,
// redis_event_publisher.h) and the in-memory fake (tests/unit/presence) implement them.

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"

namespace padlock::presence {

// One device of one account. User ids are valid (ids.h) by the time they reach this layer.
struct DeviceKey {
  std::string user_id;
  uint32_t device_id = 0;

  friend bool operator==(const DeviceKey& a, const DeviceKey& b) {
    return a.user_id == b.user_id && a.device_id == b.device_id;
  }
  friend bool operator<(const DeviceKey& a, const DeviceKey& b) {
    return a.user_id != b.user_id ? a.user_id < b.user_id : a.device_id < b.device_id;
  }
};

// Who may see a user's presence. Fails closed: a missing or unknown value reads as kNobody.
enum class Visibility { kUnspecified = 0, kNobody = 1, kEveryone = 2 };

// One connection of a device, as a gateway reports it.
struct Connection {
  DeviceKey device;
  uint64_t epoch = 0;
};

// What the store knows of a user, before any visibility filtering.
struct UserState {
  std::string user_id;
  bool online = false;      // some device has a live (unexpired) registry entry
  int64_t last_seen_ms = 0;  // last time the user went offline; 0 = unknown
  Visibility visibility = Visibility::kNobody;  // never kUnspecified
};

// Presence as a watcher may see it (after the visibility check).
struct PresenceView {
  std::string user_id;
  bool online = false;
  int64_t last_seen_ms = 0;

  friend bool operator==(const PresenceView& a, const PresenceView& b) {
    return a.user_id == b.user_id && a.online == b.online && a.last_seen_ms == b.last_seen_ms;
  }
};

// A live registry entry (Locate).
struct Location {
  DeviceKey device;
  std::string gateway_id;
  uint64_t epoch = 0;
  int64_t connected_at_ms = 0;
};

struct ConnectOutcome {
  uint64_t epoch = 0;             // the new epoch
  uint64_t displaced_epoch = 0;   // the live entry it replaced; 0 when there was none
  bool came_online = false;       // the user had no live device before
  Visibility previous_visibility = Visibility::kNobody;  // before a visibility in the request
  UserState user;                 // the user after the connect
};

struct DisconnectOutcome {
  bool was_current = false;  // the entry had this epoch and was removed
  bool went_offline = false;  // it was the user's last live device
  UserState user;             // the user after the disconnect
};

// A user some of whose registry entries expired and were removed by a sweep.
struct Expired {
  UserState user;             // the user after the sweep
  int devices = 0;            // registry entries removed for the user
  bool went_offline = false;  // they were the user's last live devices (last seen set)
};

struct RateDecision {
  bool allowed = false;
  int64_t retry_after_ms = 0;  // when refused: time until a token is available
};

// Timing settings the store needs on every call (from PresenceOptions).
struct StoreTimings {
  int64_t entry_ttl_ms = 60'000;          // registry entry lifetime without heartbeat
  int64_t last_seen_ttl_ms = 30LL * 86'400'000;  // visibility + last seen (+ epoch counter)
  int64_t subscription_ttl_ms = 3'600'000;       // a Subscribe stays live this long
  int64_t rate_burst = 10;                // subscribe-change token bucket: capacity
  int64_t rate_refill_ms = 6'000;         // one token per this many ms
};

// Where presence state lives. Every operation is atomic per user (all of one user's state
// shares a Redis hash slot); operations spanning users are a batch of per-user steps with no
// atomicity across users. Errors: Unavailable when the backing store cannot be reached;
// Internal on a malformed stored value. Thread-safe.
class PresenceStore {
 public:
  virtual ~PresenceStore() = default;

  // Gives `device` the next epoch (strictly greater than every earlier one) and makes it the
  // live entry on `gateway_id` until now + entry_ttl. A previous live entry is replaced (its
  // epoch comes back as displaced_epoch). `visibility` other than kUnspecified is stored.
  virtual absl::StatusOr<ConnectOutcome> Connect(const DeviceKey& device,
                                                 const std::string& gateway_id,
                                                 Visibility visibility, int64_t now_ms) = 0;
  // Removes the entry of `device` when its epoch is `epoch`; otherwise changes nothing
  // (was_current false). When the user goes offline, last seen becomes now.
  virtual absl::StatusOr<DisconnectOutcome> Disconnect(const DeviceKey& device, uint64_t epoch,
                                                       int64_t now_ms) = 0;
  // Extends every entry of `connections` whose epoch is current and live (to now + entry_ttl).
  // Returns the ones that are not (displaced or expired), in input order.
  virtual absl::StatusOr<std::vector<Connection>> Heartbeat(
      const std::string& gateway_id, absl::Span<const Connection> connections,
      int64_t now_ms) = 0;
  // Stores `visibility` (kNobody or kEveryone) and returns the user's state.
  virtual absl::StatusOr<UserState> SetVisibility(const std::string& user_id,
                                                  Visibility visibility, int64_t now_ms) = 0;
  // The state of each user, in input order.
  virtual absl::StatusOr<std::vector<UserState>> Read(absl::Span<const std::string> user_ids,
                                                      int64_t now_ms) = 0;
  // Live entries of `devices` (absent ones are left out), in input order.
  virtual absl::StatusOr<std::vector<Location>> Locate(absl::Span<const DeviceKey> devices,
                                                       int64_t now_ms) = 0;
  // Takes one token of `device`'s subscription-change bucket.
  virtual absl::StatusOr<RateDecision> TakeSubscribeToken(const DeviceKey& device,
                                                          int64_t now_ms) = 0;
  // Makes `user_ids` (distinct) the complete watched set of `subscriber` until now +
  // subscription_ttl, dropping the previous set. Returns the state of each watched user.
  virtual absl::StatusOr<std::vector<UserState>> ReplaceSubscriptions(
      const DeviceKey& subscriber, absl::Span<const std::string> user_ids, int64_t now_ms) = 0;
  // Devices with a live subscription to `user_id`.
  virtual absl::StatusOr<std::vector<DeviceKey>> Subscribers(const std::string& user_id,
                                                             int64_t now_ms) = 0;
  // Removes registry entries that expired by now, at most `limit` of them, on the parts of the
  // index this replica claims (`replica_id`; several replicas may sweep at once, each expired
  // entry is reported by exactly one). Returns the users concerned; empty when nothing is due.
  virtual absl::StatusOr<std::vector<Expired>> SweepExpired(const std::string& replica_id,
                                                           int64_t now_ms, int limit) = 0;
  // Registry entries not yet swept (approximate count of online devices).
  virtual absl::StatusOr<int64_t> CountEntries() = 0;
};

// Delivers events to device channels. Best effort (pub/sub): a device whose gateway is not
// listening misses them. Thread-safe.
class EventPublisher {
 public:
  virtual ~EventPublisher() = default;
  // Tells each of `to` about `view`. Returns the first error after trying all.
  virtual absl::Status PublishPresence(absl::Span<const DeviceKey> to,
                                       const PresenceView& view) = 0;
  // Tells `device`'s connections with a lower epoch that `epoch` replaced them.
  virtual absl::Status PublishDisplaced(const DeviceKey& device, uint64_t epoch) = 0;
};

}  // namespace padlock::presence
