#pragma once
// What the parts of a Messenger share (messenger.h): its options, the events it reports, and
// MessengerCore — the device's store, crypto, transport and stream, owned by the Messenger and
// used by its parts (Outbox, Receiver, Recipients, IdentityHolds), which it outlives.

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "clients/sdk/content.h"
#include "clients/sdk/crypto_provider.h"
#include "clients/sdk/device_crypto.h"
#include "clients/sdk/gateway_client.h"
#include "clients/sdk/local_store.h"
#include "clients/sdk/transport.h"
#include "padlock/v1/gateway.pb.h"
#include "services/common/runtime/clock.h"

namespace padlock::client {

struct MessengerOptions {
  // The device's folder (created with mode 0700); the database is <home>/padlock.db.
  std::string home = {};
  // Encrypts the database (SQLCipher) when non-empty.
  std::string passphrase = {};
  GatewayClientOptions gateway = {};
  // Send a delivery receipt for every text received.
  bool send_receipts = true;
  // Answer a message this client cannot show (unknown content kind or newer format) with an
  // "unsupported" receipt, so that the sender learns it was not shown (docs/PROTOCOL.md).
  bool send_unsupported_receipts = true;
  // Process `deliver` frames (false: leave envelopes in the inbox, e.g. for a send-only run).
  bool receive = true;
  // One-time prekeys generated at registration and per replenishment (≤ 100 per upload).
  uint32_t prekey_batch = 100;
  // Called with every delivered envelope before it is processed (tests and diagnostics: it sees
  // exactly what the server delivered, ciphertext included).
  std::function<void(const padlock::v1::Envelope&)> on_envelope = {};

  // Pause between two login attempts of CompleteLink (see there).
  absl::Duration link_poll_interval = absl::Seconds(2);

  // ---- Account upkeep and stories (messenger_account.cpp, messenger_stories.cpp) ----
  // Rotate the signed prekey once the current one is older than this (RotateSignedPreKeyIfDue).
  absl::Duration signed_prekey_rotation = absl::Hours(24 * 7);
  // How long a replaced signed prekey's private half is kept, so that PreKey messages built on it
  // and still waiting in the inbox decrypt; then it is deleted. Default: the server's default
  // retention (PADLOCK_RETENTION, 30 d), the longest an envelope waits.
  absl::Duration signed_prekey_grace = absl::Hours(24 * 30);
  // Time-to-live of a posted story, sent to the server as ttl_seconds (it caps it at retention).
  absl::Duration story_ttl = absl::Hours(24);
  // The wall clock (the system clock when null; must outlive the messenger): message timestamps,
  // send retries, waits, signed-prekey ages and story expiry. Tests inject one.
  runtime::Clock* clock = nullptr;
};

// Something the caller may want to show, produced by Pump.
struct MessengerEvent {
  enum class Kind {
    kConnected,           // the stream is up (detail: epoch)
    kDisconnected,        // the stream dropped; it reconnects by itself (detail: why)
    kStopped,             // the stream ended for good (displaced, revoked, refused; detail)
    kMessage,             // a text arrived (peer, device, conversation, text, message_id)
    kReceipt,             // the peer's device got (or read) our messages (status, message_ids)
    kSent,                // the server accepted an outbox entry (message_id, conversation)
    kSendFailed,          // the server refused an entry for good (detail)
    kQueueEmpty,          // the backlog present at connect time has been delivered
    kGap,                 // envelopes expired before this device fetched them (gap)
    kRejected,            // an envelope did not decrypt (tampered, corrupt, or identity changed)
    kPreKeysReplenished,  // one-time prekeys uploaded after PreKeysLow (detail: count)
    kGroupUpdated,  // a group was created, changed, or this account was removed (conversation)
    kTyping,        // the peer is typing (text "1") or stopped (text "0"); online only
    kStory,         // a story arrived (peer, peer_device, text, message_id, expires_at_ms)
    // A device of `peer` (peer_device) has a new identity key ("security code changed"; detail
    // says what): messages to `peer` are held in the outbox, not sent, until AcceptIdentity.
    kIdentityChanged,
    // The peer's device could not show our messages `message_ids` (a content kind or format its
    // client does not know) and said so with an "unsupported" receipt; detail names what it
    // reads (docs/PROTOCOL.md "Unsupported content"). Their history status is kUnsupported.
    kUnsupported,
    // A message from `peer` (message_id) has a content kind or format this client cannot show
    // (detail says which). It was acknowledged and the sender was sent an "unsupported" receipt.
    kUnsupportedContent,
    // Something the messenger could not do in the background, so that it is not lost silently
    // (detail says what and why), e.g. a delivery receipt it could not compose. Nothing to act
    // on per message; Messenger::background_failures() counts them.
    kError,
  };
  Kind kind = Kind::kMessage;
  std::string peer = {};  // sender user (kMessage, kReceipt, kRejected)
  uint32_t peer_device = 0;
  bool outgoing = false;          // kMessage: a copy of this account's own message (another device)
  std::string conversation = {};  // the other user of the conversation
  std::string text = {};
  std::string message_id = {};                // 16 bytes
  std::vector<std::string> message_ids = {};  // kReceipt
  MessageStatus receipt_status = MessageStatus::kDelivered;
  uint64_t sent_at_ms = 0;  // server timestamp
  uint64_t sequence = 0;
  padlock::v1::Gap gap = {};
  std::string detail = {};
  // ---- Stories (messenger_stories.cpp) ----
  int64_t expires_at_ms = 0;  // kStory: not shown from then on
};

// The state a Messenger's parts share. Single-threaded like the Messenger.
struct MessengerCore {
  MessengerOptions options;
  std::unique_ptr<SignalContext> context = nullptr;
  std::unique_ptr<LocalStore> store = nullptr;
  std::unique_ptr<Transport> transport = nullptr;
  // The transport when it is a real gateway (Messenger::Open without a transport), else null.
  GatewayClient* gateway = nullptr;
  std::unique_ptr<DeviceCrypto> crypto = nullptr;     // once the account exists
  std::unique_ptr<TransportStream> stream = nullptr;  // between Connect and Disconnect
  std::optional<AccountRecord> account = std::nullopt;
  uint64_t next_request_id = 1;  // of send frames on the stream

  absl::Time Now() const {
    return (options.clock != nullptr ? options.clock : runtime::SystemClock::Get())->Now();
  }
  bool connected() const { return stream != nullptr && stream->connected(); }
  // FailedPrecondition when this folder holds no account.
  absl::Status RequireAccount() const;
};

}  // namespace padlock::client
