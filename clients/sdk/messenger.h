#pragma once
// Messenger: one device of one account, end to end — the account lifecycle (register as primary,
// prekey replenishment), verified device lists, 1:1 text with a durable outbox, receiving with
// dedupe and history, and delivery receipts — over a GatewayClient and a DeviceStream, with all
// state in the device's LocalStore (docs/CLIENT.md).
//
// Sending: ComposeText encrypts for every device on the recipient's verified device list and for
// every other device of this account, and stores the message (message id + each device's
// ciphertext, as one serialized OutgoingMessage) in the outbox and the history in one
// transaction, before anything goes out. The outbox is sent whenever the stream (re)connects and
// each entry is resent with the same message id and the same bytes until the server accepts it.
// Only a device mismatch (MISMATCHED_DEVICES / STALE_DEVICES: nothing was stored) changes an entry:
// ciphertexts for devices that left are dropped, devices that are new or reinstalled get a fresh
// session and ciphertext, and the ciphertexts of the others stay byte for byte.
//
// Receiving: each envelope is decrypted, its message id recorded, the text stored in history —
// in one transaction with the ratchet step — and only then acknowledged. A duplicate (same
// sender and message id, or a replayed ciphertext) is acknowledged and dropped; a tampered or
// undecryptable one is reported (kRejected), acknowledged and leaves the session as it was.
//
// Not thread-safe: one thread drives a Messenger (Pump runs the event loop on the caller's thread;
// only the stream's reader runs elsewhere).

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "clients/sdk/content.h"
#include "clients/sdk/crypto_provider.h"
#include "clients/sdk/device_crypto.h"
#include "clients/sdk/gateway_client.h"
#include "clients/sdk/local_store.h"
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
    kConnected,        // the stream is up (detail: epoch)
    kDisconnected,     // the stream dropped; it reconnects by itself (detail: why)
    kStopped,          // the stream ended for good (displaced, revoked, refused; detail)
    kMessage,          // a text arrived (peer, device, conversation, text, message_id)
    kReceipt,          // the peer's device got (or read) our messages (status, message_ids)
    kSent,             // the server accepted an outbox entry (message_id, conversation)
    kSendFailed,       // the server refused an entry for good (detail)
    kQueueEmpty,       // the backlog present at connect time has been delivered
    kGap,              // envelopes expired before this device fetched them (gap)
    kRejected,         // an envelope did not decrypt (tampered, corrupt, or identity changed)
    kPreKeysReplenished,  // one-time prekeys uploaded after PreKeysLow (detail: count)
    kGroupUpdated,     // a group was created, changed, or this account was removed (conversation)
    kTyping,           // the peer is typing (text "1") or stopped (text "0"); online only
    kStory,            // a story arrived (peer, peer_device, text, message_id, expires_at_ms)
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
  };
  Kind kind = Kind::kMessage;
  std::string peer = {};     // sender user (kMessage, kReceipt, kRejected)
  uint32_t peer_device = 0;
  bool outgoing = false;     // kMessage: a copy of this account's own message (another device)
  std::string conversation = {};  // the other user of the conversation
  std::string text = {};
  std::string message_id = {};    // 16 bytes
  std::vector<std::string> message_ids = {};  // kReceipt
  MessageStatus receipt_status = MessageStatus::kDelivered;
  uint64_t sent_at_ms = 0;   // server timestamp
  uint64_t sequence = 0;
  padlock::v1::Gap gap = {};
  std::string detail = {};
  // ---- Stories (messenger_stories.cpp) ----
  int64_t expires_at_ms = 0;  // kStory: not shown from then on
};

// How a text body names its conversation, so that this account's other devices file a copy
// under the right peer: u16 big-endian length of the recipient user id, the id, then the text.
std::string EncodeTextBody(std::string_view to_user, std::string_view text);
absl::StatusOr<std::pair<std::string, std::string>> DecodeTextBody(std::string_view body);
// A receipt body: one status byte (MessageStatus kDelivered or kRead), then 16-byte message ids.
// With status kUnsupported the status byte is followed by the receiver's capabilities (below),
// then the ids. DecodeReceiptBody reads all three statuses (DataLoss for any other).
std::string EncodeReceiptBody(MessageStatus status, const std::vector<std::string>& message_ids);
absl::StatusOr<std::pair<MessageStatus, std::vector<std::string>>> DecodeReceiptBody(
    std::string_view body);

