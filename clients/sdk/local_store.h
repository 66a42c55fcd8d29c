#pragma once
// The device's local database (DESIGN.md "messages live on devices"): one SQLite file, created
// with mode 0600, optionally encrypted with a passphrase (SQLCipher), with a versioned schema
// (PRAGMA user_version). It holds the local identity, signed and one-time prekeys, sessions,
// remote identities (trust on first use), sender keys, the account, the verified device lists,
// the durable outbox, message history, the received-message-id set, signed-prekey ages and
// stories.
//
// LocalStore also exposes itself to libsignal as a signal_protocol_store_context
// (CreateStoreContext) whose callbacks follow libsignal-protocol-c 2.3.3's conventions exactly (see
// shared/notes/libsignal-protocol-c.md).
//
// Not thread-safe: use one LocalStore from one thread at a time (libsignal calls the callbacks
// on the caller's thread, under the SignalContext lock).

#include <signal/signal_protocol.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "clients/sdk/content.h"
#include "clients/sdk/identity.h"

struct sqlite3;

namespace padlock::client {

// Current schema version (PRAGMA user_version).
// Version 1: the crypto core; version 2 adds the account, outbox, received ids and message
// status; version 3 adds signed-prekey ages (scheduled rotation) and stories. An older file is
// migrated in place when opened, one transaction per step.
inline constexpr int kLocalStoreSchemaVersion = 3;

// Owning handle for a store context; destroying it leaves the LocalStore untouched.
struct StoreContextDestroy {
  void operator()(signal_protocol_store_context* c) const {
    signal_protocol_store_context_destroy(c);
  }
};
using StoreContextPtr = std::unique_ptr<signal_protocol_store_context, StoreContextDestroy>;

// A remote device as libsignal addresses it.
struct RemoteAddress {
  std::string user_id;
  int32_t device_id = 0;
  bool operator==(const RemoteAddress&) const = default;
};

// Who this device is, once registered (or linked).
struct AccountRecord {
  std::string user_id;
  uint32_t device_id = 0;
  // The next one-time prekey id to generate (ids wrap at kMaxPreKeyId).
  uint32_t next_prekey_id = 1;
  // The id of the current signed prekey.
  uint32_t signed_prekey_id = 0;
};

// A message waiting in the durable outbox: stored before it is first sent, resent with the same
// message id and the same per-device ciphertexts until the server accepts it.
struct OutboxEntry {
  std::string message_id;    // 16 bytes
  std::string conversation;  // the peer user id (or group id)
  uint8_t content_kind = 0;  // ContentKind of the plaintext
  std::string body;          // the plaintext body (kept only to encrypt for devices added later)
  std::string payload;       // serialized padlock.v1.OutgoingMessage, exactly as sent
  int64_t created_at_ms = 0;
};


// One message in the local history.
struct HistoryMessage {
  std::string message_id;  // 16 bytes
  std::string conversation;
  std::string sender_user_id;
  uint32_t sender_device_id = 0;
  uint8_t content_kind = 0;
  std::string body;
  int64_t sent_at_ms = 0;
  int64_t received_at_ms = 0;
  bool outgoing = false;
  MessageStatus status = MessageStatus::kPending;
};

// A group as this device knows it: members are user ids (this account included); `epoch` counts
// this device's own sender-key rotations (a member removal starts a new one).
struct GroupRecord {
  std::string group_id;  // 16 random bytes
  std::string title;
  std::vector<std::string> members = {};
  uint32_t epoch = 0;
};

// A signed prekey held on this device: when it was made and, once a newer one
// replaced it, when it was retired (0 while it is the current one).
struct SignedPreKeyInfo {
  uint32_t id = 0;
  int64_t created_at_ms = 0;
  int64_t retired_at_ms = 0;
};

// A story: shown apart from chat history until it expires.
struct StoryRecord {
  std::string message_id;  // 16 bytes
  std::string sender_user_id;
  uint32_t sender_device_id = 0;
  std::string text;
  int64_t posted_at_ms = 0;   // server timestamp (the posting device's clock for its own copy)
  int64_t expires_at_ms = 0;  // not shown from this time on
  bool outgoing = false;      // posted by this account
  std::vector<std::string> audience = {};  // who it was posted to (the posting device only)
};

// The highest verified signed device list seen for a user.
struct VerifiedDeviceList {
  uint64_t version = 0;
  std::string signed_list;  // serialized padlock.v1.SignedDeviceList
};

class LocalStore {
 public:
  // Opens (creating when absent, with mode 0600) the database at `path`. A non-empty
  // `passphrase` encrypts the file with SQLCipher; an empty one leaves it plain. Returns
  // InvalidArgument when the passphrase contains a NUL byte; PermissionDenied when the file
  // exists but the passphrase is wrong (or it is not a database),
  // FailedPrecondition when its schema version is newer than this code knows, Internal on other
  // SQLite failures.
  static absl::StatusOr<std::unique_ptr<LocalStore>> Open(const std::string& path,
                                                          std::string_view passphrase);
  ~LocalStore();
  LocalStore(const LocalStore&) = delete;
  LocalStore& operator=(const LocalStore&) = delete;

