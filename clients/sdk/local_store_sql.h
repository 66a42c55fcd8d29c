#pragma once
// SQLite helpers shared by the LocalStore's files (local_store*.cpp); not part of the SDK's API.

#include <sqlcipher/sqlite3.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace padlock::client::internal {

inline absl::Status SqlError(sqlite3* db, std::string_view what) {
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
    if (ok())
      rc_ =
          sqlite3_bind_text(stmt_, i, text.data(), static_cast<int>(text.size()), SQLITE_TRANSIENT);
    return *this;
  }
  Statement& BindBlob(int i, const void* data, size_t len) {
    // A zero-length blob must still be a blob, not NULL.
    if (ok())
      rc_ = sqlite3_bind_blob(stmt_, i, len == 0 ? "" : data, static_cast<int>(len),
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

// The prekey store callbacks of local_store_signal.cpp, which LocalStore's own methods reuse so
// that both write the same rows the same way (`store` is the LocalStore). libsignal's codes.
int StorePreKeyRecord(uint32_t id, uint8_t* record, size_t len, void* store);
int StoreSignedPreKeyRecord(uint32_t id, uint8_t* record, size_t len, void* store);
int ContainsPreKeyRecord(uint32_t id, void* store);
int ContainsSignedPreKeyRecord(uint32_t id, void* store);

}  // namespace padlock::client::internal
