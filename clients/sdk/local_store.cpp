#include "clients/sdk/local_store.h"

#include <fcntl.h>
#include <sqlcipher/sqlite3.h>
#include <signal/signal_protocol.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <utility>

#include "absl/strings/str_cat.h"

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

absl::Status SqlError(sqlite3* db, std::string_view what) {
  return absl::InternalError(absl::StrCat(std::string(what), ": sqlite: ", sqlite3_errmsg(db)));
}

// A prepared statement with positional binds; finalized on destruction.
class Statement {
 public:
  Statement(sqlite3* db, const char* sql) : db_(db) {
    rc_ = sqlite3_prepare_v2(db, sql, -1, &stmt_, nullptr);
  }
  ~Statement() { sqlite3_finalize(stmt_); }
  Statement(const Statement&) = delete;
  Statement& operator=(const Statement&) = delete;

  bool ok() const { return rc_ == SQLITE_OK; }
  Statement& Bind(int i, int64_t v) {
    if (ok()) rc_ = sqlite3_bind_int64(stmt_, i, v);
    return *this;
  }
  Statement& Bind(int i, std::string_view text) {
    if (ok()) rc_ = sqlite3_bind_text(stmt_, i, text.data(), static_cast<int>(text.size()),
                                      SQLITE_TRANSIENT);
    return *this;
  }
  Statement& BindBlob(int i, const void* data, size_t len) {
    // A zero-length blob must still be a blob, not NULL.
    if (ok()) rc_ = sqlite3_bind_blob(stmt_, i, len == 0 ? "" : data, static_cast<int>(len),
                                      SQLITE_TRANSIENT);
    return *this;
  }
  // SQLITE_ROW, SQLITE_DONE or an error code.
  int Step() { return ok() ? sqlite3_step(stmt_) : rc_; }
  int64_t Int(int col) { return sqlite3_column_int64(stmt_, col); }
  bool IsNull(int col) { return sqlite3_column_type(stmt_, col) == SQLITE_NULL; }
  std::string Blob(int col) {
    const void* data = sqlite3_column_blob(stmt_, col);
    const int len = sqlite3_column_bytes(stmt_, col);
    return data == nullptr ? std::string() : std::string(static_cast<const char*>(data), len);
  }
  absl::Status Done(std::string_view what) {
    const int rc = Step();
    if (rc != SQLITE_DONE) return SqlError(db_, what);
    return absl::OkStatus();
  }

 private:
  sqlite3* db_;
  sqlite3_stmt* stmt_ = nullptr;
  int rc_;
};

std::string_view Name(const signal_protocol_address* address) {
  return std::string_view(address->name, address->name_len);
}

// Copies bytes into a fresh signal_buffer (libsignal frees it); nullptr on allocation failure.
signal_buffer* NewBuffer(const std::string& bytes) {
  return signal_buffer_create(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size());
}

LocalStore* Self(void* user_data) { return static_cast<LocalStore*>(user_data); }

// ---- session store. load_session returns 1 (found) / 0 (none) / negative error. ----

int LoadSessionCb(signal_buffer** record, signal_buffer** user_record,
                  const signal_protocol_address* address, void* user_data) {
  Statement s(Self(user_data)->db(),
              "SELECT record, user_record FROM sessions WHERE user_id = ? AND device_id = ?");
  s.Bind(1, Name(address)).Bind(2, address->device_id);
  const int rc = s.Step();
  if (rc == SQLITE_DONE) return 0;
  if (rc != SQLITE_ROW) return SG_ERR_UNKNOWN;
  *record = NewBuffer(s.Blob(0));
  if (*record == nullptr) return SG_ERR_NOMEM;
  if (user_record != nullptr && !s.IsNull(1)) {
    *user_record = NewBuffer(s.Blob(1));
    if (*user_record == nullptr) {
      signal_buffer_free(*record);
      *record = nullptr;
      return SG_ERR_NOMEM;
    }
  }
  return 1;
}

int GetSubDeviceSessionsCb(signal_int_list** sessions, const char* name, size_t name_len,
                           void* user_data) {
  Statement s(Self(user_data)->db(),
              "SELECT device_id FROM sessions WHERE user_id = ? AND device_id != 1 "
              "ORDER BY device_id");
  s.Bind(1, std::string_view(name, name_len));
  signal_int_list* list = signal_int_list_alloc();
  if (list == nullptr) return SG_ERR_NOMEM;
  int count = 0;
  int rc;
  while ((rc = s.Step()) == SQLITE_ROW) {
    if (signal_int_list_push_back(list, static_cast<int>(s.Int(0))) < 0) {
      signal_int_list_free(list);
      return SG_ERR_NOMEM;
    }
    ++count;
  }
  if (rc != SQLITE_DONE) {
    signal_int_list_free(list);
    return SG_ERR_UNKNOWN;
  }
  *sessions = list;
  return count;
}

