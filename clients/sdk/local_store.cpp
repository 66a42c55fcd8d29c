#include "clients/sdk/local_store.h"

#include <fcntl.h>
#include <signal/signal_protocol.h>
#include <sqlcipher/sqlite3.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <utility>

#include "absl/strings/str_cat.h"
#include "clients/sdk/local_store_sql.h"

namespace padlock::client {
namespace {

// Version 1. Ids of remote parties are (user_id, device_id) as libsignal addresses them.
constexpr const char* kSchemaV1 = R"sql(
CREATE TABLE local_identity (
  singleton INTEGER PRIMARY KEY CHECK (singleton = 1),
  public_key BLOB NOT NULL,
  private_key BLOB NOT NULL,
  registration_id INTEGER NOT NULL
);
CREATE TABLE signed_prekeys (id INTEGER PRIMARY KEY, record BLOB NOT NULL);
CREATE TABLE prekeys (id INTEGER PRIMARY KEY, record BLOB NOT NULL);
CREATE TABLE sessions (
  user_id TEXT NOT NULL, device_id INTEGER NOT NULL,
  record BLOB NOT NULL, user_record BLOB,
  PRIMARY KEY (user_id, device_id)
);
CREATE TABLE remote_identities (
  user_id TEXT NOT NULL, device_id INTEGER NOT NULL,
  public_key BLOB NOT NULL,
  PRIMARY KEY (user_id, device_id)
);
CREATE TABLE sender_keys (
  group_id BLOB NOT NULL, user_id TEXT NOT NULL, device_id INTEGER NOT NULL,
  record BLOB NOT NULL, user_record BLOB,
  PRIMARY KEY (group_id, user_id, device_id)
);
CREATE TABLE verified_device_lists (
  user_id TEXT PRIMARY KEY,
  version INTEGER NOT NULL,
  signed_list BLOB NOT NULL
);
CREATE TABLE messages (
  row_id INTEGER PRIMARY KEY AUTOINCREMENT,
  message_id BLOB NOT NULL UNIQUE,
  conversation TEXT NOT NULL,
  sender_user_id TEXT NOT NULL,
  sender_device_id INTEGER NOT NULL,
  content_kind INTEGER NOT NULL,
  body BLOB NOT NULL,
  sent_at_ms INTEGER NOT NULL,
  received_at_ms INTEGER NOT NULL,
  outgoing INTEGER NOT NULL
);
PRAGMA user_version = 1;
)sql";

// Version 2: the account, the durable outbox, received message ids (dedupe, also for contents that
// are not kept in history such as receipts), and a delivery status on history rows.
constexpr const char* kSchemaV2 = R"sql(
CREATE TABLE account (
  singleton INTEGER PRIMARY KEY CHECK (singleton = 1),
  user_id TEXT NOT NULL,
  device_id INTEGER NOT NULL,
  next_prekey_id INTEGER NOT NULL,
  signed_prekey_id INTEGER NOT NULL
);
CREATE TABLE outbox (
  row_id INTEGER PRIMARY KEY AUTOINCREMENT,
  message_id BLOB NOT NULL UNIQUE,
  conversation TEXT NOT NULL,
  content_kind INTEGER NOT NULL,
  body BLOB NOT NULL,
  payload BLOB NOT NULL,
  created_at_ms INTEGER NOT NULL
);
CREATE TABLE received (
  sender_user_id TEXT NOT NULL,
  sender_device_id INTEGER NOT NULL,
  message_id BLOB NOT NULL,
  PRIMARY KEY (sender_user_id, sender_device_id, message_id)
);
CREATE TABLE groups (
  group_id BLOB PRIMARY KEY,
  title TEXT NOT NULL,
  members TEXT NOT NULL,
  epoch INTEGER NOT NULL
);
CREATE TABLE sender_key_shared (
  group_id BLOB NOT NULL, user_id TEXT NOT NULL, device_id INTEGER NOT NULL,
  epoch INTEGER NOT NULL,
  PRIMARY KEY (group_id, user_id, device_id)
);
ALTER TABLE messages ADD COLUMN status INTEGER NOT NULL DEFAULT 0;
PRAGMA user_version = 2;
)sql";

