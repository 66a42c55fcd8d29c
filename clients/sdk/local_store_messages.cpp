// LocalStore: the messenger's records — the account, verified device lists,
// the outbox, history, received message ids, groups and sender-key sharing, and stories.
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "clients/sdk/local_store.h"
#include "clients/sdk/local_store_sql.h"

namespace padlock::client {

using internal::SqlError;
using internal::Statement;

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

// ---- Stories ----

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