// What a client reads: the highest content format version and the content kinds (ascending).
// Sent in "unsupported" receipts so that the sender knows what the peer's client can show.
struct ContentCapabilities {
  uint8_t format_version = kContentFormatVersion;
  std::vector<uint8_t> kinds = {};
  bool operator==(const ContentCapabilities&) const = default;
};
// This SDK's Messenger: format 1; kinds text, receipt, typing, group key distribution, group
// update, story (not call signal: no body layout is defined for it yet).
ContentCapabilities MessengerCapabilities();
// An "unsupported" receipt: status byte 5, format version byte, kind count byte, the kinds, then
// 16-byte message ids (at least one).
std::string EncodeUnsupportedReceiptBody(const ContentCapabilities& capabilities,
                                         const std::vector<std::string>& message_ids);
// The capabilities of an "unsupported" receipt body. DataLoss for any other body.
absl::StatusOr<ContentCapabilities> DecodeUnsupportedReceiptCapabilities(std::string_view body);

// A story body: u32 big-endian time-to-live in seconds (not 0), then the text.
std::string EncodeStoryBody(uint32_t ttl_seconds, std::string_view text);
absl::StatusOr<std::pair<uint32_t, std::string>> DecodeStoryBody(std::string_view body);

// A group update body: 16-byte group id, u16 title length, title, u16 member count, then each
// member as u16 length + user id.
struct GroupUpdate {
  std::string group_id;
  std::string title;
  std::vector<std::string> members = {};
};
std::string EncodeGroupUpdate(const GroupUpdate& update);
absl::StatusOr<GroupUpdate> DecodeGroupUpdate(std::string_view body);
// The history conversation of a group: "group:" + hex(group id).
std::string GroupConversation(std::string_view group_id);

// What a link code carries (Messenger::CreateLinkRequest): the new device's public keys.
struct LinkCodeContents {
  std::string user_id;
  std::string identity_key;
  uint32_t registration_id = 0;
  uint32_t signed_prekey_id = 0;
  std::string signed_prekey_public;
  std::string signed_prekey_signature;
};
// InvalidArgument for a code that is not base64url or is malformed.
absl::StatusOr<LinkCodeContents> ParseLinkCode(const std::string& code);

class Messenger {
 public:
  // Opens (creating) the device folder and database, and the gateway client (not connected).
  // PermissionDenied for a wrong passphrase; Internal when the folder cannot be created.
  static absl::StatusOr<std::unique_ptr<Messenger>> Open(MessengerOptions options);
  ~Messenger();
  Messenger(const Messenger&) = delete;
  Messenger& operator=(const Messenger&) = delete;

  // Creates the account `user_id` with this device as its primary: identity key, registration id,
  // a signed prekey and prekey_batch one-time prekeys (private halves stored here), a signed device
  // list version 1, and the registration signature. AlreadyExists when this folder is registered,
  // or the server's AlreadyExists when the user id is taken; RESOURCE_EXHAUSTED (RetryAfter) when
  // rate limited; Unavailable when the gateway cannot be reached.
  absl::Status Register(const std::string& user_id, const std::string& invite_token = "");
  bool registered() const { return account_.has_value(); }

  // ---- Linking a second device (docs/CLIENT.md "Linking") ----
  // On the NEW device: creates its keys for account `user_id` and returns the link code to type
  // (or paste) into the primary: base64url of the user id, identity key, registration id and
  // signed prekey. Calling it again returns the same code. AlreadyExists when registered.
  absl::StatusOr<std::string> CreateLinkRequest(const std::string& user_id);
  // On the PRIMARY: checks the code (the signed prekey's signature) and publishes a new device
  // list, signed by this device, that adds the new device with the next device id, together with
  // its signed prekey. Returns the new device id (the same one when the code was approved before).
  // FailedPrecondition when this is not device 1; InvalidArgument for a malformed code.
  absl::StatusOr<uint32_t> ApproveLink(const std::string& code);
  // On the NEW device: waits (up to `timeout`) until the primary approved, i.e. until this key can
  // log in as one of the account's devices; then stores the device id, verifies the account's list
  // and uploads one-time prekeys. DeadlineExceeded when not approved in time.
  // It polls with one login attempt (GetChallenge + Login) per `link_poll_interval` (2 s: the
  // gateway's default per-address login refill, so the address's budget stays nearly full and
  // `link-approve` from the same address keeps working), trying device id 2 on every other attempt
  // and 3..16 in turn in between. RESOURCE_EXHAUSTED is waited out (its retry-after, at
  // least the interval), not returned.
  absl::Status CompleteLink(absl::Duration timeout);
  bool link_pending() const { return pending_link_.has_value(); }
  // FailedPrecondition when not registered.
  absl::StatusOr<AccountRecord> account() const;