  // Schema version of the open file.
  absl::StatusOr<int> SchemaVersion();

  // Local identity: stored once per install. AlreadyExists when one is stored.
  absl::Status SaveLocalIdentity(const IdentityKeyPair& identity, uint32_t registration_id);
  // NotFound when none is stored.
  absl::StatusOr<IdentityKeyPair> LoadLocalIdentity();
  absl::StatusOr<uint32_t> LoadRegistrationId();

  // Prekeys by id (records are libsignal's serialized forms, as identity.h produces them).
  absl::Status StorePreKey(uint32_t id, std::string_view record);
  absl::Status StoreSignedPreKey(uint32_t id, std::string_view record);
  // Stored one-time prekeys (each is removed when a pre-key message consumes it).
  absl::StatusOr<int64_t> CountPreKeys();
  absl::StatusOr<bool> ContainsPreKey(uint32_t id);

  // Session for `address`; nullopt when none.
  absl::StatusOr<std::optional<std::string>> LoadSession(const RemoteAddress& address);
  absl::StatusOr<bool> ContainsSession(const RemoteAddress& address);

  // The identity key (33 bytes) trusted for `address`; nullopt when none recorded yet.
  absl::StatusOr<std::optional<std::string>> LoadRemoteIdentity(const RemoteAddress& address);
  // Records `public_key` as trusted for `address`, replacing any earlier key: what the user
  // does to accept a changed security code.
  absl::Status AcceptRemoteIdentity(const RemoteAddress& address, std::string_view public_key);

  // Deletes the session with `address` (extra or stale device). OK when there was none.
  absl::Status DeleteSession(const RemoteAddress& address);

  // ---- Account ----
  // AlreadyExists when one is stored.
  absl::Status SaveAccount(const AccountRecord& account);
  // NotFound when the device is not registered yet.
  absl::StatusOr<AccountRecord> LoadAccount();
  absl::Status UpdatePreKeyIds(uint32_t next_prekey_id, uint32_t signed_prekey_id);
  // Sets the device id of a stored account (a linked device learns it once approved).
  absl::Status SetAccountDevice(uint32_t device_id);

  // ---- Verified device lists ----
  // nullopt when none has been verified for `user_id`.
  absl::StatusOr<std::optional<VerifiedDeviceList>> LoadVerifiedDeviceList(
      std::string_view user_id);
  // Replaces the stored list of `user_id`. The caller checks that the version does not go back.
  absl::Status SaveVerifiedDeviceList(std::string_view user_id, const VerifiedDeviceList& list);

  // ---- Outbox ----
  // AlreadyExists when an entry with the same message id is queued.
  absl::Status AddOutbox(const OutboxEntry& entry);
  // Replaces the payload of a queued entry (after a device mismatch). NotFound when absent.
  absl::Status UpdateOutboxPayload(std::string_view message_id, std::string_view payload);
  // Removes an entry (accepted, or failed for good). OK when absent.
  absl::Status RemoveOutbox(std::string_view message_id);
  // Every queued entry, oldest first.
  absl::StatusOr<std::vector<OutboxEntry>> ListOutbox();

