#pragma once
// The message-queue logic: validates sends, checks them against the device lists, fans them out to
// per-device inboxes (one pipelined store call per batch), reads backlogs with gap detection,
// acks, purges. Works on the padlock.v1 message types (plain protobuf, no gRPC), which are the
// domain types here: the service layer only maps statuses.
//
// Thread-safe; the directory, store, clock and metrics registry must outlive it.

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "absl/time/time.h"
#include "padlock/v1/message_queue.pb.h"
#include "services/common/runtime/clock.h"
#include "services/message_queue/dedupe_id.h"
#include "services/message_queue/device_directory.h"
#include "services/message_queue/inbox_store.h"
#include "services/message_queue/push_notifier.h"

namespace prometheus {
class Counter;
class Histogram;
class Registry;
template <typename T>
class Family;
}  // namespace prometheus

namespace padlock::message_queue {

struct DispatchOptions {
  absl::Duration retention = absl::Hours(24 * 30);  // default and maximum time-to-live
  size_t max_sends_per_request = 1024;
  size_t max_recipients_per_send = 5 * 1024;  // devices
  size_t max_users_per_send = 1024;
  size_t max_ciphertext_bytes = 64 * 1024;
  size_t max_shared_bytes = 256 * 1024;  // group/story payload
  size_t max_header_bytes = 1024;        // per-recipient header of a shared-payload send
  uint32_t default_read_envelopes = 256;
  uint32_t max_read_envelopes = 1024;
  uint32_t default_read_bytes = 1 << 20;
  size_t max_acked_ids = 10'000;  // individual ids in one AckRequest
  // retry_after_ms on sends the store refused for lack of room (a full inbox, memory admission).
  absl::Duration refused_retry_after = absl::Seconds(30);
  // Raw bytes (≥ 32) keying the dedupe and shared-payload ids (dedupe_id.h), the same on every
  // replica (PADLOCK_DEDUPE_SECRET, required by the binary). Empty: a random one per Dispatcher.
  std::string dedupe_secret;
};

class Dispatcher {
 public:
  // `notifier` (may be null: no push wake-ups) gets the devices whose appends report push_due.
  Dispatcher(DispatchOptions options, DeviceDirectory* directory, InboxStore* store,
             runtime::Clock* clock, prometheus::Registry* metrics,
             PushNotifier* notifier = nullptr);

  // One outcome per send, in order (see message_queue.proto); the request's acks are applied
  // before the appends, their outcome in ack_result. Fails as a whole only with InvalidArgument
  // (too many sends, an invalid ack) or the directory's error (Unavailable: retry the request;
  // no ack was applied).
  absl::StatusOr<padlock::v1::EnqueueResponse> Enqueue(const padlock::v1::EnqueueRequest& request);

  // InvalidArgument for a bad device or cursor; Unavailable when the store fails.
  absl::StatusOr<padlock::v1::ReadInboxResponse> ReadInbox(
      const padlock::v1::ReadInboxRequest& request);

  // InvalidArgument for a bad device or id (nothing acked); Unavailable when any ack failed
  // (acks are idempotent: retry the request).
  absl::StatusOr<padlock::v1::AckResponse> Ack(const padlock::v1::AckRequest& request);

  // Removes the inbox; returns the entries removed. InvalidArgument, Unavailable.
  absl::StatusOr<uint64_t> Purge(const padlock::v1::DeviceAddress& device);

  absl::StatusOr<InboxInfo> Info(const padlock::v1::DeviceAddress& device);

 private:
  absl::Status ValidateSend(const padlock::v1::Send& send) const;
  // InvalidArgument (naming `field`) for a bad device or id, or too many ids in all.
  absl::StatusOr<std::vector<AckRequest>> ParseAcks(
      const google::protobuf::RepeatedPtrField<padlock::v1::DeviceAck>& acks,
      std::string_view field) const;
  // Entries removed per ack; the first store failure (some acks may have been applied).
  absl::StatusOr<std::vector<uint32_t>> ApplyAcks(absl::Span<const AckRequest> acks);
  // The store's ack results → entries removed per ack (counted), or the first failure.
  absl::StatusOr<std::vector<uint32_t>> CountAcked(
      const std::vector<absl::StatusOr<uint64_t>>& results);
  void Refuse(padlock::v1::SendOutcome* outcome, absl::StatusCode code, std::string_view reason,
              std::string_view message);

  const DispatchOptions options_;
  const DedupeIds dedupe_ids_;
  DeviceDirectory* const directory_;
  InboxStore* const store_;
  runtime::Clock* const clock_;
  PushNotifier* const notifier_;
  prometheus::Family<prometheus::Counter>* refused_ = nullptr;
  prometheus::Counter* enqueued_ = nullptr;
  prometheus::Counter* online_ = nullptr;
  prometheus::Counter* stored_ = nullptr;
  prometheus::Counter* acked_ = nullptr;
  prometheus::Counter* expired_ = nullptr;
  prometheus::Counter* retry_hits_ = nullptr;
  prometheus::Histogram* depth_ = nullptr;
};

// Checks a stream id "<ms>-<n>" (what server ids are).
bool IsServerId(std::string_view id);

}  // namespace padlock::message_queue
