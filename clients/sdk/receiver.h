#pragma once
// Receiver: the delivering side of a Messenger (messenger.h). Each envelope is decrypted, its
// message id recorded and its content applied (history, receipts' statuses, group state, stories)
// in one transaction with the ratchet step, and only then acknowledged. A duplicate (same sender
// and message id, or a replayed ciphertext) is acknowledged and dropped; a tampered or
// undecryptable one is reported (kRejected), acknowledged and leaves the session as it was; one
// from an identity key not accepted yet is kept unacknowledged (IdentityHolds) and read after
// AcceptIdentity; a local store failure leaves it unacknowledged for redelivery. Texts are
// answered with a delivery receipt, content this client cannot show with an "unsupported"
// receipt; a receipt that cannot be composed is reported (kError) and counted, not dropped.
// Single-threaded.

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "clients/sdk/identity_holds.h"
#include "clients/sdk/messenger_core.h"
#include "clients/sdk/outbox.h"

namespace padlock::client {

class Receiver {
 public:
  // How the groups and stories parts apply what they own; each runs inside the receive
  // transaction and fills `event`.
  struct Handlers {
    std::function<absl::Status(const RemoteAddress& sender, std::string_view body,
                               MessengerEvent& event)>
        group_update;
    std::function<absl::Status(const RemoteAddress& sender, std::string_view body)> group_key;
    std::function<absl::Status(const padlock::v1::Envelope& envelope, MessengerEvent& event)>
        group_message;
    std::function<absl::Status(const RemoteAddress& sender, const padlock::v1::Envelope& envelope,
                               std::string_view body, MessengerEvent& event)>
        story;
  };

  Receiver(MessengerCore& core, Outbox& outbox, IdentityHolds& holds, Handlers handlers)
      : core_(core), outbox_(outbox), holds_(holds), handlers_(std::move(handlers)) {}

  // Handles one `deliver` frame (see above), appending what happened to `out`.
  void HandleDeliver(const padlock::v1::Deliver& deliver, std::vector<MessengerEvent>& out);
  // Receipts (delivery or "unsupported") that could not be composed since construction.
  uint64_t receipt_failures() const { return receipt_failures_; }

 private:
  absl::Status Ack(const std::vector<std::string>& server_ids);
  // Queues a receipt `body` for `peer`; a failure is reported in `out` and counted.
  void ComposeReceipt(const std::string& peer, const std::string& body,
                      std::vector<MessengerEvent>& out);

  MessengerCore& core_;
  Outbox& outbox_;
  IdentityHolds& holds_;
  Handlers handlers_;
  uint64_t receipt_failures_ = 0;
};

}  // namespace padlock::client