int StoreSessionCb(const signal_protocol_address* address, uint8_t* record, size_t record_len,
                   uint8_t* user_record, size_t user_record_len, void* user_data) {
  Statement s(Self(user_data)->db(),
              "INSERT OR REPLACE INTO sessions (user_id, device_id, record, user_record) "
              "VALUES (?, ?, ?, ?)");
  s.Bind(1, Name(address)).Bind(2, address->device_id).BindBlob(3, record, record_len);
  if (user_record != nullptr) s.BindBlob(4, user_record, user_record_len);
  return s.Step() == SQLITE_DONE ? SG_SUCCESS : SG_ERR_UNKNOWN;
}

int ContainsSessionCb(const signal_protocol_address* address, void* user_data) {
  Statement s(Self(user_data)->db(),
              "SELECT 1 FROM sessions WHERE user_id = ? AND device_id = ?");
  s.Bind(1, Name(address)).Bind(2, address->device_id);
  const int rc = s.Step();
  if (rc == SQLITE_ROW) return 1;
  return rc == SQLITE_DONE ? 0 : SG_ERR_UNKNOWN;
}

int DeleteSessionCb(const signal_protocol_address* address, void* user_data) {
  sqlite3* db = Self(user_data)->db();
  Statement s(db, "DELETE FROM sessions WHERE user_id = ? AND device_id = ?");
  s.Bind(1, Name(address)).Bind(2, address->device_id);
  if (s.Step() != SQLITE_DONE) return SG_ERR_UNKNOWN;
  return sqlite3_changes(db);
}

int DeleteAllSessionsCb(const char* name, size_t name_len, void* user_data) {
  sqlite3* db = Self(user_data)->db();
  Statement s(db, "DELETE FROM sessions WHERE user_id = ?");
  s.Bind(1, std::string_view(name, name_len));
  if (s.Step() != SQLITE_DONE) return SG_ERR_UNKNOWN;
  return sqlite3_changes(db);
}

// ---- prekey stores: load returns SG_SUCCESS or SG_ERR_INVALID_KEY_ID. ----

int LoadFromTable(sqlite3* db, const char* sql, signal_buffer** record, uint32_t id) {
  Statement s(db, sql);
  s.Bind(1, static_cast<int64_t>(id));
  const int rc = s.Step();
  if (rc == SQLITE_DONE) return SG_ERR_INVALID_KEY_ID;
  if (rc != SQLITE_ROW) return SG_ERR_UNKNOWN;
  *record = NewBuffer(s.Blob(0));
  return *record == nullptr ? SG_ERR_NOMEM : SG_SUCCESS;
}

int ExecWithId(sqlite3* db, const char* sql, uint32_t id) {
  Statement s(db, sql);
  s.Bind(1, static_cast<int64_t>(id));
  return s.Step() == SQLITE_DONE ? SG_SUCCESS : SG_ERR_UNKNOWN;
}

int ContainsId(sqlite3* db, const char* sql, uint32_t id) {
  Statement s(db, sql);
  s.Bind(1, static_cast<int64_t>(id));
  const int rc = s.Step();
  if (rc == SQLITE_ROW) return 1;
  return rc == SQLITE_DONE ? 0 : SG_ERR_UNKNOWN;
}

int StoreWithId(sqlite3* db, const char* sql, uint32_t id, const uint8_t* record, size_t len) {
  Statement s(db, sql);
  s.Bind(1, static_cast<int64_t>(id)).BindBlob(2, record, len);
  return s.Step() == SQLITE_DONE ? SG_SUCCESS : SG_ERR_UNKNOWN;
}

int LoadPreKeyCb(signal_buffer** record, uint32_t id, void* user_data) {
  return LoadFromTable(Self(user_data)->db(), "SELECT record FROM prekeys WHERE id = ?", record,
                       id);
}
int StorePreKeyCb(uint32_t id, uint8_t* record, size_t len, void* user_data) {
  return StoreWithId(Self(user_data)->db(),
                     "INSERT OR REPLACE INTO prekeys (id, record) VALUES (?, ?)", id, record, len);
}
int ContainsPreKeyCb(uint32_t id, void* user_data) {
  return ContainsId(Self(user_data)->db(), "SELECT 1 FROM prekeys WHERE id = ?", id);
}
int RemovePreKeyCb(uint32_t id, void* user_data) {
  return ExecWithId(Self(user_data)->db(), "DELETE FROM prekeys WHERE id = ?", id);
}

