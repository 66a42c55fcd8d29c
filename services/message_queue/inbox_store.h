#pragma once
// Per-device inboxes: the storage interface of the message-queue logic, with its domain types.
// The Redis implementation is RedisInboxStore (docs/MESSAGE_QUEUE.md); tests use an in-memory fake.

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "services/common/redis/replica_wait.h"

namespace padlock::message_queue {

// The payload (by type URL) on a ResourceExhausted append result: why it was refused —
// "inbox_full" (the inbox's entry or byte cap), "memory_pressure" (a large inbox while storage
// memory is under pressure) or "memory_full" (storage memory above the high-water mark).
inline constexpr char kRefusalPayload[] = "type.padlock.dev/padlock.message_queue.Refusal";

// One device of one account.
struct DeviceKey {
  std::string user_id;
  uint32_t device_id = 0;

  friend bool operator==(const DeviceKey& a, const DeviceKey& b) {
    return a.user_id == b.user_id && a.device_id == b.device_id;
  }
  template <typename H>
  friend H AbslHashValue(H h, const DeviceKey& k) {
    return H::combine(std::move(h), k.user_id, k.device_id);
  }
};

// The payload of a group or story send, stored once and referenced from every recipient inbox.
struct SharedPayload {
  // Unique per (sender device, message id), the same on every retry; names the stored payload.
  std::string id;
  std::string bytes;  // the shared ciphertext
  // The longest time-to-live among the entries referring to it, Unix ms.
  uint64_t expires_at_ms = 0;
};

// One copy of one envelope for one device.
struct AppendRequest {
  DeviceKey device;
  // Serialized padlock.v1.Envelope without the server-assigned sequence, server_id and
  // server_timestamp_ms (the store adds those). Opaque to the store otherwise.
  std::string envelope;
  // Idempotency key within the device: sender user, sender device and message id. Two appends
  // with the same key inside the dedupe window store one entry.
  std::string dedupe_key;
  // Unix ms after which an undelivered copy is dropped on read.
  uint64_t expires_at_ms = 0;
  // Publish the wake-up (with the envelope) only; store nothing, no sequence, no dedupe.
  bool online_only = false;
  // Group/story sends: the payload, shared by the requests of one send (null for 1:1 sends,
  // whose `envelope` holds the ciphertext). `envelope` then has no ciphertext; reads merge it in.
  std::shared_ptr<const SharedPayload> shared;
};

struct AppendResult {
  uint64_t sequence = 0;   // 0 for online_only
  std::string server_id;   // empty for online_only
  bool online = false;     // a subscriber received the wake-up (false for duplicates)
  bool duplicate = false;  // a retry inside the dedupe window: the first append's ids
  int64_t expired = 0;     // entries the append's time trim removed
  // No gateway received the wake-up, the device has a push subscription and no push was due for
  // it within InboxLimits::push_interval: the caller should have it woken by a push. Always
  // false when push_interval is zero, for duplicates and for online_only.
  bool push_due = false;
};

// One stored entry as read back.
struct StoredEntry {
  std::string server_id;
  uint64_t sequence = 0;
  uint64_t expires_at_ms = 0;
  // As appended (without the server fields); for a shared-payload entry with the payload merged
  // in as its ciphertext. A shared payload that is gone makes the entry read as expired
  // (expires_at_ms = 1).
  std::string envelope;
};

struct InboxPage {
  // Entries after the cursor, oldest first, at most the number asked for.
  std::vector<StoredEntry> entries;
  // Highest sequence ever appended to the inbox (0 when none).
  uint64_t last_sequence = 0;
  // The ack floor (0 when none): every sequence at or below it was acked, cumulatively or one by
  // one, so nothing at or below it is a gap.
  uint64_t acked_sequence = 0;
  // Sequences above the floor that were acked one by one (ascending): not gaps either.
  std::vector<uint64_t> acked_individually;
  // Entries in the inbox after the read's time trim.
  uint64_t depth = 0;
  // Entries the read's time trim removed.
  int64_t expired = 0;
};

struct AckRequest {
  DeviceKey device;
  std::string up_to_server_id;          // cumulative, inclusive; empty = none
  std::vector<std::string> server_ids;  // individual entries
};

struct InboxInfo {
  uint64_t depth = 0;
  uint64_t last_sequence = 0;
  uint64_t bytes = 0;
};

// Thread-safe. Server ids are stream ids "<ms>-<n>"; callers pass only well-formed ones.
class InboxStore {
 public:
  virtual ~InboxStore() = default;

