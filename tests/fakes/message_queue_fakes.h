#pragma once
// Fakes for the message-queue logic: a settable device directory, an in-memory inbox store with
// the same observable rules as RedisInboxStore (sequences, caps, dedupe window, retention trim,
// cumulative-ack floor), and a manual clock.

#include <cstdint>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <tuple>
#include <utility>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "services/message_queue/device_directory.h"
#include "services/message_queue/dispatcher.h"
#include "services/message_queue/inbox_store.h"

namespace padlock::message_queue {

class FakeDeviceDirectory final : public DeviceDirectory {
 public:
  // Sets `user`'s list: (device id, registration id) pairs.
  void Set(const std::string& user, uint64_t version,
           const std::vector<std::pair<uint32_t, uint32_t>>& devices);
  void Remove(const std::string& user);
  void FailWith(absl::Status status);
  int calls();        // GetDeviceLists calls
  int users_asked();  // users over all calls

  absl::StatusOr<absl::flat_hash_map<std::string, DeviceListInfo>> GetDeviceLists(
      absl::Span<const std::string> user_ids) override;

 private:
  std::mutex mu_;
  absl::flat_hash_map<std::string, DeviceListInfo> lists_;
  absl::Status failure_;
  int calls_ = 0;
  int users_asked_ = 0;
};

class InMemoryInboxStore final : public InboxStore {
 public:
  InMemoryInboxStore(InboxLimits limits, runtime::Clock* clock) : limits_(limits), clock_(clock) {}

  std::vector<absl::StatusOr<AppendResult>> Append(
      absl::Span<const AppendRequest> requests) override;
  absl::StatusOr<InboxPage> Read(const DeviceKey& device, std::string_view after_server_id,
                                 uint32_t max_entries) override;
  std::vector<absl::StatusOr<uint64_t>> Ack(absl::Span<const AckRequest> requests) override;
  absl::StatusOr<uint64_t> Purge(const DeviceKey& device) override;
  absl::StatusOr<InboxInfo> Info(const DeviceKey& device) override;

  // Wake-ups "published": (device, sequence); online devices are those listed here.
  std::vector<std::pair<DeviceKey, uint64_t>> published();
  void SetOnline(const DeviceKey& device);
  // Makes every call fail with `status` (OK to heal).
  void FailWith(absl::Status status);

 private:
  struct Item {
    StoredEntry stored;
    std::string payload;  // shared payload id, or empty
  };
  struct Inbox {
    std::map<std::pair<int64_t, uint64_t>, Item> entries;
    uint64_t sequence = 0;
    uint64_t acked = 0;                // the ack floor, as in RedisInboxStore
    std::set<uint64_t> one_by_one;     // acked individually above the floor
    uint64_t bytes = 0;
    int64_t last_ms = 0;
    uint64_t last_n = 0;
    // dedupe key → (first seen ms, sequence, server id)
    std::map<std::string, std::tuple<int64_t, uint64_t, std::string>> dedupe;
  };
  int64_t Trim(Inbox& inbox, int64_t now_ms);
  void Release(const std::string& payload);

  const InboxLimits limits_;
  runtime::Clock* const clock_;
  std::mutex mu_;
  absl::Status failure_;
  absl::flat_hash_map<DeviceKey, Inbox> inboxes_;
  std::vector<std::pair<DeviceKey, uint64_t>> published_;
  std::vector<DeviceKey> online_;
  std::map<std::string, std::pair<std::string, int64_t>> payloads_;  // id → (bytes, references)

 public:
  // Shared payloads currently stored.
  size_t payload_count();
};

}  // namespace padlock::message_queue