int LoadSignedPreKeyCb(signal_buffer** record, uint32_t id, void* user_data) {
  return LoadFromTable(Self(user_data)->db(), "SELECT record FROM signed_prekeys WHERE id = ?",
                       record, id);
}
int StoreSignedPreKeyCb(uint32_t id, uint8_t* record, size_t len, void* user_data) {
  return StoreWithId(Self(user_data)->db(),
                     "INSERT OR REPLACE INTO signed_prekeys (id, record) VALUES (?, ?)", id,
                     record, len);
}
int ContainsSignedPreKeyCb(uint32_t id, void* user_data) {
  return ContainsId(Self(user_data)->db(), "SELECT 1 FROM signed_prekeys WHERE id = ?", id);
}
int RemoveSignedPreKeyCb(uint32_t id, void* user_data) {
  return ExecWithId(Self(user_data)->db(), "DELETE FROM signed_prekeys WHERE id = ?", id);
}

// ---- identity store ----

int GetIdentityKeyPairCb(signal_buffer** public_data, signal_buffer** private_data,
                         void* user_data) {
  absl::StatusOr<IdentityKeyPair> identity = Self(user_data)->LoadLocalIdentity();
  if (!identity.ok()) return SG_ERR_UNKNOWN;
  *public_data = NewBuffer(identity->public_key);
  *private_data = NewBuffer(identity->private_key);
  if (*public_data == nullptr || *private_data == nullptr) {
    signal_buffer_free(*public_data);
    signal_buffer_bzero_free(*private_data);
    *public_data = nullptr;
    *private_data = nullptr;
    return SG_ERR_NOMEM;
  }
  return SG_SUCCESS;
}

// Note the argument order: user_data first (unlike every other callback).
int GetLocalRegistrationIdCb(void* user_data, uint32_t* registration_id) {
  absl::StatusOr<uint32_t> id = Self(user_data)->LoadRegistrationId();
  if (!id.ok()) return SG_ERR_UNKNOWN;
  *registration_id = *id;
  return SG_SUCCESS;
}

// A NULL key means "remove the record".
int SaveIdentityCb(const signal_protocol_address* address, uint8_t* key_data, size_t key_len,
                   void* user_data) {
  LocalStore* self = Self(user_data);
  if (key_data == nullptr) {
    Statement s(self->db(), "DELETE FROM remote_identities WHERE user_id = ? AND device_id = ?");
    s.Bind(1, Name(address)).Bind(2, address->device_id);
    return s.Step() == SQLITE_DONE ? SG_SUCCESS : SG_ERR_UNKNOWN;
  }
  const absl::Status status = self->AcceptRemoteIdentity(
      RemoteAddress{std::string(Name(address)), address->device_id},
      std::string_view(reinterpret_cast<const char*>(key_data), key_len));
  return status.ok() ? SG_SUCCESS : SG_ERR_UNKNOWN;
}

// Trust on first use: trusted when no key is recorded or the recorded key is the same; a
// different key is untrusted until the user accepts it (AcceptRemoteIdentity).
int IsTrustedIdentityCb(const signal_protocol_address* address, uint8_t* key_data,
                        size_t key_len, void* user_data) {
  absl::StatusOr<std::optional<std::string>> known = Self(user_data)->LoadRemoteIdentity(
      RemoteAddress{std::string(Name(address)), address->device_id});
  if (!known.ok()) return SG_ERR_UNKNOWN;
  if (!known->has_value()) return 1;
  return **known == std::string_view(reinterpret_cast<const char*>(key_data), key_len) ? 1 : 0;
}

// ---- sender key store: load returns 1 / 0 / negative. ----

int StoreSenderKeyCb(const signal_protocol_sender_key_name* name, uint8_t* record,
                     size_t record_len, uint8_t* user_record, size_t user_record_len,
                     void* user_data) {
  Statement s(Self(user_data)->db(),
              "INSERT OR REPLACE INTO sender_keys "
              "(group_id, user_id, device_id, record, user_record) VALUES (?, ?, ?, ?, ?)");
  s.BindBlob(1, name->group_id, name->group_id_len)
      .Bind(2, Name(&name->sender))
      .Bind(3, name->sender.device_id)
      .BindBlob(4, record, record_len);
  if (user_record != nullptr) s.BindBlob(5, user_record, user_record_len);
  return s.Step() == SQLITE_DONE ? SG_SUCCESS : SG_ERR_UNKNOWN;
}