// Version 3: signed-prekey ages (scheduled rotation: created_at_ms; retired_at_ms > 0 once a newer
// key replaced it, kept for the grace period so that queued PreKey messages still decrypt) and
// stories, kept apart from chat history with their expiry. The ages live in their own table so
// that libsignal's signed_prekeys table keeps its v1 shape; a key without an age row (a v2 file)
// starts its age at the first rotation check after the upgrade.
constexpr const char* kSchemaV3 = R"sql(
CREATE TABLE signed_prekey_ages (
  id INTEGER PRIMARY KEY,
  created_at_ms INTEGER NOT NULL,
  retired_at_ms INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE stories (
  row_id INTEGER PRIMARY KEY AUTOINCREMENT,
  message_id BLOB NOT NULL,
  sender_user_id TEXT NOT NULL,
  sender_device_id INTEGER NOT NULL,
  body BLOB NOT NULL,
  posted_at_ms INTEGER NOT NULL,
  expires_at_ms INTEGER NOT NULL,
  outgoing INTEGER NOT NULL,
  audience TEXT NOT NULL,
  UNIQUE (sender_user_id, message_id)
);
CREATE INDEX stories_by_expiry ON stories (expires_at_ms);
PRAGMA user_version = 3;
)sql";

}  // namespace

using internal::SqlError;
using internal::Statement;

absl::StatusOr<std::unique_ptr<LocalStore>> LocalStore::Open(const std::string& path,
                                                             std::string_view passphrase) {
  // Create the file ourselves so that it never exists with a wider mode than 0600.
  const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0) {
    return absl::InternalError(absl::StrCat("open ", path, ": ", std::strerror(errno)));
  }
  ::fchmod(fd, 0600);
  ::close(fd);

  sqlite3* raw = nullptr;
  const int rc = sqlite3_open_v2(path.c_str(), &raw, SQLITE_OPEN_READWRITE, nullptr);
  std::unique_ptr<LocalStore> store(new LocalStore(raw));
  if (rc != SQLITE_OK) return SqlError(raw, absl::StrCat("open ", path));

  if (!passphrase.empty()) {
    if (passphrase.find('\0') != std::string_view::npos) {
      return absl::InvalidArgumentError("passphrase contains a NUL byte");
    }
    // PRAGMA key with the passphrase as an SQL string literal (quotes doubled); SQLCipher
    // derives the key from it with PBKDF2.
    std::string pragma = "PRAGMA key = '";
    for (char c : passphrase) {
      pragma.push_back(c);
      if (c == '\'') pragma.push_back('\'');
    }
    pragma += "'";
    const int key_rc = sqlite3_exec(raw, pragma.c_str(), nullptr, nullptr, nullptr);
    std::fill(pragma.begin(), pragma.end(), '\0');
    if (key_rc != SQLITE_OK) return SqlError(raw, "set database key");
  }
  // The first read is where SQLCipher finds out whether the key is right.
  if (sqlite3_exec(raw, "SELECT count(*) FROM sqlite_master", nullptr, nullptr, nullptr) !=
      SQLITE_OK) {
    return absl::PermissionDeniedError(
        absl::StrCat("open ", path, ": wrong passphrase or not a Padlock database"));
  }
  if (sqlite3_exec(raw, "PRAGMA foreign_keys = ON; PRAGMA journal_mode = WAL;", nullptr, nullptr,
                   nullptr) != SQLITE_OK) {
    return SqlError(raw, "configure database");
  }
  if (absl::Status status = store->Migrate(); !status.ok()) return status;
  return store;
}

LocalStore::~LocalStore() { sqlite3_close_v2(db_); }

absl::StatusOr<int> LocalStore::SchemaVersion() {
  Statement s(db_, "PRAGMA user_version");
  if (s.Step() != SQLITE_ROW) return SqlError(db_, "read schema version");
  return static_cast<int>(s.Int(0));
}

absl::Status LocalStore::Migrate() {
  absl::StatusOr<int> version = SchemaVersion();
  if (!version.ok()) return version.status();
  if (*version > kLocalStoreSchemaVersion) {
    return absl::FailedPreconditionError(absl::StrCat("database schema version ", *version,
                                                      " is newer than this client (",
                                                      kLocalStoreSchemaVersion, ")"));
  }
  // Each step runs in its own transaction, so a crash leaves the file at one version or the next.
  const char* steps[] = {kSchemaV1, kSchemaV2, kSchemaV3};
  for (int v = *version; v < kLocalStoreSchemaVersion; ++v) {
    const std::string sql = absl::StrCat("BEGIN;", steps[v], "COMMIT;");
    if (sqlite3_exec(db_, sql.c_str(), nullptr, nullptr, nullptr) != SQLITE_OK) {
      absl::Status status = SqlError(db_, absl::StrCat("migrate schema to v", v + 1));
      sqlite3_exec(db_, "ROLLBACK", nullptr, nullptr, nullptr);
      return status;
    }
  }
  return absl::OkStatus();
}

