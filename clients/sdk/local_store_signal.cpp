// LocalStore as libsignal's store context (CreateStoreContext): the callbacks follow
// libsignal-protocol-c 2.3.3's conventions exactly (shared/notes/libsignal-protocol-c.md), each
// reading or writing the same tables as the LocalStore's own methods.
#include <signal/signal_protocol.h>

#include <string>
#include <string_view>

#include "clients/sdk/local_store.h"
#include "clients/sdk/local_store_sql.h"

namespace padlock::client {
namespace {

using internal::SqlError;
using internal::Statement;

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

namespace internal {

int StorePreKeyRecord(uint32_t id, uint8_t* record, size_t len, void* store) {
  return StorePreKeyCb(id, record, len, store);
}
int StoreSignedPreKeyRecord(uint32_t id, uint8_t* record, size_t len, void* store) {
  return StoreSignedPreKeyCb(id, record, len, store);
}
int ContainsPreKeyRecord(uint32_t id, void* store) { return ContainsPreKeyCb(id, store); }
int ContainsSignedPreKeyRecord(uint32_t id, void* store) {
  return ContainsSignedPreKeyCb(id, store);
}

}  // namespace internal

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

}  // namespace padlock::client
