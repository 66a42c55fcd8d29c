#pragma once
// The device's local database (DESIGN.md "messages live on devices"): one SQLite file, created
// with mode 0600, optionally encrypted with a passphrase (SQLCipher), with a versioned schema
// (PRAGMA user_version). It holds the local identity, signed and one-time prekeys, sessions,
// remote identities (trust on first use), sender keys, and — schema only for now — verified
// device lists and message history.
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

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "clients/sdk/identity.h"

struct sqlite3;

namespace padlock::client {

// Current schema version (PRAGMA user_version).
inline constexpr int kLocalStoreSchemaVersion = 1;

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

  // Runs `body` in one SQLite transaction: committed when it returns OK, rolled back otherwise,
  // so that a libsignal operation's several writes (session, consumed prekey, trusted identity)
  // land together or not at all. Not reentrant. Returns body's status, or Internal when the
  // transaction itself fails.
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
