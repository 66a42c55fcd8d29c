#pragma once
// Messenger: one device of one account, end to end — the account lifecycle (register as primary,
// link, unlink, prekey replenishment and rotation), verified device lists, 1:1 and group text,
// stories, receipts and typing — over a Transport (transport.h: a real gateway, or a fake in
// tests), with all state in the device's LocalStore (docs/CLIENT.md).
//
// A façade over parts that share a MessengerCore (messenger_core.h):
//   Recipients     verified device lists, sessions, a ciphertext per device (recipients.h)
//   Outbox         pending sends: compose, flush, resend, mismatch repair, retries (outbox.h)
//   Receiver       decrypt, dedupe, history, acks, receipts (receiver.h)
//   IdentityHolds  users whose new identity key is not accepted yet (identity_holds.h)
// Groups, linking, account upkeep, stories and identity changes are the Messenger's own, in
// messenger_groups.cpp, messenger_link.cpp, messenger_account.cpp, messenger_stories.cpp and
// messenger_identity.cpp. Body codecs are in content.h; typed errors in errors.h.
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
#include "clients/sdk/identity_holds.h"
#include "clients/sdk/local_store.h"
#include "clients/sdk/messenger_core.h"
#include "clients/sdk/outbox.h"
#include "clients/sdk/receiver.h"
#include "clients/sdk/recipients.h"
#include "clients/sdk/transport.h"
#include "padlock/v1/gateway.pb.h"

namespace padlock::client {

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
  // The same over `transport` instead of a gateway client (options.gateway is not used).
  static absl::StatusOr<std::unique_ptr<Messenger>> Open(MessengerOptions options,
                                                         std::unique_ptr<Transport> transport);
  ~Messenger();
  Messenger(const Messenger&) = delete;
  Messenger& operator=(const Messenger&) = delete;

  // Creates the account `user_id` with this device as its primary: identity key, registration id,
  // a signed prekey and prekey_batch one-time prekeys (private halves stored here), a signed device
  // list version 1, and the registration signature. AlreadyExists when this folder is registered,
  // or the server's AlreadyExists when the user id is taken; RESOURCE_EXHAUSTED (RetryAfter) when
  // rate limited; Unavailable when the gateway cannot be reached.
  absl::Status Register(const std::string& user_id, const std::string& invite_token = "");
  bool registered() const { return core_.account.has_value(); }

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
  bool IdentityHeld(const std::string& peer) const { return holds_.Held(peer); }

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
  // `fresh.home` holds an account; the server's errors otherwise. The new install talks through
  // `transport`, or a gateway client from fresh.gateway when it is null.
  absl::StatusOr<std::unique_ptr<Messenger>> ChangeIdentity(
      MessengerOptions fresh, std::unique_ptr<Transport> transport = nullptr);
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

  LocalStore& store() { return *core_.store; }
  // The device's crypto (for tests and tools; not thread-safe, like the Messenger).
  DeviceCrypto& crypto() { return *core_.crypto; }
  Transport& transport() { return *core_.transport; }
  // The gateway client of a Messenger opened on a gateway (Open without a transport); aborts on
  // one opened over another transport.
  GatewayClient& gateway();
  SignalContext& signal_context() { return *core_.context; }
  // Entries in the outbox.
  absl::StatusOr<size_t> OutboxSize();
  // Receipts that could not be composed (each also reported as a kError event).
  uint64_t receipt_failures() const { return receiver_.receipt_failures(); }

 private:
  explicit Messenger(MessengerOptions options);
  absl::Status Start();  // after the account exists: crypto + login identity
  void HandleEvent(StreamEvent event, std::vector<MessengerEvent>& out);
  absl::Time ClockNow() const { return core_.Now(); }
  // The parts' operations that the groups, stories and link files use.
  absl::StatusOr<std::string> Compose(const std::string& peer, ContentKind kind,
                                      const std::string& body, bool keep_in_history,
                                      const std::string& history_text) {
    return outbox_.Compose(peer, kind, body, keep_in_history, history_text);
  }
  absl::Status AddRecipients(const padlock::v1::SignedDeviceList& list, const Content& content,
                             padlock::v1::OutgoingMessage& message) {
    return recipients_.AddRecipients(list, content, message);
  }
  absl::StatusOr<padlock::v1::SignedDeviceList> CachedDeviceList(const std::string& user_id) {
    return recipients_.CachedDeviceList(user_id);
  }

  // ---- Groups (messenger_groups.cpp) ----
  // Group parts of receiving, run inside the receive transaction.
  absl::Status ApplyGroupUpdate(const RemoteAddress& sender, std::string_view body,
                                MessengerEvent& event);
  absl::Status ApplyGroupKey(const RemoteAddress& sender, std::string_view body);
  absl::Status DecryptGroupMessage(const padlock::v1::Envelope& envelope, MessengerEvent& event);
  // Sends the group update to `users` (1:1 each).
  absl::Status SendGroupUpdate(const GroupRecord& group, const std::vector<std::string>& users);
  // Re-addresses a shared-payload entry after a mismatch (the Outbox calls it).
  absl::Status FixGroupMismatch(const OutboxEntry& entry, padlock::v1::OutgoingMessage& message,
                                const padlock::v1::Mismatch& mismatch);

  // ---- Stories (messenger_stories.cpp) ----
  // Stores a received story (inside the receive transaction) and fills the kStory event.
  absl::Status ApplyStory(const RemoteAddress& sender, const padlock::v1::Envelope& envelope,
                          std::string_view body, MessengerEvent& event);

  MessengerCore core_;
  std::optional<AccountRecord> pending_link_;  // a linked device not yet approved (device id 0)
  IdentityHolds holds_;
  Recipients recipients_;
  Outbox outbox_;
  Receiver receiver_;
};

}  // namespace padlock::client