  // Stores each distinct shared payload once (before any append that refers to it), then
  // appends every request, in order per device (requests of one device are applied in the order
  // given). One result per request: the placement; ResourceExhausted when the inbox is at its
  // count or byte cap or memory admission refused it (nothing appended for that request; the
  // kRefusalPayload payload says which); Unavailable when the store cannot be
  // reached or the outcome is unknown (a retry with the same dedupe key is safe). No atomicity
  // across requests.
  virtual std::vector<absl::StatusOr<AppendResult>> Append(
      absl::Span<const AppendRequest> requests) = 0;

  // Trims what retention has expired, then returns up to `max_entries` entries after
  // `after_server_id` (exclusive; empty = from the start). Unavailable on store failure.
  virtual absl::StatusOr<InboxPage> Read(const DeviceKey& device, std::string_view after_server_id,
                                         uint32_t max_entries) = 0;

  // Deletes acknowledged entries (and a shared payload once no entry refers to it any more); one
  // result per request: the number of entries removed (0 for
  // a repeated ack). Unavailable on store failure.
  virtual std::vector<absl::StatusOr<uint64_t>> Ack(absl::Span<const AckRequest> requests) = 0;

  // Ack(acks), then Append(appends): the results of each, as those calls return them. A store
  // that can does both in one round trip (Redis: the ack scripts lead the appends' pipeline).
  struct AckAndAppendResults {
    std::vector<absl::StatusOr<uint64_t>> acks;
    std::vector<absl::StatusOr<AppendResult>> appends;
  };
  virtual AckAndAppendResults AckAndAppend(absl::Span<const AckRequest> acks,
                                           absl::Span<const AppendRequest> appends) {
    AckAndAppendResults results;
    if (!acks.empty()) results.acks = Ack(acks);
    if (!appends.empty()) results.appends = Append(appends);
    return results;
  }

  // Deletes the device's inbox and everything kept with it. Returns the entries removed.
  virtual absl::StatusOr<uint64_t> Purge(const DeviceKey& device) = 0;

  virtual absl::StatusOr<InboxInfo> Info(const DeviceKey& device) = 0;
};

// What every inbox store enforces (RedisInboxStore, and the fake in tests/fakes).
struct InboxLimits {
  absl::Duration retention = absl::Hours(24 * 30);  // time trim on append and read
  uint64_t max_entries = 100'000;                   // per inbox; more → ResourceExhausted
  uint64_t max_bytes = 256ull << 20;                // stored envelope bytes per inbox
  absl::Duration dedupe_window = absl::Seconds(60);  // retries inside it return the first ids
  // Wake-ups carry the envelope when its serialized size is at most this; else only the sequence.
  uint64_t inline_wakeup_bytes = 4096;
  // Durability policy: with replicas > 0, a send's writes (shared payloads, appends) are followed
  // by WAIT on the connections that made them, and appends that fewer replicas confirmed within
  // the timeout fail with Unavailable (the send is refused; a retry is deduplicated).
  redis::ReplicaWait durability;
  // At most one push per device per this interval (the pn: mark, docs/PUSH.md); zero when no
  // notifier is configured: appends never report push_due and write no mark.
  absl::Duration push_interval = absl::ZeroDuration();
};

}  // namespace padlock::message_queue