int LoadSenderKeyCb(signal_buffer** record, signal_buffer** user_record,
                    const signal_protocol_sender_key_name* name, void* user_data) {
  Statement s(Self(user_data)->db(),
              "SELECT record, user_record FROM sender_keys "
              "WHERE group_id = ? AND user_id = ? AND device_id = ?");
  s.BindBlob(1, name->group_id, name->group_id_len)
      .Bind(2, Name(&name->sender))
      .Bind(3, name->sender.device_id);
  const int rc = s.Step();
  if (rc == SQLITE_DONE) return 0;
  if (rc != SQLITE_ROW) return SG_ERR_UNKNOWN;
  *record = NewBuffer(s.Blob(0));
  if (*record == nullptr) return SG_ERR_NOMEM;
  if (user_record != nullptr && !s.IsNull(1)) {
    *user_record = NewBuffer(s.Blob(1));
    if (*user_record == nullptr) {
      signal_buffer_free(*record);
      *record = nullptr;
      return SG_ERR_NOMEM;
    }
  }
  return 1;
}

}  // namespace

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
    return absl::FailedPreconditionError(
        absl::StrCat("database schema version ", *version, " is newer than this client (",
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
  if (StorePreKeyCb(id, reinterpret_cast<uint8_t*>(const_cast<char*>(record.data())),
                    record.size(), this) != SG_SUCCESS) {
    return SqlError(db_, "store prekey");
  }
  return absl::OkStatus();
}

absl::Status LocalStore::StoreSignedPreKey(uint32_t id, std::string_view record) {
  if (StoreSignedPreKeyCb(id, reinterpret_cast<uint8_t*>(const_cast<char*>(record.data())),
                          record.size(), this) != SG_SUCCESS) {
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
  const int rc = ContainsPreKeyCb(id, this);
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
  Statement s(db_,
              "SELECT public_key FROM remote_identities WHERE user_id = ? AND device_id = ?");
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
  s.Bind(1, address.user_id).Bind(2, address.device_id)
      .BindBlob(3, public_key.data(), public_key.size());
  return s.Done("save remote identity");
}

absl::Status LocalStore::DeleteSession(const RemoteAddress& address) {
  Statement s(db_, "DELETE FROM sessions WHERE user_id = ? AND device_id = ?");
  s.Bind(1, address.user_id).Bind(2, address.device_id);
  return s.Done("delete session");
}

absl::Status LocalStore::SaveAccount(const AccountRecord& account) {
  Statement s(db_,
              "INSERT INTO account (singleton, user_id, device_id, next_prekey_id, "
              "signed_prekey_id) VALUES (1, ?, ?, ?, ?)");
  s.Bind(1, account.user_id)
      .Bind(2, static_cast<int64_t>(account.device_id))
      .Bind(3, static_cast<int64_t>(account.next_prekey_id))
      .Bind(4, static_cast<int64_t>(account.signed_prekey_id));
  const int rc = s.Step();
  if (rc == SQLITE_CONSTRAINT) return absl::AlreadyExistsError("account already stored");
  if (rc != SQLITE_DONE) return SqlError(db_, "save account");
  return absl::OkStatus();
}

absl::StatusOr<AccountRecord> LocalStore::LoadAccount() {
  Statement s(db_,
              "SELECT user_id, device_id, next_prekey_id, signed_prekey_id FROM account "
              "WHERE singleton = 1");
  const int rc = s.Step();
  if (rc == SQLITE_DONE) return absl::NotFoundError("this device is not registered");
  if (rc != SQLITE_ROW) return SqlError(db_, "load account");
  return AccountRecord{s.Blob(0), static_cast<uint32_t>(s.Int(1)),
                       static_cast<uint32_t>(s.Int(2)), static_cast<uint32_t>(s.Int(3))};
}

absl::Status LocalStore::UpdatePreKeyIds(uint32_t next_prekey_id, uint32_t signed_prekey_id) {
  Statement s(db_,
              "UPDATE account SET next_prekey_id = ?, signed_prekey_id = ? WHERE singleton = 1");
  s.Bind(1, static_cast<int64_t>(next_prekey_id)).Bind(2, static_cast<int64_t>(signed_prekey_id));
  return s.Done("update prekey ids");
}

absl::Status LocalStore::SetAccountDevice(uint32_t device_id) {
  Statement s(db_, "UPDATE account SET device_id = ? WHERE singleton = 1");
  s.Bind(1, static_cast<int64_t>(device_id));
  return s.Done("set account device");
}

absl::StatusOr<std::optional<VerifiedDeviceList>> LocalStore::LoadVerifiedDeviceList(
    std::string_view user_id) {
  Statement s(db_, "SELECT version, signed_list FROM verified_device_lists WHERE user_id = ?");
  s.Bind(1, user_id);
  const int rc = s.Step();
  if (rc == SQLITE_DONE) return std::optional<VerifiedDeviceList>();
  if (rc != SQLITE_ROW) return SqlError(db_, "load device list");
  return std::optional<VerifiedDeviceList>(
      VerifiedDeviceList{static_cast<uint64_t>(s.Int(0)), s.Blob(1)});
}

absl::Status LocalStore::SaveVerifiedDeviceList(std::string_view user_id,
                                                const VerifiedDeviceList& list) {
  Statement s(db_,
              "INSERT OR REPLACE INTO verified_device_lists (user_id, version, signed_list) "
              "VALUES (?, ?, ?)");
  s.Bind(1, user_id)
      .Bind(2, static_cast<int64_t>(list.version))
      .BindBlob(3, list.signed_list.data(), list.signed_list.size());
  return s.Done("save device list");
}

absl::Status LocalStore::AddOutbox(const OutboxEntry& entry) {
  Statement s(db_,
              "INSERT INTO outbox (message_id, conversation, content_kind, body, payload, "
              "created_at_ms) VALUES (?, ?, ?, ?, ?, ?)");
  s.BindBlob(1, entry.message_id.data(), entry.message_id.size())
      .Bind(2, entry.conversation)
      .Bind(3, static_cast<int64_t>(entry.content_kind))
      .BindBlob(4, entry.body.data(), entry.body.size())
      .BindBlob(5, entry.payload.data(), entry.payload.size())
      .Bind(6, entry.created_at_ms);
  const int rc = s.Step();
  if (rc == SQLITE_CONSTRAINT) return absl::AlreadyExistsError("message already in the outbox");
  if (rc != SQLITE_DONE) return SqlError(db_, "add to outbox");
  return absl::OkStatus();
}

absl::Status LocalStore::UpdateOutboxPayload(std::string_view message_id,
                                             std::string_view payload) {
  Statement s(db_, "UPDATE outbox SET payload = ? WHERE message_id = ?");
  s.BindBlob(1, payload.data(), payload.size()).BindBlob(2, message_id.data(), message_id.size());
  if (absl::Status status = s.Done("update outbox"); !status.ok()) return status;
  if (sqlite3_changes(db_) == 0) return absl::NotFoundError("message not in the outbox");
  return absl::OkStatus();
}

absl::Status LocalStore::RemoveOutbox(std::string_view message_id) {
  Statement s(db_, "DELETE FROM outbox WHERE message_id = ?");
  s.BindBlob(1, message_id.data(), message_id.size());
  return s.Done("remove from outbox");
}

absl::StatusOr<std::vector<OutboxEntry>> LocalStore::ListOutbox() {
  Statement s(db_,
              "SELECT message_id, conversation, content_kind, body, payload, created_at_ms "
              "FROM outbox ORDER BY row_id");
  std::vector<OutboxEntry> out;
  int rc;
  while ((rc = s.Step()) == SQLITE_ROW) {
    out.push_back(OutboxEntry{s.Blob(0), s.Blob(1), static_cast<uint8_t>(s.Int(2)), s.Blob(3),
                              s.Blob(4), s.Int(5)});
  }
  if (rc != SQLITE_DONE) return SqlError(db_, "list outbox");
  return out;
}

absl::Status LocalStore::AddMessage(const HistoryMessage& m) {
  Statement s(db_,
              "INSERT INTO messages (message_id, conversation, sender_user_id, sender_device_id, "
              "content_kind, body, sent_at_ms, received_at_ms, outgoing, status) "
              "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)");
  s.BindBlob(1, m.message_id.data(), m.message_id.size())
      .Bind(2, m.conversation)
      .Bind(3, m.sender_user_id)
      .Bind(4, static_cast<int64_t>(m.sender_device_id))
      .Bind(5, static_cast<int64_t>(m.content_kind))
      .BindBlob(6, m.body.data(), m.body.size())
      .Bind(7, m.sent_at_ms)
      .Bind(8, m.received_at_ms)
      .Bind(9, static_cast<int64_t>(m.outgoing ? 1 : 0))
      .Bind(10, static_cast<int64_t>(m.status));
  const int rc = s.Step();
  if (rc == SQLITE_CONSTRAINT) return absl::AlreadyExistsError("message already in history");
  if (rc != SQLITE_DONE) return SqlError(db_, "add message");
  return absl::OkStatus();
}

absl::Status LocalStore::RaiseMessageStatus(std::string_view message_id, MessageStatus status) {
  Statement s(db_, "UPDATE messages SET status = ? WHERE message_id = ? AND status < ?");
  s.Bind(1, static_cast<int64_t>(status))
      .BindBlob(2, message_id.data(), message_id.size())
      .Bind(3, static_cast<int64_t>(status));
  return s.Done("update message status");
}

absl::StatusOr<std::vector<HistoryMessage>> LocalStore::ListMessages(
    std::string_view conversation) {
  Statement s(db_,
              "SELECT message_id, conversation, sender_user_id, sender_device_id, content_kind, "
              "body, sent_at_ms, received_at_ms, outgoing, status FROM messages "
              "WHERE ? = '' OR conversation = ? ORDER BY row_id");
  s.Bind(1, conversation).Bind(2, conversation);
  std::vector<HistoryMessage> out;
  int rc;
  while ((rc = s.Step()) == SQLITE_ROW) {
    out.push_back(HistoryMessage{s.Blob(0), s.Blob(1), s.Blob(2),
                                 static_cast<uint32_t>(s.Int(3)), static_cast<uint8_t>(s.Int(4)),
                                 s.Blob(5), s.Int(6), s.Int(7), s.Int(8) != 0,
                                 static_cast<MessageStatus>(s.Int(9))});
  }
  if (rc != SQLITE_DONE) return SqlError(db_, "list messages");
  return out;
}

absl::StatusOr<bool> LocalStore::MarkReceived(const RemoteAddress& sender,
                                              std::string_view message_id) {
  Statement s(db_,
              "INSERT OR IGNORE INTO received (sender_user_id, sender_device_id, message_id) "
              "VALUES (?, ?, ?)");
  s.Bind(1, sender.user_id).Bind(2, sender.device_id)
      .BindBlob(3, message_id.data(), message_id.size());
  if (absl::Status status = s.Done("mark received"); !status.ok()) return status;
  return sqlite3_changes(db_) == 1;
}

absl::StatusOr<bool> LocalStore::WasReceived(const RemoteAddress& sender,
                                             std::string_view message_id) {
  Statement s(db_,
              "SELECT 1 FROM received WHERE sender_user_id = ? AND sender_device_id = ? "
              "AND message_id = ?");
  s.Bind(1, sender.user_id).Bind(2, sender.device_id)
      .BindBlob(3, message_id.data(), message_id.size());
  const int rc = s.Step();
  if (rc == SQLITE_ROW) return true;
  if (rc != SQLITE_DONE) return SqlError(db_, "find received");
  return false;
}

absl::Status LocalStore::SaveGroup(const GroupRecord& group) {
  std::string members;
  for (const std::string& m : group.members) members += m + "\n";
  Statement s(db_,
              "INSERT OR REPLACE INTO groups (group_id, title, members, epoch) "
              "VALUES (?, ?, ?, ?)");
  s.BindBlob(1, group.group_id.data(), group.group_id.size())
      .Bind(2, group.title)
      .Bind(3, members)
      .Bind(4, static_cast<int64_t>(group.epoch));
  return s.Done("save group");
}

namespace {
GroupRecord GroupFromRow(std::string id, std::string title, const std::string& members,
                         int64_t epoch) {
  GroupRecord g{std::move(id), std::move(title), {}, static_cast<uint32_t>(epoch)};
  size_t start = 0;
  for (size_t nl; (nl = members.find('\n', start)) != std::string::npos; start = nl + 1) {
    g.members.push_back(members.substr(start, nl - start));
  }
  return g;
}
}  // namespace

absl::StatusOr<std::optional<GroupRecord>> LocalStore::LoadGroup(std::string_view group_id) {
  Statement s(db_, "SELECT group_id, title, members, epoch FROM groups WHERE group_id = ?");
  s.BindBlob(1, group_id.data(), group_id.size());
  const int rc = s.Step();
  if (rc == SQLITE_DONE) return std::optional<GroupRecord>();
  if (rc != SQLITE_ROW) return SqlError(db_, "load group");
  return std::optional<GroupRecord>(GroupFromRow(s.Blob(0), s.Blob(1), s.Blob(2), s.Int(3)));
}

absl::StatusOr<std::vector<GroupRecord>> LocalStore::ListGroups() {
  Statement s(db_, "SELECT group_id, title, members, epoch FROM groups ORDER BY title");
  std::vector<GroupRecord> out;
  int rc;
  while ((rc = s.Step()) == SQLITE_ROW) {
    out.push_back(GroupFromRow(s.Blob(0), s.Blob(1), s.Blob(2), s.Int(3)));
  }
  if (rc != SQLITE_DONE) return SqlError(db_, "list groups");
  return out;
}

absl::Status LocalStore::DeleteGroup(std::string_view group_id) {
  Statement s(db_, "DELETE FROM groups WHERE group_id = ?");
  s.BindBlob(1, group_id.data(), group_id.size());
  return s.Done("delete group");
}

absl::StatusOr<bool> LocalStore::SenderKeyShared(std::string_view group_id,
                                                 const RemoteAddress& device, uint32_t epoch) {
  Statement s(db_,
              "SELECT 1 FROM sender_key_shared WHERE group_id = ? AND user_id = ? AND "
              "device_id = ? AND epoch = ?");
  s.BindBlob(1, group_id.data(), group_id.size())
      .Bind(2, device.user_id)
      .Bind(3, device.device_id)
      .Bind(4, static_cast<int64_t>(epoch));
  const int rc = s.Step();
  if (rc == SQLITE_ROW) return true;
  if (rc != SQLITE_DONE) return SqlError(db_, "find shared sender key");
  return false;
}

absl::Status LocalStore::MarkSenderKeyShared(std::string_view group_id,
                                             const RemoteAddress& device, uint32_t epoch) {
  Statement s(db_,
              "INSERT OR REPLACE INTO sender_key_shared (group_id, user_id, device_id, epoch) "
              "VALUES (?, ?, ?, ?)");
  s.BindBlob(1, group_id.data(), group_id.size())
      .Bind(2, device.user_id)
      .Bind(3, device.device_id)
      .Bind(4, static_cast<int64_t>(epoch));
  return s.Done("mark sender key shared");
}

absl::Status LocalStore::DeleteSenderKey(std::string_view group_id, const RemoteAddress& sender) {
  Statement s(db_, "DELETE FROM sender_keys WHERE group_id = ? AND user_id = ? AND device_id = ?");
  s.BindBlob(1, group_id.data(), group_id.size()).Bind(2, sender.user_id).Bind(3, sender.device_id);
  return s.Done("delete sender key");
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

absl::StatusOr<StoreContextPtr> LocalStore::CreateStoreContext(SignalContext& context) {
  signal_protocol_store_context* raw = nullptr;
  if (signal_protocol_store_context_create(&raw, context.get()) < 0) {
    return absl::InternalError("signal_protocol_store_context_create failed");
  }
  StoreContextPtr store_context(raw);

  signal_protocol_session_store session_store{};
  session_store.load_session_func = &LoadSessionCb;
  session_store.get_sub_device_sessions_func = &GetSubDeviceSessionsCb;
  session_store.store_session_func = &StoreSessionCb;
  session_store.contains_session_func = &ContainsSessionCb;
  session_store.delete_session_func = &DeleteSessionCb;
  session_store.delete_all_sessions_func = &DeleteAllSessionsCb;
  session_store.user_data = this;

  signal_protocol_pre_key_store pre_key_store{};
  pre_key_store.load_pre_key = &LoadPreKeyCb;
  pre_key_store.store_pre_key = &StorePreKeyCb;
  pre_key_store.contains_pre_key = &ContainsPreKeyCb;
  pre_key_store.remove_pre_key = &RemovePreKeyCb;
  pre_key_store.user_data = this;

  signal_protocol_signed_pre_key_store signed_store{};
  signed_store.load_signed_pre_key = &LoadSignedPreKeyCb;
  signed_store.store_signed_pre_key = &StoreSignedPreKeyCb;
  signed_store.contains_signed_pre_key = &ContainsSignedPreKeyCb;
  signed_store.remove_signed_pre_key = &RemoveSignedPreKeyCb;
  signed_store.user_data = this;

  signal_protocol_identity_key_store identity_store{};
  identity_store.get_identity_key_pair = &GetIdentityKeyPairCb;
  identity_store.get_local_registration_id = &GetLocalRegistrationIdCb;
  identity_store.save_identity = &SaveIdentityCb;
  identity_store.is_trusted_identity = &IsTrustedIdentityCb;
  identity_store.user_data = this;

  signal_protocol_sender_key_store sender_store{};
  sender_store.store_sender_key = &StoreSenderKeyCb;
  sender_store.load_sender_key = &LoadSenderKeyCb;
  sender_store.user_data = this;

  if (signal_protocol_store_context_set_session_store(raw, &session_store) < 0 ||
      signal_protocol_store_context_set_pre_key_store(raw, &pre_key_store) < 0 ||
      signal_protocol_store_context_set_signed_pre_key_store(raw, &signed_store) < 0 ||
      signal_protocol_store_context_set_identity_key_store(raw, &identity_store) < 0 ||
      signal_protocol_store_context_set_sender_key_store(raw, &sender_store) < 0) {
    return absl::InternalError("configure signal_protocol_store_context failed");
  }
  return store_context;
}

// ---- Signed-prekey ages (schema v3) ----

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
  const int rc = ContainsSignedPreKeyCb(id, this);
  if (rc < 0) return SqlError(db_, "find signed prekey");
  return rc == 1;
}

// ---- Stories (schema v3) ----

namespace {

std::string JoinUsers(const std::vector<std::string>& users) {
  std::string out;
  for (const std::string& u : users) absl::StrAppend(&out, out.empty() ? "" : ",", u);
  return out;
}

std::vector<std::string> SplitUsers(const std::string& joined) {
  std::vector<std::string> out;
  size_t start = 0;
  while (start < joined.size()) {
    size_t comma = joined.find(',', start);
    if (comma == std::string::npos) comma = joined.size();
    if (comma > start) out.push_back(joined.substr(start, comma - start));
    start = comma + 1;
  }
  return out;
}

}  // namespace

absl::Status LocalStore::AddStory(const StoryRecord& story) {
  Statement s(db_,
              "INSERT INTO stories (message_id, sender_user_id, sender_device_id, body, "
              "posted_at_ms, expires_at_ms, outgoing, audience) VALUES (?, ?, ?, ?, ?, ?, ?, ?)");
  s.BindBlob(1, story.message_id.data(), story.message_id.size())
      .Bind(2, story.sender_user_id)
      .Bind(3, static_cast<int64_t>(story.sender_device_id))
      .BindBlob(4, story.text.data(), story.text.size())
      .Bind(5, story.posted_at_ms)
      .Bind(6, story.expires_at_ms)
      .Bind(7, static_cast<int64_t>(story.outgoing ? 1 : 0))
      .Bind(8, JoinUsers(story.audience));
  const int rc = s.Step();
  if (rc == SQLITE_CONSTRAINT) return absl::AlreadyExistsError("story already stored");
  if (rc != SQLITE_DONE) return SqlError(db_, "add story");
  return absl::OkStatus();
}

absl::StatusOr<std::vector<StoryRecord>> LocalStore::ListStories(int64_t now_ms) {
  Statement s(db_,
              "SELECT message_id, sender_user_id, sender_device_id, body, posted_at_ms, "
              "expires_at_ms, outgoing, audience FROM stories WHERE expires_at_ms > ? "
              "ORDER BY posted_at_ms, row_id");
  s.Bind(1, now_ms);
  std::vector<StoryRecord> out;
  int rc;
  while ((rc = s.Step()) == SQLITE_ROW) {
    out.push_back(StoryRecord{s.Blob(0), s.Blob(1), static_cast<uint32_t>(s.Int(2)), s.Blob(3),
                              s.Int(4), s.Int(5), s.Int(6) != 0, SplitUsers(s.Blob(7))});
  }
  if (rc != SQLITE_DONE) return SqlError(db_, "list stories");
  return out;
}

absl::StatusOr<int64_t> LocalStore::DeleteExpiredStories(int64_t now_ms) {
  Statement s(db_, "DELETE FROM stories WHERE expires_at_ms <= ?");
  s.Bind(1, now_ms);
  if (absl::Status status = s.Done("delete expired stories"); !status.ok()) return status;
  return static_cast<int64_t>(sqlite3_changes(db_));
}

}  // namespace padlock::client
