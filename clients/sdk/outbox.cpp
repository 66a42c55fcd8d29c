#include "clients/sdk/outbox.h"

#include <openssl/rand.h>

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "clients/sdk/device_list.h"

namespace padlock::client {
namespace {

absl::StatusOr<std::string> RandomBytes(size_t n) {
  std::string out(n, '\0');
  if (RAND_bytes(reinterpret_cast<unsigned char*>(out.data()), static_cast<int>(n)) != 1) {
    return absl::InternalError("RAND_bytes failed");
  }
  return out;
}

void RemoveRecipient(padlock::v1::OutgoingMessage& message, const std::string& user,
                     uint32_t device) {
  auto* recipients = message.mutable_recipients();
  for (int i = recipients->size() - 1; i >= 0; --i) {
    const padlock::v1::DeviceAddress& d = recipients->Get(i).device();
    if (d.user_id() == user && d.device_id() == device) recipients->DeleteSubrange(i, 1);
  }
}

// Reports a local store failure as kError instead of dropping it: the server's answer was taken
// into account, but the device's record of it (history status, outbox row) may lag.
void ReportIfFailed(const absl::Status& status, const char* what, const std::string& message_id,
                    std::vector<MessengerEvent>& out) {
  if (status.ok()) return;
  MessengerEvent e{.kind = MessengerEvent::Kind::kError};
  e.message_id = message_id;
  e.detail = absl::StrCat(what, ": ", status.message());
  out.push_back(std::move(e));
}

}  // namespace

absl::StatusOr<std::string> Outbox::Compose(const std::string& peer, ContentKind kind,
                                            const std::string& body, bool keep_in_history,
                                            const std::string& history_text) {
  if (!core_.account.has_value()) return core_.RequireAccount();
  // A user whose identity changed gets nothing now: the entry is queued without their devices and
  // held; AcceptIdentity addresses it to the keys the user accepted.
  auto list_of =
      [&](const std::string& user) -> absl::StatusOr<std::optional<padlock::v1::SignedDeviceList>> {
    if (holds_.Held(user)) return std::nullopt;
    absl::StatusOr<padlock::v1::SignedDeviceList> list = recipients_.CachedDeviceList(user);
    if (list.ok()) return std::optional<padlock::v1::SignedDeviceList>(*std::move(list));
    if (holds_.Hold(list.status())) return std::nullopt;
    return list.status();
  };
  absl::StatusOr<std::optional<padlock::v1::SignedDeviceList>> peer_list = list_of(peer);
  if (!peer_list.ok()) return peer_list.status();
  absl::StatusOr<std::optional<padlock::v1::SignedDeviceList>> own_list =
      list_of(core_.account->user_id);
  if (!own_list.ok()) return own_list.status();
  const bool held = !peer_list->has_value() || !own_list->has_value();
  // Refuse what the server would refuse once padded and encrypted, before any session work
  // (docs/PROTOCOL.md "Limits"): the same check EncodeContent makes, with the same message.
  if (body.size() > kMaxContentBodySize) {
    return EncodeContent(Content{kind, body}).status();
  }
  absl::StatusOr<std::string> message_id = RandomBytes(16);
  if (!message_id.ok()) return message_id.status();
  const Content content{kind, body};
  padlock::v1::OutgoingMessage message;
  message.set_message_id(*message_id);
  // Sessions, ratchet steps, the outbox entry and the history row commit together: a crash
  // leaves either nothing or a complete entry that goes out later with these exact bytes.
  absl::Status status = core_.store->InTransaction([&]() -> absl::Status {
    if (peer_list->has_value()) {
      if (absl::Status s = recipients_.AddRecipients(**peer_list, content, message); !s.ok())
        return s;
    }
    if (peer != core_.account->user_id && own_list->has_value()) {
      if (absl::Status s = recipients_.AddRecipients(**own_list, content, message); !s.ok())
        return s;
    }
    if (message.recipients().empty() && !held) {
      return absl::InvalidArgumentError(absl::StrCat("no device of ", peer, " to send to"));
    }
    const int64_t now = absl::ToUnixMillis(core_.Now());
    if (absl::Status s = core_.store->AddOutbox(OutboxEntry{
            *message_id, peer, static_cast<uint8_t>(kind), body, message.SerializeAsString(), now});
        !s.ok()) {
      return s;
    }
    if (!keep_in_history) return absl::OkStatus();
    return core_.store->AddMessage(HistoryMessage{
        *message_id, peer, core_.account->user_id, core_.account->device_id,
        static_cast<uint8_t>(kind), history_text, now, now, true, MessageStatus::kPending});
  });
  if (!status.ok()) return status;
  return *message_id;
}

absl::Status Outbox::Send(const OutboxEntry& entry) {
  if (!core_.connected()) return absl::UnavailableError("not connected");
  padlock::v1::ClientFrame frame;
  const uint64_t request_id = core_.next_request_id++;
  frame.mutable_send()->set_request_id(request_id);
  if (!frame.mutable_send()->mutable_message()->ParseFromString(entry.payload)) {
    return absl::DataLossError("outbox entry does not parse");
  }
  if (absl::Status s = core_.stream->Write(frame); !s.ok()) return s;
  in_flight_[request_id] = entry.message_id;
  return absl::OkStatus();
}

absl::Status Outbox::Flush() {
  if (!core_.connected()) return absl::OkStatus();
  absl::StatusOr<std::vector<OutboxEntry>> entries = core_.store->ListOutbox();
  if (!entries.ok()) return entries.status();
  std::set<std::string> waiting;
  for (const auto& [request_id, message_id] : in_flight_) waiting.insert(message_id);
  const absl::Time now = core_.Now();
  for (const OutboxEntry& entry : *entries) {
    if (waiting.count(entry.message_id) > 0) continue;
    if (holds_.EntryHeld(entry)) continue;  // not sent until the user accepts the new identity
    auto due = retry_at_.find(entry.message_id);
    if (due != retry_at_.end()) {
      if (due->second > now) continue;
      retry_at_.erase(due);
    }
    if (absl::Status s = Send(entry); !s.ok()) return s;
  }
  return absl::OkStatus();
}

absl::Status Outbox::FixMismatch(const std::string& message_id,
                                 const padlock::v1::Mismatch& mismatch) {
  absl::StatusOr<std::vector<OutboxEntry>> entries = core_.store->ListOutbox();
  if (!entries.ok()) return entries.status();
  auto entry = std::find_if(entries->begin(), entries->end(),
                            [&](const OutboxEntry& e) { return e.message_id == message_id; });
  if (entry == entries->end()) return absl::NotFoundError("message no longer queued");
  padlock::v1::OutgoingMessage message;
  if (!message.ParseFromString(entry->payload)) {
    return absl::DataLossError("outbox entry does not parse");
  }
  if (!message.shared_ciphertext().empty()) return fix_group_mismatch_(*entry, message, mismatch);
  const Content content{static_cast<ContentKind>(entry->content_kind), entry->body};
  return core_.store->InTransaction([&]() -> absl::Status {
    for (const padlock::v1::DeviceMismatch& user : mismatch.users()) {
      // Extra devices left the list and stale ones were reinstalled: their sessions are dead.
      for (uint32_t d : user.extra_device_ids()) {
        RemoveRecipient(message, user.user_id(), d);
        if (absl::Status s = core_.store->DeleteSession({user.user_id(), static_cast<int32_t>(d)});
            !s.ok()) {
          return s;
        }
      }
      for (uint32_t d : user.stale_device_ids()) {
        RemoveRecipient(message, user.user_id(), d);
        if (absl::Status s = core_.store->DeleteSession({user.user_id(), static_cast<int32_t>(d)});
            !s.ok()) {
          return s;
        }
      }
      absl::StatusOr<padlock::v1::SignedDeviceList> list =
          recipients_.RefreshDeviceList(user.user_id());
      if (!list.ok()) return list.status();
      if (list->list().version() < user.device_list_version()) {
        return absl::UnavailableError("device list not yet at the version the server checked");
      }
      // Devices no longer on the verified list get nothing, whatever the server said.
      for (int i = message.recipients_size() - 1; i >= 0; --i) {
        const padlock::v1::DeviceAddress& d = message.recipients(i).device();
        if (d.user_id() == user.user_id() && FindDevice(list->list(), d.device_id()) == nullptr) {
          message.mutable_recipients()->DeleteSubrange(i, 1);
        }
      }
      if (absl::Status s = recipients_.AddRecipients(*list, content, message); !s.ok()) return s;
    }
    return core_.store->UpdateOutboxPayload(message_id, message.SerializeAsString());
  });
}

void Outbox::HandleSendResult(const padlock::v1::SendResult& result,
                              std::vector<MessengerEvent>& out) {
  auto it = in_flight_.find(result.request_id());
  if (it == in_flight_.end()) return;
  const std::string message_id = it->second;
  in_flight_.erase(it);
  auto fail = [&](std::string detail) {
    ReportIfFailed(core_.store->RemoveOutbox(message_id), "remove a failed message from the outbox",
                   message_id, out);
    ReportIfFailed(core_.store->RaiseMessageStatus(message_id, MessageStatus::kFailed),
                   "mark a message failed", message_id, out);
    MessengerEvent e{.kind = MessengerEvent::Kind::kSendFailed};
    e.message_id = message_id;
    e.detail = std::move(detail);
    out.push_back(std::move(e));
  };
  switch (result.outcome_case()) {
    case padlock::v1::SendResult::kAccepted: {
      // A row left behind is sent again and deduplicated by the server.
      ReportIfFailed(core_.store->RemoveOutbox(message_id), "remove a sent message from the outbox",
                     message_id, out);
      ReportIfFailed(core_.store->RaiseMessageStatus(message_id, MessageStatus::kSent),
                     "mark a message sent", message_id, out);
      mismatch_retries_.erase(message_id);
      MessengerEvent e{.kind = MessengerEvent::Kind::kSent};
      e.message_id = message_id;
      e.sent_at_ms = result.accepted().server_timestamp_ms();
      out.push_back(std::move(e));
      return;
    }
    case padlock::v1::SendResult::kMismatch: {
      if (++mismatch_retries_[message_id] > 5) {
        fail("the recipient's devices keep changing; gave up");
        return;
      }
      absl::Status fixed = FixMismatch(message_id, result.mismatch());
      if (holds_.Hold(fixed)) {
        // The entry stays queued as it was (the transaction rolled back) and is not sent again
        // until the user accepts: nothing goes to the new key before that.
        mismatch_retries_.erase(message_id);
        return;
      }
      if (absl::IsUnavailable(fixed) || absl::IsResourceExhausted(fixed)) {
        retry_at_[message_id] = core_.Now() + RetryAfter(fixed).value_or(absl::Seconds(1));
        return;
      }
      if (!fixed.ok()) {
        fail(absl::StrCat("cannot re-address the message: ", fixed.message()));
        return;
      }
      // Not in flight any more: if it cannot go out now, the next flush sends it.
      absl::StatusOr<std::vector<OutboxEntry>> entries = core_.store->ListOutbox();
      if (!entries.ok()) {
        ReportIfFailed(entries.status(), "resend a re-addressed message", message_id, out);
        return;
      }
      for (const OutboxEntry& entry : *entries) {
        if (entry.message_id == message_id) (void)Send(entry);  // Unavailable: resent on connect
      }
      return;
    }
    case padlock::v1::SendResult::kRefused: {
      const padlock::v1::Refusal& refusal = result.refused();
      if (refusal.code() == static_cast<int>(absl::StatusCode::kResourceExhausted) ||
          refusal.code() == static_cast<int>(absl::StatusCode::kUnavailable)) {
        retry_at_[message_id] =
            core_.Now() +
            absl::Milliseconds(refusal.retry_after_ms() > 0 ? refusal.retry_after_ms() : 1000);
        return;
      }
      fail(absl::StrCat("refused (code ", refusal.code(), "): ", refusal.message()));
      return;
    }
    default:
      return;
  }
}

absl::Status Outbox::Readdress(const std::string& user, const padlock::v1::SignedDeviceList& list,
                               const std::set<uint32_t>& changed) {
  absl::StatusOr<std::vector<OutboxEntry>> entries = core_.store->ListOutbox();
  if (!entries.ok()) return entries.status();
  const bool own = user == core_.account->user_id;
  for (const OutboxEntry& entry : *entries) {
    padlock::v1::OutgoingMessage message;
    if (!message.ParseFromString(entry.payload)) continue;
    // A group entry shares one ciphertext: the server's mismatch answer re-addresses it
    // (FixGroupMismatch), with the sender key sent 1:1 over the new sessions.
    if (!message.shared_ciphertext().empty()) continue;
    bool involves = own || entry.conversation == user;
    for (const padlock::v1::Recipient& r : message.recipients()) {
      involves = involves || r.device().user_id() == user;
    }
    if (!involves) continue;
    const Content content{static_cast<ContentKind>(entry.content_kind), entry.body};
    absl::Status status = core_.store->InTransaction([&]() -> absl::Status {
      // Ciphertexts for an old key, or for a device that left the list, never go out; the
      // others stay byte for byte.
      for (int i = message.recipients_size() - 1; i >= 0; --i) {
        const padlock::v1::DeviceAddress& d = message.recipients(i).device();
        const bool gone = FindDevice(list.list(), d.device_id()) == nullptr;
        if (d.user_id() == user && (changed.count(d.device_id()) > 0 || gone)) {
          message.mutable_recipients()->DeleteSubrange(i, 1);
        }
      }
      if (absl::Status s = recipients_.AddRecipients(list, content, message); !s.ok()) return s;
      return core_.store->UpdateOutboxPayload(entry.message_id, message.SerializeAsString());
    });
    if (!status.ok()) return status;
  }
  return absl::OkStatus();
}

absl::StatusOr<size_t> Outbox::Size() {
  absl::StatusOr<std::vector<OutboxEntry>> entries = core_.store->ListOutbox();
  if (!entries.ok()) return entries.status();
  return entries->size();
}

void Outbox::HandleFrameError(uint64_t request_id) {
  auto it = in_flight_.find(request_id);
  if (it == in_flight_.end()) return;
  retry_at_[it->second] = core_.Now() + absl::Seconds(1);
  in_flight_.erase(it);
}

std::optional<absl::Time> Outbox::NextRetry() const {
  std::optional<absl::Time> out;
  for (const auto& [id, at] : retry_at_) out = out.has_value() ? std::min(*out, at) : at;
  return out;
}

void Outbox::FlushIfDue(absl::Time now) {
  std::optional<absl::Time> next = NextRetry();
  // A write that fails here (the connection dropped) is retried on the next `connected`.
  if (next.has_value() && *next <= now) (void)Flush();
}

}  // namespace padlock::client