  // Opens the device stream and waits for its `connected` frame (processing what arrives
  // meanwhile). Unavailable when no connection came up within `timeout` (with the last error);
  // FailedPrecondition when not registered; the stream's error when it stopped for good.
  absl::Status Connect(absl::Duration timeout);
  void Disconnect();
  bool connected() const;

  // Encrypts `text` for `peer` (and this account's other devices) and queues it: outbox + history
  // in one transaction. Does not send (FlushOutbox / Pump do). Returns the 16-byte message id.
  // NotFound when the peer does not exist; DataLoss when the peer's device list does not verify.
  // When a device of the peer changed identity (IdentityHeld), the message is queued but held:
  // encrypted to none of the peer's devices until AcceptIdentity.
  absl::StatusOr<std::string> ComposeText(const std::string& peer, const std::string& text);
  // Composes, sends, and pumps until the server accepted (or refused) it or `timeout` passed
  // (DeadlineExceeded; the message stays queued and goes out on a later connection).
  absl::StatusOr<std::string> SendText(const std::string& peer, const std::string& text,
                                       absl::Duration timeout);
  // Flushes the outbox and pumps until queued message `id` is accepted (returns it) or refused
  // (FailedPrecondition), or held because a recipient's identity changed (FailedPrecondition
  // "held until the new identity is accepted"; it stays queued), or `timeout` passes
  // (DeadlineExceeded: it stays queued).
  absl::StatusOr<std::string> AwaitSent(const std::string& id, absl::Duration timeout);
  // Sends every queued entry that is not already waiting for its result on this connection.
  // A no-op while disconnected (the entries go out after the next `connected`).
  absl::Status FlushOutbox();

  // Runs the event loop for up to `timeout`: handles frames (deliveries → history + acks, send
  // results → outbox, PreKeysLow → upload), resends due retries, and returns what happened.
  // Returns early once `done` (if given) returns true for an event.
  std::vector<MessengerEvent> Pump(absl::Duration timeout,
                                   const std::function<bool(const MessengerEvent&)>& done = {});

  // The verified device list of `user_id`, fetched from the server, verified (signature, version
  // not older than seen, trusted primary key) and stored. Codes as VerifyDeviceList, NotFound.
  absl::StatusOr<padlock::v1::SignedDeviceList> RefreshDeviceList(const std::string& user_id);
  // The safety number with each device of `peer` (device id → 60 digits), from its verified list.
  absl::StatusOr<std::map<uint32_t, std::string>> SafetyNumbers(const std::string& peer);
  // Trusts `peer`'s current identity keys (after the user compared safety numbers), then
  // re-addresses the messages held for `peer`: ciphertexts for devices whose key changed (or
  // that left the list) are dropped, the new keys get fresh sessions, the other ciphertexts stay
  // byte for byte, and the outbox is flushed.
  absl::Status AcceptIdentity(const std::string& peer);
  // Whether messages to `peer` are held because a device of theirs changed identity (detected
  // through a MISMATCHED/STALE answer, a device-list refresh, or an undecryptable pre-key
  // message). Kept in memory: after a restart the next send rediscovers it the same way.
  bool IdentityHeld(const std::string& peer) const { return held_.count(peer) > 0; }

  // ---- Identity change (docs/CLIENT.md "Identity changes and safety numbers") ----
  // Moves this PRIMARY device to a new identity key, as a reinstall does: makes a new identity,
  // registration id, signed prekey and prekey_batch one-time prekeys in the empty folder
  // `fresh.home`, signs the change with the current key and the next device list (same devices,
  // device 1 with the new key) with the new one, and sends both through the gateway's
  // ChangeIdentity. Returns the new install's Messenger (registered, not connected). This
  // Messenger is disconnected and its folder obsolete (its key no longer logs in). Sessions are
  // not carried over: peers see the change (STALE) and must accept the new security code.
  // PermissionDenied on a linked device (the key-directory lets only the primary change its
  // key; a linked device is unlinked and linked again under a new device id); AlreadyExists when
  // `fresh.home` holds an account; the server's errors otherwise.
  absl::StatusOr<std::unique_ptr<Messenger>> ChangeIdentity(MessengerOptions fresh);
  // Generates `count` one-time prekeys, stores them and uploads them. Returns the server's count.
  absl::StatusOr<uint32_t> ReplenishPreKeys(uint32_t count);

