#pragma once
// Outbox: the pending sends of a Messenger (messenger.h). Compose encrypts for every device of the
// peer's verified list and this account's other devices and stores the entry (message id + each
// device's ciphertext, one serialized OutgoingMessage) with its history row in one transaction,
// before anything goes out. Flush sends every entry not already waiting for its result on this
// connection; after a reconnect every entry goes out again with the same message id and bytes
// until the server accepts it. Only a device mismatch (nothing was stored) changes an entry:
// ciphertexts for devices that left are dropped, new or reinstalled devices get a fresh session,
// the other ciphertexts stay byte for byte. Refusals the server may lift (RESOURCE_EXHAUSTED,
// UNAVAILABLE) are retried after its retry-after. Entries for a user whose identity changed are
// held (IdentityHolds) and not sent until accepted. Single-threaded.

#include <functional>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "clients/sdk/identity_holds.h"
#include "clients/sdk/messenger_core.h"
#include "clients/sdk/recipients.h"

namespace padlock::client {

class Outbox {
 public:
  // Re-addresses a shared-payload (group) entry after a mismatch; the groups part provides it.
  using GroupMismatchFixer =
      std::function<absl::Status(const OutboxEntry& entry, padlock::v1::OutgoingMessage& message,
                                 const padlock::v1::Mismatch& mismatch)>;

  Outbox(MessengerCore& core, Recipients& recipients, IdentityHolds& holds,
         GroupMismatchFixer fix_group_mismatch)
      : core_(core),
        recipients_(recipients),
        holds_(holds),
        fix_group_mismatch_(std::move(fix_group_mismatch)) {}

  // Queues `kind`/`body` for `peer`'s devices and this account's other devices (see above);
  // with `keep_in_history` also a history row with `history_text`. Returns the message id.
  // A user whose identity changed gets nothing now: the entry is queued without their devices and
  // held. NotFound for an unknown peer; DataLoss when a device list does not verify.
  absl::StatusOr<std::string> Compose(const std::string& peer, ContentKind kind,
                                      const std::string& body, bool keep_in_history,
                                      const std::string& history_text);
  // Sends every entry that is neither waiting for its result, held, nor waiting for a retry.
  // A no-op while disconnected. The first write error is returned (the rest wait for Flush).
  absl::Status Flush();
  // Applies a send result: accepted → removed (kSent); mismatch → re-addressed and resent (or
  // held, or retried, or given up after 5 in a row: kSendFailed); refused → retried when the
  // server may lift it, else removed (kSendFailed).
  void HandleSendResult(const padlock::v1::SendResult& result, std::vector<MessengerEvent>& out);
  // The server could not take frame `request_id`: a send it names is retried after a second.
  void HandleFrameError(uint64_t request_id);
  // The connection ended or restarted: results of sends in flight never arrive; all are resent.
  void ForgetInFlight() { in_flight_.clear(); }
  // The earliest retry time, if any entry waits for one.
  std::optional<absl::Time> NextRetry() const;
  // Flushes when a retry is due at `now`.
  void FlushIfDue(absl::Time now);
  // Re-addresses queued 1:1 entries that involve `user` to `list` after the user accepted new keys
  // for the devices `changed`: ciphertexts for those (or devices that left) are replaced.
  absl::Status Readdress(const std::string& user, const padlock::v1::SignedDeviceList& list,
                         const std::set<uint32_t>& changed);
  // Entries in the outbox.
  absl::StatusOr<size_t> Size();

 private:
  absl::Status Send(const OutboxEntry& entry);
  absl::Status FixMismatch(const std::string& message_id, const padlock::v1::Mismatch& mismatch);

  MessengerCore& core_;
  Recipients& recipients_;
  IdentityHolds& holds_;
  GroupMismatchFixer fix_group_mismatch_;
  std::map<uint64_t, std::string> in_flight_;    // request id → message id, this connection
  std::map<std::string, absl::Time> retry_at_;   // message id → when to resend
  std::map<std::string, int> mismatch_retries_;  // message id → mismatches fixed so far
};

}  // namespace padlock::client