  // ---- History ----
  // AlreadyExists when a message with the same message id is stored.
  absl::Status AddMessage(const HistoryMessage& message);
  // Raises the status of message `message_id` (never lowers it: a late "delivered" after "read"
  // is ignored). OK when the message is unknown.
  absl::Status RaiseMessageStatus(std::string_view message_id, MessageStatus status);
  // Messages of `conversation` (all when empty), oldest first (by local insertion order).
  absl::StatusOr<std::vector<HistoryMessage>> ListMessages(std::string_view conversation);

  // ---- Received message ids (dedupe) ----
  // Records `message_id` from `sender` as received; false when it was already recorded.
  absl::StatusOr<bool> MarkReceived(const RemoteAddress& sender, std::string_view message_id);
  absl::StatusOr<bool> WasReceived(const RemoteAddress& sender, std::string_view message_id);

  // ---- Groups ----
  absl::Status SaveGroup(const GroupRecord& group);  // insert or replace
  absl::StatusOr<std::optional<GroupRecord>> LoadGroup(std::string_view group_id);
  absl::StatusOr<std::vector<GroupRecord>> ListGroups();
  absl::Status DeleteGroup(std::string_view group_id);
  // Whether this device's sender key of `epoch` was sent to `device`.
  absl::StatusOr<bool> SenderKeyShared(std::string_view group_id, const RemoteAddress& device,
                                       uint32_t epoch);
  absl::Status MarkSenderKeyShared(std::string_view group_id, const RemoteAddress& device,
                                   uint32_t epoch);
  // Forgets `sender`'s sender key for the group (this device's own: the next use makes a new one).
  absl::Status DeleteSenderKey(std::string_view group_id, const RemoteAddress& sender);

  // ---- Signed prekeys by age (for scheduled rotation) ----
  // Stores (replacing) signed prekey `id` with its age: created at `created_at_ms`, current.
  absl::Status StoreSignedPreKeyAt(uint32_t id, std::string_view record, int64_t created_at_ms);
  // Records (replacing) the age of signed prekey `age.id` (retired_at_ms > 0: replaced then).
  absl::Status SetSignedPreKeyAge(const SignedPreKeyInfo& age);
  // Every stored signed prekey, by id; created_at_ms is 0 for a key whose age was never recorded
  // (stored by StoreSignedPreKey, or in a database from before ages were kept).
  absl::StatusOr<std::vector<SignedPreKeyInfo>> ListSignedPreKeys();
  // Deletes the key and its age. OK when absent.
  absl::Status DeleteSignedPreKey(uint32_t id);
  absl::StatusOr<bool> ContainsSignedPreKey(uint32_t id);

  // ---- Stories ----
  // AlreadyExists when the same sender's story (message id) is stored.
  absl::Status AddStory(const StoryRecord& story);
  // Stories not expired at `now_ms` (expires_at_ms > now_ms), oldest first.
  absl::StatusOr<std::vector<StoryRecord>> ListStories(int64_t now_ms);
  // Deletes stories expired at `now_ms`; returns how many.
  absl::StatusOr<int64_t> DeleteExpiredStories(int64_t now_ms);

  // Runs `body` in one SQLite transaction: committed when it returns OK, rolled back otherwise,
  // so that a libsignal operation's several writes (session, consumed prekey, trusted identity)
  // land together or not at all. Nested calls (a DeviceCrypto operation inside a caller's
  // transaction) run as a SAVEPOINT of the outer transaction: a failed inner body rolls back only
  // its own writes, and nothing is durable before the outermost body commits. Returns body's
  // status, or Internal when the transaction itself fails.
  absl::Status InTransaction(const std::function<absl::Status()>& body);

  // A libsignal store context backed by this store. It borrows `this`: destroy it first. Internal
  // when libsignal cannot create it.
  absl::StatusOr<StoreContextPtr> CreateStoreContext(SignalContext& context);

  // For the callbacks (public so that the C trampolines can reach them; not for SDK users).
  sqlite3* db() const { return db_; }

 private:
  explicit LocalStore(sqlite3* db) : db_(db) {}
  absl::Status Migrate();

  sqlite3* db_;
};

}  // namespace padlock::client