  // Tells `peer`'s connected devices that this user is typing (or stopped): an online_only send,
  // never stored by the server and not kept in the outbox. Unavailable when not connected.
  absl::Status SendTyping(const std::string& peer, bool typing);

  // Marks every received message of the 1:1 conversation with `peer` as read and queues a read
  // receipt for them (sent on the next flush). Returns how many messages it covered.
  absl::StatusOr<size_t> MarkRead(const std::string& peer);

  // ---- Groups (Sender Keys; the server fans one shared ciphertext out) ----
  // Creates a group of this account and `members` (user ids; unknown users are NotFound) and
  // tells every member (a group-update message, 1:1). Returns the 16-byte group id.
  absl::StatusOr<std::string> CreateGroup(const std::string& title,
                                          const std::vector<std::string>& members);
  // Adds / removes a member and tells everyone concerned (the removed user included). Removing
  // rotates this device's sender key, so the removed member cannot read what is sent next; the
  // other members rotate theirs when the update reaches them.
  absl::Status AddGroupMember(const std::string& group_id, const std::string& user);
  absl::Status RemoveGroupMember(const std::string& group_id, const std::string& user);
  // Encrypts once with this device's sender key (first sending the key, 1:1, to every member
  // device that lacks it) and queues one shared-payload send to every member device.
  absl::StatusOr<std::string> ComposeGroupText(const std::string& group_id,
                                               const std::string& text);
  absl::StatusOr<std::string> SendGroupText(const std::string& group_id, const std::string& text,
                                            absl::Duration timeout);

  // ---- Devices, signed-prekey rotation, stories (messenger_account.cpp, messenger_stories.cpp;
  // docs/CLIENT.md "Unlinking", "Signed-prekey rotation", "Stories") ----
  // On the PRIMARY: publishes the next signed device list (version + 1) without `device_id`; the
  // server then revokes that device (its stream closes, its token stops working, its inbox is
  // purged). This device drops its session with it at once; peers drop theirs when the server
  // answers their next send with a mismatch. FailedPrecondition when this is not device 1;
  // InvalidArgument for device 1 (delete the account instead); NotFound when not listed.
  absl::Status UnlinkDevice(uint32_t device_id);
  // Rotates the signed prekey when the current one is older than
  // MessengerOptions::signed_prekey_rotation: a new key (next id) is stored, then published, then
  // made current; the old one is kept for signed_prekey_grace and deleted after. Also deletes
  // retired keys whose grace has passed. Returns whether it rotated. Call it after Connect (the
  // CLI does on every connecting command) or on a timer.
  absl::StatusOr<bool> RotateSignedPreKeyIfDue();
  // Encrypts a story for every device of each user in `audience` (1:1 sessions; unknown users
  // are NotFound) and this account's other devices, queued with ttl = story_ttl, and stores the
  // own copy among the stories. Returns the 16-byte message id. InvalidArgument when `audience`
  // is empty or only this account.
  absl::StatusOr<std::string> ComposeStory(const std::vector<std::string>& audience,
                                           const std::string& text);
  absl::StatusOr<std::string> PostStory(const std::vector<std::string>& audience,
                                        const std::string& text, absl::Duration timeout);
  // Stories not yet expired by the messenger's clock (received and own), oldest first; expired
  // ones are deleted.
  absl::StatusOr<std::vector<StoryRecord>> ListStories();

  LocalStore& store() { return *store_; }
  // The device's crypto (for tests and tools; not thread-safe, like the Messenger).
  DeviceCrypto& crypto() { return *crypto_; }
  GatewayClient& gateway() { return *gateway_; }
  SignalContext& signal_context() { return *context_; }
  // Entries in the outbox.
  absl::StatusOr<size_t> OutboxSize();

 private:
  struct Pending {  // an outbox entry sent on the current connection, awaiting its SendResult
    std::string message_id;
  };

