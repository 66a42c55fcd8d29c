#pragma once
// In-memory PresenceStore and EventPublisher for unit tests: the same semantics as the
// Redis adapters (services/presence/redis_presence_store.h), kept in maps under one mutex.

#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "services/presence/presence_store.h"

namespace padlock::presence::testing {

class InMemoryPresenceStore final : public PresenceStore {
 public:
  explicit InMemoryPresenceStore(StoreTimings timings) : timings_(timings) {}

  absl::StatusOr<ConnectOutcome> Connect(const DeviceKey& device, const std::string& gateway_id,
                                         Visibility visibility, int64_t now_ms) override;
  absl::StatusOr<DisconnectOutcome> Disconnect(const DeviceKey& device, uint64_t epoch,
                                               int64_t now_ms) override;
  absl::StatusOr<std::vector<Connection>> Heartbeat(const std::string& gateway_id,
                                                    absl::Span<const Connection> connections,
                                                    int64_t now_ms) override;
  absl::StatusOr<UserState> SetVisibility(const std::string& user_id, Visibility visibility,
                                          int64_t now_ms) override;
  absl::StatusOr<std::vector<UserState>> Read(absl::Span<const std::string> user_ids,
                                              int64_t now_ms) override;
  absl::StatusOr<std::vector<Location>> Locate(absl::Span<const DeviceKey> devices,
                                               int64_t now_ms) override;
  absl::StatusOr<RateDecision> TakeSubscribeToken(const DeviceKey& device,
                                                  int64_t now_ms) override;
  absl::StatusOr<std::vector<UserState>> ReplaceSubscriptions(
      const DeviceKey& subscriber, absl::Span<const std::string> user_ids,
      int64_t now_ms) override;
  absl::StatusOr<std::vector<DeviceKey>> Subscribers(const std::string& user_id,
                                                     int64_t now_ms) override;
  absl::StatusOr<std::vector<Expired>> SweepExpired(const std::string& replica_id,
                                                    int64_t now_ms, int limit) override;
  absl::StatusOr<int64_t> CountEntries() override;

  // Makes every call fail with Unavailable (Redis down).
  void SetUnavailable(bool unavailable) {
    std::lock_guard<std::mutex> lock(mu_);
    unavailable_ = unavailable;
  }

 private:
  struct Entry {
    uint64_t epoch = 0;
    int64_t expires_at = 0;
    int64_t connected_at = 0;
    std::string gateway_id;
  };
  struct User {
    std::map<uint32_t, Entry> entries;
    std::map<uint32_t, uint64_t> epochs;
    Visibility visibility = Visibility::kNobody;
    int64_t last_seen = 0;
    std::map<DeviceKey, int64_t> subscribers;  // device → expiry
  };
  struct Bucket {
    int64_t credit = 0;  // ms of refill, as the Redis script
    int64_t ts = 0;
  };

  // live count after removing expired entries; `removed`/`last` describe what went.
  static int Prune(User& user, int64_t now, int* removed, int64_t* last);
  static int LiveCount(const User& user, int64_t now);
  UserState StateOf(const std::string& user_id, int64_t now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const StoreTimings timings_;
  std::mutex mu_;
  bool unavailable_ ABSL_GUARDED_BY(mu_) = false;
  std::map<std::string, User> users_ ABSL_GUARDED_BY(mu_);
  std::map<DeviceKey, std::vector<std::string>> watches_ ABSL_GUARDED_BY(mu_);
  std::map<DeviceKey, Bucket> buckets_ ABSL_GUARDED_BY(mu_);
};

// Records every event.
class RecordingPublisher final : public EventPublisher {
 public:
  struct PresenceEvent {
    DeviceKey to;
    PresenceView view;
  };
  struct DisplacedEvent {
    DeviceKey device;
    uint64_t epoch;
  };
  absl::Status PublishPresence(absl::Span<const DeviceKey> to, const PresenceView& view) override {
    std::lock_guard<std::mutex> lock(mu_);
    for (const DeviceKey& d : to) presence_.push_back({d, view});
    return absl::OkStatus();
  }
  absl::Status PublishDisplaced(const DeviceKey& device, uint64_t epoch) override {
    std::lock_guard<std::mutex> lock(mu_);
    displaced_.push_back({device, epoch});
    return absl::OkStatus();
  }
  std::vector<PresenceEvent> presence() {
    std::lock_guard<std::mutex> lock(mu_);
    return presence_;
  }
  std::vector<DisplacedEvent> displaced() {
    std::lock_guard<std::mutex> lock(mu_);
    return displaced_;
  }

 private:
  std::mutex mu_;
  std::vector<PresenceEvent> presence_ ABSL_GUARDED_BY(mu_);
  std::vector<DisplacedEvent> displaced_ ABSL_GUARDED_BY(mu_);
};

}  // namespace padlock::presence::testing