absl::Status LocalStore::SaveLocalIdentity(const IdentityKeyPair& identity,
                                           uint32_t registration_id) {
  Statement s(db_,
              "INSERT INTO local_identity (singleton, public_key, private_key, registration_id) "
              "VALUES (1, ?, ?, ?)");
  s.BindBlob(1, identity.public_key.data(), identity.public_key.size())
      .BindBlob(2, identity.private_key.data(), identity.private_key.size())
      .Bind(3, static_cast<int64_t>(registration_id));
  const int rc = s.Step();
  if (rc == SQLITE_CONSTRAINT) return absl::AlreadyExistsError("local identity already stored");
  if (rc != SQLITE_DONE) return SqlError(db_, "save local identity");
  return absl::OkStatus();
}

absl::StatusOr<IdentityKeyPair> LocalStore::LoadLocalIdentity() {
  Statement s(db_, "SELECT public_key, private_key FROM local_identity WHERE singleton = 1");
  const int rc = s.Step();
  if (rc == SQLITE_DONE) return absl::NotFoundError("no local identity stored");
  if (rc != SQLITE_ROW) return SqlError(db_, "load local identity");
  return IdentityKeyPair{s.Blob(0), s.Blob(1)};
}

absl::StatusOr<uint32_t> LocalStore::LoadRegistrationId() {
  Statement s(db_, "SELECT registration_id FROM local_identity WHERE singleton = 1");
  const int rc = s.Step();
  if (rc == SQLITE_DONE) return absl::NotFoundError("no local identity stored");
  if (rc != SQLITE_ROW) return SqlError(db_, "load registration id");
  return static_cast<uint32_t>(s.Int(0));
}

absl::Status LocalStore::StorePreKey(uint32_t id, std::string_view record) {
  if (internal::StorePreKeyRecord(id, reinterpret_cast<uint8_t*>(const_cast<char*>(record.data())),
                                  record.size(), this) != SG_SUCCESS) {
    return SqlError(db_, "store prekey");
  }
  return absl::OkStatus();
}

absl::Status LocalStore::StoreSignedPreKey(uint32_t id, std::string_view record) {
  if (internal::StoreSignedPreKeyRecord(
          id, reinterpret_cast<uint8_t*>(const_cast<char*>(record.data())), record.size(), this) !=
      SG_SUCCESS) {
    return SqlError(db_, "store signed prekey");
  }
  return absl::OkStatus();
}

absl::StatusOr<int64_t> LocalStore::CountPreKeys() {
  Statement s(db_, "SELECT count(*) FROM prekeys");
  if (s.Step() != SQLITE_ROW) return SqlError(db_, "count prekeys");
  return s.Int(0);
}

absl::StatusOr<bool> LocalStore::ContainsPreKey(uint32_t id) {
  const int rc = internal::ContainsPreKeyRecord(id, this);
  if (rc < 0) return SqlError(db_, "find prekey");
  return rc == 1;
}

absl::StatusOr<std::optional<std::string>> LocalStore::LoadSession(const RemoteAddress& address) {
  Statement s(db_, "SELECT record FROM sessions WHERE user_id = ? AND device_id = ?");
  s.Bind(1, address.user_id).Bind(2, address.device_id);
  const int rc = s.Step();
  if (rc == SQLITE_DONE) return std::optional<std::string>();
  if (rc != SQLITE_ROW) return SqlError(db_, "load session");
  return std::optional<std::string>(s.Blob(0));
}

absl::StatusOr<bool> LocalStore::ContainsSession(const RemoteAddress& address) {
  absl::StatusOr<std::optional<std::string>> session = LoadSession(address);
  if (!session.ok()) return session.status();
  return session->has_value();
}

absl::StatusOr<std::optional<std::string>> LocalStore::LoadRemoteIdentity(
    const RemoteAddress& address) {
  Statement s(db_, "SELECT public_key FROM remote_identities WHERE user_id = ? AND device_id = ?");
  s.Bind(1, address.user_id).Bind(2, address.device_id);
  const int rc = s.Step();
  if (rc == SQLITE_DONE) return std::optional<std::string>();
  if (rc != SQLITE_ROW) return SqlError(db_, "load remote identity");
  return std::optional<std::string>(s.Blob(0));
}

absl::Status LocalStore::AcceptRemoteIdentity(const RemoteAddress& address,
                                              std::string_view public_key) {
  Statement s(db_,
              "INSERT OR REPLACE INTO remote_identities (user_id, device_id, public_key) "
              "VALUES (?, ?, ?)");
  s.Bind(1, address.user_id)
      .Bind(2, address.device_id)
      .BindBlob(3, public_key.data(), public_key.size());
  return s.Done("save remote identity");
}