  explicit Messenger(MessengerOptions options);
  absl::Status Start();  // after the account exists: crypto + login identity
  void HandleEvent(StreamEvent event, std::vector<MessengerEvent>& out);
  void HandleDeliver(const padlock::v1::Deliver& deliver, std::vector<MessengerEvent>& out);
  void HandleSendResult(const padlock::v1::SendResult& result, std::vector<MessengerEvent>& out);
  absl::Status SendEntry(const OutboxEntry& entry);
  // Queues `kind`/`body` for `peer`'s devices and this account's other devices.
  absl::StatusOr<std::string> Compose(const std::string& peer, ContentKind kind,
                                      const std::string& body, bool keep_in_history,
                                      const std::string& history_text);
  // Adds recipients (claiming bundles as needed) for every device of `list` not in `skip`.
  absl::Status AddRecipients(const padlock::v1::SignedDeviceList& list, const Content& content,
                             padlock::v1::OutgoingMessage& message);
  absl::StatusOr<padlock::v1::SignedDeviceList> CachedDeviceList(const std::string& user_id);
  absl::Status EnsureSession(const padlock::v1::DeviceListEntry& entry, const std::string& user);
  absl::Status FixMismatch(const std::string& message_id, const padlock::v1::Mismatch& mismatch);
  absl::Status Ack(const std::vector<std::string>& server_ids);
  // Group parts of receiving, run inside the receive transaction.
  absl::Status ApplyGroupUpdate(const RemoteAddress& sender, std::string_view body,
                                MessengerEvent& event);
  absl::Status ApplyGroupKey(const RemoteAddress& sender, std::string_view body);
  absl::Status DecryptGroupMessage(const padlock::v1::Envelope& envelope, MessengerEvent& event);
  // Sends the group update to `users` (1:1 each).
  absl::Status SendGroupUpdate(const GroupRecord& group, const std::vector<std::string>& users);
  // Re-addresses a shared-payload entry after a mismatch (see FixMismatch).
  absl::Status FixGroupMismatch(const OutboxEntry& entry, padlock::v1::OutgoingMessage& message,
                                const padlock::v1::Mismatch& mismatch);

  // Pause between two login attempts of CompleteLink (see there).
  absl::Duration link_poll_interval = absl::Seconds(2);

  // ---- Account upkeep and stories (messenger_account.cpp, messenger_stories.cpp) ----
  absl::Time ClockNow() const;
  // Stores a received story (inside the receive transaction) and fills the kStory event.
  absl::Status ApplyStory(const RemoteAddress& sender, const padlock::v1::Envelope& envelope,
                          std::string_view body, MessengerEvent& event);

  MessengerOptions options_;
  std::unique_ptr<SignalContext> context_;
  std::unique_ptr<LocalStore> store_;
  std::unique_ptr<GatewayClient> gateway_;
  std::unique_ptr<DeviceCrypto> crypto_;
  std::unique_ptr<DeviceStream> stream_;
  std::optional<AccountRecord> account_;
  std::optional<AccountRecord> pending_link_;  // a linked device not yet approved (device id 0)
  uint64_t next_request_id_ = 1;
  std::map<uint64_t, Pending> in_flight_;         // request id → entry
  std::map<std::string, absl::Time> retry_at_;    // message id → when to resend (rate limited)
  std::map<std::string, int> mismatch_retries_;   // message id → mismatches fixed so far

  // ---- Identity changes ----
  // Records that `status` (an identity-changed error) holds messages to its user and queues a
  // kIdentityChanged event once per (user, device). False when `status` is not one.
  bool HoldForIdentityChange(const absl::Status& status);
  // Moves queued events (identity changes noticed outside Pump) to `out`.
  void DrainPendingEvents(std::vector<MessengerEvent>& out);
  // Whether `entry` addresses (or is for) a user whose messages are held.
  bool EntryHeld(const OutboxEntry& entry) const;
  // Re-addresses queued 1:1 entries that involve `user` to `list` (AcceptIdentity).
  absl::Status ReaddressFor(const std::string& user, const padlock::v1::SignedDeviceList& list,
                            const std::set<uint32_t>& changed);
  std::map<std::string, std::set<uint32_t>> held_;  // user → devices with an unaccepted key
  std::vector<MessengerEvent> pending_events_;
  // Envelopes from a key not accepted yet, unacknowledged, read after AcceptIdentity (this
  // connection only: after a reconnect the server delivers them again).
  std::vector<padlock::v1::Envelope> held_incoming_;
};

}  // namespace padlock::client
