#include "clients/sdk/receiver.h"

#include <algorithm>
#include <map>
#include <utility>

#include "absl/strings/str_cat.h"
#include "clients/sdk/errors.h"

namespace padlock::client {
namespace {

bool IsOneToOne(padlock::v1::EnvelopeType type) {
  return type == padlock::v1::ENVELOPE_TYPE_MESSAGE ||
         type == padlock::v1::ENVELOPE_TYPE_PREKEY_MESSAGE;
}

// True when this Messenger handles `content` (format and kind in MessengerCapabilities).
bool CanShow(const Content& content) {
  const ContentCapabilities mine = MessengerCapabilities();
  return content.format_version == mine.format_version &&
         std::find(mine.kinds.begin(), mine.kinds.end(), static_cast<uint8_t>(content.kind)) !=
             mine.kinds.end();
}

// Fills the receiver's event for content it cannot show.
void MarkUnsupported(const Content& content, MessengerEvent& event) {
  event.kind = MessengerEvent::Kind::kUnsupportedContent;
  event.detail =
      absl::StrCat("content kind ", static_cast<int>(content.kind), " in format ",
                   static_cast<int>(content.format_version), " is not supported by this app");
}

std::string DescribeCapabilities(const ContentCapabilities& c) {
  std::string kinds;
  for (uint8_t k : c.kinds) absl::StrAppend(&kinds, kinds.empty() ? "" : ",", k);
  return absl::StrCat("its app reads content format ", c.format_version, ", kinds ", kinds);
}

}  // namespace

void Receiver::HandleDeliver(const padlock::v1::Deliver& deliver,
                             std::vector<MessengerEvent>& out) {
  std::vector<std::string> acks;
  std::map<std::string, std::vector<std::string>> receipts;     // peer → message ids
  std::map<std::string, std::vector<std::string>> unsupported;  // peer → message ids
  for (const padlock::v1::Envelope& envelope : deliver.envelopes()) {
    if (core_.options.on_envelope) core_.options.on_envelope(envelope);
    const RemoteAddress sender{envelope.sender().user_id(),
                               static_cast<int32_t>(envelope.sender().device_id())};
    absl::StatusOr<bool> seen = core_.store->WasReceived(sender, envelope.message_id());
    if (!seen.ok()) continue;  // local store trouble: leave it in the inbox for later
    if (*seen) {
      acks.push_back(envelope.server_id());
      continue;
    }
    MessengerEvent event{.kind = MessengerEvent::Kind::kRejected};
    event.peer = sender.user_id;
    event.peer_device = static_cast<uint32_t>(sender.device_id);
    event.message_id = envelope.message_id();
    event.sent_at_ms = envelope.server_timestamp_ms();
    event.sequence = envelope.sequence();
    const bool group_message = envelope.type() == padlock::v1::ENVELOPE_TYPE_SENDER_KEY_MESSAGE;
    if (!IsOneToOne(envelope.type()) && !group_message) {
      event.detail = "unexpected envelope type";
      out.push_back(std::move(event));
      acks.push_back(envelope.server_id());
      continue;
    }
    // Decrypt (a savepoint inside), record the id and store the text in one transaction, then ack.
    bool report = true;
    absl::Status status = core_.store->InTransaction([&]() -> absl::Status {
      if (group_message) return handlers_.group_message(envelope, event);
      absl::StatusOr<Content> content =
          core_.crypto->Decrypt(sender, Ciphertext{envelope.type(), envelope.ciphertext()});
      if (!content.ok()) return content.status();
      absl::StatusOr<bool> fresh = core_.store->MarkReceived(sender, envelope.message_id());
      if (!fresh.ok()) return fresh.status();
      if (!CanShow(*content)) {
        // Not dropped silently: reported here, acked, and the sender is told (below).
        MarkUnsupported(*content, event);
        return absl::OkStatus();
      }
      switch (content->kind) {
        case ContentKind::kText: {
          absl::StatusOr<std::pair<std::string, std::string>> text = DecodeTextBody(content->body);
          if (!text.ok()) return text.status();
          const bool own = sender.user_id == core_.account->user_id;
          event.kind = MessengerEvent::Kind::kMessage;
          event.outgoing = own;
          event.conversation = own ? text->first : sender.user_id;
          event.text = text->second;
          return core_.store->AddMessage(HistoryMessage{
              envelope.message_id(), event.conversation, sender.user_id,
              static_cast<uint32_t>(sender.device_id), static_cast<uint8_t>(ContentKind::kText),
              text->second, static_cast<int64_t>(envelope.server_timestamp_ms()),
              absl::ToUnixMillis(core_.Now()), own,
              own ? MessageStatus::kSent : MessageStatus::kDelivered});
        }
        case ContentKind::kReceipt: {
          absl::StatusOr<std::pair<MessageStatus, std::vector<std::string>>> receipt =
              DecodeReceiptBody(content->body);
          if (!receipt.ok()) return receipt.status();
          event.kind = MessengerEvent::Kind::kReceipt;
          event.receipt_status = receipt->first;
          event.message_ids = receipt->second;
          if (receipt->first == MessageStatus::kUnsupported) {
            absl::StatusOr<ContentCapabilities> capabilities =
                DecodeUnsupportedReceiptCapabilities(content->body);
            if (!capabilities.ok()) return capabilities.status();
            event.kind = MessengerEvent::Kind::kUnsupported;
            event.detail = DescribeCapabilities(*capabilities);
          }
          for (const std::string& id : receipt->second) {
            if (absl::Status s = core_.store->RaiseMessageStatus(id, receipt->first); !s.ok()) {
              return s;
            }
          }
          return absl::OkStatus();
        }
        case ContentKind::kTyping:
          event.kind = MessengerEvent::Kind::kTyping;
          event.text = content->body == "1" ? "1" : "0";
          return absl::OkStatus();
        case ContentKind::kGroupUpdate:
          return handlers_.group_update(sender, content->body, event);
        case ContentKind::kGroupKeyDistribution:
          report = false;  // plumbing, not news
          return handlers_.group_key(sender, content->body);
        case ContentKind::kStory:
          return handlers_.story(sender, envelope, content->body, event);
        default:  // CanShow said yes to every kind it lists
          MarkUnsupported(*content, event);
          return absl::OkStatus();
      }
    });
    if (status.ok()) {
      acks.push_back(envelope.server_id());
      if (event.kind == MessengerEvent::Kind::kMessage &&
          sender.user_id != core_.account->user_id && !group_message) {
        receipts[sender.user_id].push_back(envelope.message_id());
      }
      // Online-only envelopes (no server id: typing-like signals) get no answer: a kind a newer
      // client sends that way is not worth a stored receipt. Nor do this account's own devices.
      if (event.kind == MessengerEvent::Kind::kUnsupportedContent &&
          sender.user_id != core_.account->user_id && !envelope.server_id().empty()) {
        unsupported[sender.user_id].push_back(envelope.message_id());
      }
      if (report) out.push_back(std::move(event));
    } else if (absl::IsAlreadyExists(status)) {
      acks.push_back(envelope.server_id());  // a replayed ciphertext: already handled
    } else if (absl::IsDataLoss(status) || absl::IsInvalidArgument(status) ||
               absl::IsFailedPrecondition(status)) {
      // From a key the user has not accepted (the sender changed identity): not read, not
      // dropped. It stays unacknowledged (the server redelivers it on a later connection) and is
      // decrypted once the user accepts the new key (AcceptIdentity). Beyond what IdentityHolds
      // keeps it is reported and dropped like any message that does not decrypt.
      if (IsUntrustedIdentity(status) && holds_.KeepIncoming(envelope)) {
        holds_.Hold(
            IdentityChangedError(sender.user_id, {static_cast<uint32_t>(sender.device_id)}));
        continue;
      }
      // Tampered, corrupt, or undecryptable for another reason: it will never decrypt, and the
      // savepoint left the session as it was. Report and drop it.
      event.kind = MessengerEvent::Kind::kRejected;
      event.detail =
          absl::IsFailedPrecondition(status)
              ? absl::StrCat("cannot decrypt (security code changed or no session): ",
                             status.message())
              : absl::StrCat("rejected a message that does not decrypt: ", status.message());
      out.push_back(std::move(event));
      acks.push_back(envelope.server_id());
    }
    // Anything else (local store failure): not acked, so the server delivers it again.
  }
  // An ack that cannot be written (the connection dropped) is harmless: the server delivers
  // what it did not see acknowledged again, and the duplicate check acks it then.
  (void)Ack(acks);
  if (core_.options.send_receipts) {
    for (const auto& [peer, ids] : receipts) {
      ComposeReceipt(peer, EncodeReceiptBody(MessageStatus::kDelivered, ids), out);
    }
  }
  if (core_.options.send_unsupported_receipts) {
    for (const auto& [peer, ids] : unsupported) {
      ComposeReceipt(peer, EncodeUnsupportedReceiptBody(MessengerCapabilities(), ids), out);
    }
  }
  // Disconnected: the receipts go out after the next `connected`.
  (void)outbox_.Flush();
}

absl::Status Receiver::Ack(const std::vector<std::string>& server_ids) {
  if (server_ids.empty() || core_.stream == nullptr) return absl::OkStatus();
  padlock::v1::ClientFrame frame;
  for (const std::string& id : server_ids) frame.mutable_ack()->add_server_ids(id);
  return core_.stream->Write(frame);
}

void Receiver::ComposeReceipt(const std::string& peer, const std::string& body,
                              std::vector<MessengerEvent>& out) {
  absl::StatusOr<std::string> queued =
      outbox_.Compose(peer, ContentKind::kReceipt, body, false, "");
  if (queued.ok()) return;
  ++receipt_failures_;
  MessengerEvent e{.kind = MessengerEvent::Kind::kError};
  e.peer = peer;
  e.conversation = peer;
  e.detail = absl::StrCat("receipt to ", peer, " not sent: ", queued.status().message());
  out.push_back(std::move(e));
}

}  // namespace padlock::client
