#include "clients/sdk/messenger.h"

#include <openssl/rand.h>
#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <utility>

#include "absl/strings/str_cat.h"
#include "clients/sdk/identity.h"

namespace padlock::client {
namespace {

absl::StatusOr<std::string> RandomBytes(size_t n) {
  std::string out(n, '\0');
  if (RAND_bytes(reinterpret_cast<unsigned char*>(out.data()), static_cast<int>(n)) != 1) {
    return absl::InternalError("RAND_bytes failed");
  }
  return out;
}

}  // namespace

absl::StatusOr<std::unique_ptr<Messenger>> Messenger::Open(MessengerOptions options) {
  absl::StatusOr<std::unique_ptr<GatewayClient>> gateway = GatewayClient::Create(options.gateway);
  if (!gateway.ok()) return gateway.status();
  GatewayClient* client = gateway->get();
  absl::StatusOr<std::unique_ptr<Messenger>> m = Open(std::move(options), *std::move(gateway));
  if (m.ok()) (*m)->core_.gateway = client;
  return m;
}

absl::StatusOr<std::unique_ptr<Messenger>> Messenger::Open(MessengerOptions options,
                                                           std::unique_ptr<Transport> transport) {
  if (options.home.empty()) return absl::InvalidArgumentError("no home folder given");
  if (transport == nullptr) return absl::InvalidArgumentError("no transport given");
  if (::mkdir(options.home.c_str(), 0700) != 0 && errno != EEXIST) {
    return absl::InternalError(absl::StrCat("create ", options.home, ": ", std::strerror(errno)));
  }
  std::unique_ptr<Messenger> m(new Messenger(options));
  m->core_.transport = std::move(transport);
  absl::StatusOr<std::unique_ptr<SignalContext>> context = SignalContext::Create();
  if (!context.ok()) return context.status();
  m->core_.context = *std::move(context);
  absl::StatusOr<std::unique_ptr<LocalStore>> store =
      LocalStore::Open(options.home + "/padlock.db", options.passphrase);
  if (!store.ok()) return store.status();
  m->core_.store = *std::move(store);
  absl::StatusOr<AccountRecord> account = m->core_.store->LoadAccount();
  if (account.ok() && account->device_id == 0) {
    m->pending_link_ = *account;
  } else if (account.ok()) {
    m->core_.account = *account;
    if (absl::Status status = m->Start(); !status.ok()) return status;
  } else if (!absl::IsNotFound(account.status())) {
    return account.status();
  }
  return m;
}

Messenger::Messenger(MessengerOptions options)
    : core_{.options = std::move(options)},
      recipients_(core_),
      outbox_(core_, recipients_, holds_,
              [this](const OutboxEntry& entry, padlock::v1::OutgoingMessage& message,
                     const padlock::v1::Mismatch& mismatch) {
                return FixGroupMismatch(entry, message, mismatch);
              }),
      receiver_(
          core_, outbox_, holds_,
          Receiver::Handlers{
              .group_update =
                  [this](const RemoteAddress& sender, std::string_view body,
                         MessengerEvent& event) { return ApplyGroupUpdate(sender, body, event); },
              .group_key = [this](const RemoteAddress& sender,
                                  std::string_view body) { return ApplyGroupKey(sender, body); },
              .group_message =
                  [this](const padlock::v1::Envelope& envelope, MessengerEvent& event) {
                    return DecryptGroupMessage(envelope, event);
                  },
              .story =
                  [this](const RemoteAddress& sender, const padlock::v1::Envelope& envelope,
                         std::string_view body, MessengerEvent& event) {
                    return ApplyStory(sender, envelope, body, event);
                  },
          }) {}

Messenger::~Messenger() { Disconnect(); }

absl::Status MessengerCore::RequireAccount() const {
  if (account.has_value()) return absl::OkStatus();
  return absl::FailedPreconditionError("this folder holds no account: run `padlock register`");
}

absl::Status Messenger::Start() {
  absl::StatusOr<IdentityKeyPair> identity = core_.store->LoadLocalIdentity();
  if (!identity.ok()) return identity.status();
  absl::StatusOr<std::unique_ptr<DeviceCrypto>> crypto = DeviceCrypto::Create(
      *core_.context, *core_.store,
      RemoteAddress{core_.account->user_id, static_cast<int32_t>(core_.account->device_id)});
  if (!crypto.ok()) return crypto.status();
  core_.crypto = *std::move(crypto);
  padlock::v1::DeviceAddress self;
  self.set_user_id(core_.account->user_id);
  self.set_device_id(core_.account->device_id);
  // The signer holds its own copy of the private key: the stream's thread logs in with it while
  // this thread uses the (single-threaded) store.
  SignalContext* context = core_.context.get();
  core_.transport->SetDevice(self,
                             [context, key = identity->private_key](std::string_view statement) {
                               return Sign(*context, key, statement);
                             });
  return absl::OkStatus();
}

GatewayClient& Messenger::gateway() {
  if (core_.gateway == nullptr) {
    std::fprintf(stderr, "Messenger::gateway() on a messenger opened over another transport\n");
    std::abort();
  }
  return *core_.gateway;
}

absl::StatusOr<AccountRecord> Messenger::account() const {
  if (absl::Status s = core_.RequireAccount(); !s.ok()) return s;
  return *core_.account;
}

absl::Status Messenger::Connect(absl::Duration timeout) {
  if (!core_.account.has_value()) return account().status();
  if (core_.stream != nullptr && core_.stream->connected()) return absl::OkStatus();
  Disconnect();
  core_.stream = core_.transport->OpenStream();
  absl::Status last = absl::UnavailableError("no answer");
  bool up = false;
  std::vector<MessengerEvent> events = Pump(timeout, [&](const MessengerEvent& e) {
    if (e.kind == MessengerEvent::Kind::kConnected) up = true;
    if (e.kind == MessengerEvent::Kind::kDisconnected) last = absl::UnavailableError(e.detail);
    if (e.kind == MessengerEvent::Kind::kStopped) {
      last = absl::FailedPreconditionError(e.detail);
      return true;
    }
    return up;
  });
  if (up) return absl::OkStatus();
  for (const MessengerEvent& e : events) {
    if (e.kind == MessengerEvent::Kind::kStopped) return last;
  }
  core_.stream->Stop();
  return absl::UnavailableError(
      absl::StrCat("cannot reach gateway ", core_.transport->target(), ": ", last.message()));
}

void Messenger::Disconnect() {
  if (core_.stream != nullptr) core_.stream->Stop();
  core_.stream.reset();
  outbox_.ForgetInFlight();
  holds_.ForgetIncoming();  // never acknowledged: the server delivers them again
}

bool Messenger::connected() const { return core_.connected(); }

absl::StatusOr<padlock::v1::SignedDeviceList> Messenger::RefreshDeviceList(
    const std::string& user_id) {
  return recipients_.RefreshDeviceList(user_id);
}

absl::StatusOr<std::string> Messenger::ComposeText(const std::string& peer,
                                                   const std::string& text) {
  return outbox_.Compose(peer, ContentKind::kText, EncodeTextBody(peer, text), true, text);
}

absl::StatusOr<std::string> Messenger::SendText(const std::string& peer, const std::string& text,
                                                absl::Duration timeout) {
  absl::StatusOr<std::string> id = ComposeText(peer, text);
  if (!id.ok()) return id.status();
  return AwaitSent(*id, timeout);
}

absl::StatusOr<std::string> Messenger::AwaitSent(const std::string& id, absl::Duration timeout) {
  (void)FlushOutbox();
  absl::Status outcome = absl::DeadlineExceededError(
      "not yet accepted by the server; it stays queued and is sent on the next connection");
  Pump(timeout, [&](const MessengerEvent& e) {
    if (e.kind == MessengerEvent::Kind::kIdentityChanged) {
      // Held until the user accepts: no point waiting for the server.
      absl::StatusOr<std::vector<OutboxEntry>> outbox = core_.store->ListOutbox();
      if (!outbox.ok()) return false;
      for (const OutboxEntry& entry : *outbox) {
        if (entry.message_id == id && holds_.EntryHeld(entry)) {
          outcome = absl::FailedPreconditionError(
              absl::StrCat("held until the new identity is accepted: ", e.detail));
          return true;
        }
      }
      return false;
    }
    if (e.message_id != id) return false;
    if (e.kind == MessengerEvent::Kind::kSent) {
      outcome = absl::OkStatus();
      return true;
    }
    if (e.kind == MessengerEvent::Kind::kSendFailed) {
      outcome = absl::FailedPreconditionError(e.detail);
      return true;
    }
    return false;
  });
  if (!outcome.ok()) return outcome;
  return id;
}

absl::Status Messenger::SendTyping(const std::string& peer, bool typing) {
  if (!core_.account.has_value()) return account().status();
  if (!connected()) return absl::UnavailableError("not connected");
  absl::StatusOr<padlock::v1::SignedDeviceList> peer_list = recipients_.CachedDeviceList(peer);
  if (!peer_list.ok()) return peer_list.status();
  absl::StatusOr<std::string> message_id = RandomBytes(16);
  if (!message_id.ok()) return message_id.status();
  padlock::v1::ClientFrame frame;
  frame.mutable_send()->set_request_id(core_.next_request_id++);
  padlock::v1::OutgoingMessage* message = frame.mutable_send()->mutable_message();
  message->set_message_id(*message_id);
  message->set_online_only(true);
  absl::Status status = core_.store->InTransaction([&]() -> absl::Status {
    return recipients_.AddRecipients(*peer_list, Content{ContentKind::kTyping, typing ? "1" : "0"},
                                     *message);
  });
  if (!status.ok()) return status;
  // Fire and forget: its SendResult matches no outbox entry and is ignored.
  return core_.stream->Write(frame);
}

absl::StatusOr<size_t> Messenger::MarkRead(const std::string& peer) {
  if (!core_.account.has_value()) return account().status();
  absl::StatusOr<std::vector<HistoryMessage>> messages = core_.store->ListMessages(peer);
  if (!messages.ok()) return messages.status();
  std::vector<std::string> ids;
  for (const HistoryMessage& m : *messages) {
    if (!m.outgoing && m.sender_user_id == peer && m.status < MessageStatus::kRead) {
      ids.push_back(m.message_id);
    }
  }
  if (ids.empty()) return 0;
  absl::Status status = core_.store->InTransaction([&]() -> absl::Status {
    for (const std::string& id : ids) {
      if (absl::Status s = core_.store->RaiseMessageStatus(id, MessageStatus::kRead); !s.ok())
        return s;
    }
    return outbox_
        .Compose(peer, ContentKind::kReceipt, EncodeReceiptBody(MessageStatus::kRead, ids), false,
                 "")
        .status();
  });
  if (!status.ok()) return status;
  (void)FlushOutbox();
  return ids.size();
}

absl::Status Messenger::FlushOutbox() { return outbox_.Flush(); }

absl::StatusOr<size_t> Messenger::OutboxSize() { return outbox_.Size(); }

void Messenger::HandleEvent(StreamEvent event, std::vector<MessengerEvent>& out) {
  switch (event.kind) {
    case StreamEvent::Kind::kDisconnected: {
      outbox_.ForgetInFlight();
      MessengerEvent e{.kind = MessengerEvent::Kind::kDisconnected};
      e.detail = std::string(event.status.message());
      out.push_back(std::move(e));
      return;
    }
    case StreamEvent::Kind::kStopped: {
      outbox_.ForgetInFlight();
      MessengerEvent e{.kind = MessengerEvent::Kind::kStopped};
      e.detail = event.status.ok() ? "displaced by a newer connection or revoked"
                                   : std::string(event.status.message());
      out.push_back(std::move(e));
      return;
    }
    case StreamEvent::Kind::kFrame:
      break;
  }
  const padlock::v1::ServerFrame& frame = event.frame;
  switch (frame.frame_case()) {
    case padlock::v1::ServerFrame::kConnected: {
      outbox_.ForgetInFlight();  // results of a previous connection never arrive: resend
      holds_.ForgetIncoming();   // unacknowledged: this connection delivers them again
      MessengerEvent e{.kind = MessengerEvent::Kind::kConnected};
      e.detail = absl::StrCat("epoch ", frame.connected().epoch());
      out.push_back(std::move(e));
      (void)outbox_.Flush();  // disconnected again: the next `connected` resends
      return;
    }
    case padlock::v1::ServerFrame::kDeliver:
      if (core_.options.receive) receiver_.HandleDeliver(frame.deliver(), out);
      return;
    case padlock::v1::ServerFrame::kSendResult:
      outbox_.HandleSendResult(frame.send_result(), out);
      return;
    case padlock::v1::ServerFrame::kQueueEmpty:
      out.push_back(MessengerEvent{.kind = MessengerEvent::Kind::kQueueEmpty});
      return;
    case padlock::v1::ServerFrame::kGap: {
      MessengerEvent e{.kind = MessengerEvent::Kind::kGap};
      e.gap = frame.gap();
      out.push_back(std::move(e));
      return;
    }
    case padlock::v1::ServerFrame::kPrekeysLow: {
      absl::StatusOr<uint32_t> remaining = ReplenishPreKeys(core_.options.prekey_batch);
      MessengerEvent e{.kind = MessengerEvent::Kind::kPreKeysReplenished};
      e.detail = remaining.ok() ? absl::StrCat(*remaining, " one-time prekeys on the server")
                                : std::string(remaining.status().message());
      out.push_back(std::move(e));
      return;
    }
    case padlock::v1::ServerFrame::kError: {
      // A frame the server could not take; a send it names is retried after a pause.
      outbox_.HandleFrameError(frame.error().request_id());
      return;
    }
    default:
      return;  // pong, presence, displaced / closing (the stream acts on those itself)
  }
}

std::vector<MessengerEvent> Messenger::Pump(
    absl::Duration timeout, const std::function<bool(const MessengerEvent&)>& done) {
  std::vector<MessengerEvent> out;
  const absl::Time deadline = core_.Now() + timeout;
  holds_.DrainEvents(out);
  if (done) {
    for (const MessengerEvent& e : out) {
      if (done(e)) return out;
    }
  }
  while (core_.stream != nullptr) {
    absl::Time now = core_.Now();
    // Wake up for the earliest due retry too.
    const absl::Time wake = std::min(deadline, outbox_.NextRetry().value_or(deadline));
    // At least a few ms: a due retry that cannot go out yet (disconnected) must not spin.
    std::optional<StreamEvent> event =
        core_.stream->Next(std::max(wake - now, std::min(absl::Milliseconds(10), deadline - now)));
    bool stop = false;
    if (event.has_value()) {
      const bool stopped = event->kind == StreamEvent::Kind::kStopped;
      const size_t before = out.size();
      HandleEvent(*std::move(event), out);
      holds_.DrainEvents(out);
      if (done) {
        for (size_t i = before; i < out.size(); ++i) stop = stop || done(out[i]);
      }
      stop = stop || stopped;
    }
    now = core_.Now();
    outbox_.FlushIfDue(now);
    if (stop || now >= deadline) break;
  }
  return out;
}

absl::StatusOr<uint32_t> Messenger::ReplenishPreKeys(uint32_t count) {
  if (!core_.account.has_value()) return account().status();
  const uint32_t start = core_.account->next_prekey_id;
  absl::StatusOr<std::vector<PreKey>> keys = GeneratePreKeys(*core_.context, start, count);
  if (!keys.ok()) return keys.status();
  const uint32_t next =
      static_cast<uint32_t>((static_cast<uint64_t>(start) - 1 + count) % kMaxPreKeyId) + 1;
  absl::Status stored = core_.store->InTransaction([&]() -> absl::Status {
    for (const PreKey& key : *keys) {
      if (absl::Status s = core_.store->StorePreKey(key.id, key.record); !s.ok()) return s;
    }
    return core_.store->UpdatePreKeyIds(next, core_.account->signed_prekey_id);
  });
  if (!stored.ok()) return stored;
  core_.account->next_prekey_id = next;
  padlock::v1::GatewayPublishPreKeysRequest request;
  for (const PreKey& key : *keys) {
    padlock::v1::OneTimePreKey* otk = request.add_one_time_prekeys();
    otk->set_key_id(key.id);
    otk->set_public_key(key.public_key);
  }
  absl::StatusOr<padlock::v1::PublishPreKeysResponse> response =
      core_.transport->PublishPreKeys(request);
  if (!response.ok()) return response.status();
  return response->one_time_prekeys_remaining();
}

}  // namespace padlock::client
