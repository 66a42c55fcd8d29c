#pragma once
// PresenceRegistry: the presence logic — connection registry with epochs and displacement,
// online / last seen with the owner's visibility (failing closed), subscriptions with their
// limits, events to subscribers, and the sweep that expires entries of dead gateways.
//
// Built from plain interfaces (presence_store.h); no grpc or hiredis. Every method may block on
// the store (call it from an executor thread, never a gRPC reaction). Thread-safe: it keeps no
// state of its own beyond metrics, so any number of replicas can serve the same store.

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "services/common/runtime/clock.h"
#include "services/presence/presence_store.h"

namespace prometheus {
class Counter;
class Gauge;
class Registry;
}  // namespace prometheus

namespace padlock::presence {

// Payload key of the retry delay on a ResourceExhausted status from Subscribe: the decimal
// number of milliseconds (the service turns it into `retry-after-ms` trailing metadata).
inline constexpr char kRetryAfterPayload[] = "padlock/retry-after-ms";

struct PresenceOptions {
  // Most distinct users one device may watch (PADLOCK_PRESENCE_MAX_SUBSCRIPTIONS).
  int max_subscriptions = 1000;
  // Identifies this replica when claiming sweep work (host name / pod name + port).
  std::string replica_id = "presence";
  // Expired entries handled per store call during a sweep.
  int sweep_batch = 256;
};

class PresenceRegistry {
 public:
  // `store`, `publisher` and `clock` must outlive the registry. `metrics` may be null (no
  // metrics); otherwise the padlock_presence_* families are registered on it.
  PresenceRegistry(PresenceOptions options, PresenceStore* store, EventPublisher* publisher,
                   runtime::Clock* clock, prometheus::Registry* metrics);

  // Registers a new connection of `device` on `gateway_id` and returns its epoch. An older live
  // connection is told displaced_by_epoch; subscribers are told when the user comes online
  // (visibility everyone). `visibility` kUnspecified keeps the stored value.
  absl::StatusOr<uint64_t> Connect(const DeviceKey& device, const std::string& gateway_id,
                                   Visibility visibility);
  // Ends connection `epoch` of `device`. False (and no change) when it is not the current one.
  // Subscribers are told when it was the user's last device.
  absl::StatusOr<bool> Disconnect(const DeviceKey& device, uint64_t epoch);
  // Keeps the gateway's current connections alive; returns the stale ones (close them).
  absl::StatusOr<std::vector<Connection>> Heartbeat(const std::string& gateway_id,
                                                    absl::Span<const Connection> connections);
  // Stores the owner's visibility (kNobody or kEveryone; kUnspecified is stored as kNobody) and
  // tells subscribers what they may see now.
  absl::Status SetVisibility(const std::string& user_id, Visibility visibility);
  // Presence of `user_ids` as any watcher may see it, in input order.
  absl::StatusOr<std::vector<PresenceView>> Query(absl::Span<const std::string> user_ids);
  // Replaces the watched set of `subscriber` (duplicates collapse) and returns what it may see
  // of each watched user now (first-occurrence order). ResourceExhausted when the set is larger
  // than max_subscriptions, or when changes come too fast (payload kRetryAfterPayload).
  absl::StatusOr<std::vector<PresenceView>> Subscribe(const DeviceKey& subscriber,
                                                      absl::Span<const std::string> user_ids);
  // Live locations of `devices` (operators).
  absl::StatusOr<std::vector<Location>> Locate(absl::Span<const DeviceKey> devices);
  // One sweep: expires dead entries (told to subscribers) and refreshes the online gauge.
  // Returns the number of users that went offline.
  absl::StatusOr<int> Sweep();

  // What a watcher may see of `user` (fails closed).
  static PresenceView ViewOf(const UserState& user);

 private:
  // Publishes ViewOf(user) to the user's subscribers; failures are counted and swallowed (the
  // state change itself is done, and events are best effort).
  void Notify(const UserState& user);

  const PresenceOptions options_;
  PresenceStore* const store_;
  EventPublisher* const publisher_;
  runtime::Clock* const clock_;
  prometheus::Gauge* online_devices_ = nullptr;
  prometheus::Counter* connects_ = nullptr;
  prometheus::Counter* disconnects_ = nullptr;
  prometheus::Counter* displacements_ = nullptr;
  prometheus::Counter* expired_ = nullptr;
  prometheus::Counter* events_published_ = nullptr;
  prometheus::Counter* publish_failures_ = nullptr;
};

}  // namespace padlock::presence