absl::Status LocalStore::DeleteSession(const RemoteAddress& address) {
  Statement s(db_, "DELETE FROM sessions WHERE user_id = ? AND device_id = ?");
  s.Bind(1, address.user_id).Bind(2, address.device_id);
  return s.Done("delete session");
}

absl::Status LocalStore::InTransaction(const std::function<absl::Status()>& body) {
  if (sqlite3_get_autocommit(db_) == 0) {
    // Already inside a transaction: a savepoint, so that the inner failure undoes only itself.
    if (sqlite3_exec(db_, "SAVEPOINT padlock_nested", nullptr, nullptr, nullptr) != SQLITE_OK) {
      return SqlError(db_, "begin savepoint");
    }
    absl::Status status = body();
    if (!status.ok()) {
      sqlite3_exec(db_, "ROLLBACK TO padlock_nested", nullptr, nullptr, nullptr);
    }
    if (sqlite3_exec(db_, "RELEASE padlock_nested", nullptr, nullptr, nullptr) != SQLITE_OK &&
        status.ok()) {
      return SqlError(db_, "release savepoint");
    }
    return status;
  }
  if (sqlite3_exec(db_, "BEGIN IMMEDIATE", nullptr, nullptr, nullptr) != SQLITE_OK) {
    return SqlError(db_, "begin transaction");
  }
  absl::Status status = body();
  if (!status.ok()) {
    sqlite3_exec(db_, "ROLLBACK", nullptr, nullptr, nullptr);
    return status;
  }
  if (sqlite3_exec(db_, "COMMIT", nullptr, nullptr, nullptr) != SQLITE_OK) {
    absl::Status commit_error = SqlError(db_, "commit transaction");
    sqlite3_exec(db_, "ROLLBACK", nullptr, nullptr, nullptr);
    return commit_error;
  }
  return absl::OkStatus();
}

// ---- Signed-prekey ages ----

absl::Status LocalStore::StoreSignedPreKeyAt(uint32_t id, std::string_view record,
                                             int64_t created_at_ms) {
  return InTransaction([&]() -> absl::Status {
    if (absl::Status s = StoreSignedPreKey(id, record); !s.ok()) return s;
    return SetSignedPreKeyAge(SignedPreKeyInfo{id, created_at_ms, 0});
  });
}

absl::Status LocalStore::SetSignedPreKeyAge(const SignedPreKeyInfo& age) {
  Statement s(db_,
              "INSERT OR REPLACE INTO signed_prekey_ages (id, created_at_ms, retired_at_ms) "
              "VALUES (?, ?, ?)");
  s.Bind(1, static_cast<int64_t>(age.id)).Bind(2, age.created_at_ms).Bind(3, age.retired_at_ms);
  return s.Done("save signed prekey age");
}

absl::StatusOr<std::vector<SignedPreKeyInfo>> LocalStore::ListSignedPreKeys() {
  Statement s(db_,
              "SELECT k.id, a.created_at_ms, a.retired_at_ms FROM signed_prekeys k "
              "LEFT JOIN signed_prekey_ages a ON a.id = k.id ORDER BY k.id");
  std::vector<SignedPreKeyInfo> out;
  int rc;
  while ((rc = s.Step()) == SQLITE_ROW) {
    // NULL (no age row: stored before v3) reads as 0.
    out.push_back(SignedPreKeyInfo{static_cast<uint32_t>(s.Int(0)), s.Int(1), s.Int(2)});
  }
  if (rc != SQLITE_DONE) return SqlError(db_, "list signed prekeys");
  return out;
}

absl::Status LocalStore::DeleteSignedPreKey(uint32_t id) {
  return InTransaction([&]() -> absl::Status {
    Statement ages(db_, "DELETE FROM signed_prekey_ages WHERE id = ?");
    ages.Bind(1, static_cast<int64_t>(id));
    if (absl::Status s = ages.Done("delete signed prekey age"); !s.ok()) return s;
    Statement keys(db_, "DELETE FROM signed_prekeys WHERE id = ?");
    keys.Bind(1, static_cast<int64_t>(id));
    return keys.Done("delete signed prekey");
  });
}

absl::StatusOr<bool> LocalStore::ContainsSignedPreKey(uint32_t id) {
  const int rc = internal::ContainsSignedPreKeyRecord(id, this);
  if (rc < 0) return SqlError(db_, "find signed prekey");
  return rc == 1;
}

}  // namespace padlock::client
