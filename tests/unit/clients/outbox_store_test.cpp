// LocalStore schema v2: the account, durable outbox, history status, received ids, verified
// device lists, nested transactions, and the in-place migration of a version-1 file.
#include <sqlcipher/sqlite3.h>

#include <memory>
#include <string>

#include "absl/status/status.h"
#include "clients/sdk/local_store.h"
#include "gtest/gtest.h"
#include "tests/harness/harness.h"
#include "tests/unit/clients/store_file_fixture.h"

namespace padlock::client {
namespace {

class OutboxStoreTest : public StoreFileTest {};

TEST_F(OutboxStoreTest, OutboxEntryKeepsItsExactBytesAcrossReopen) {
  const std::string payload("\x00\x01\xff payload bytes", 17);
  {
    auto store = Open();
    ASSERT_TRUE(store->AddOutbox({kId1, "bob", 1, "hi", payload, 1000}).ok());
    ASSERT_TRUE(store->AddOutbox({kId2, "carol", 1, "yo", "second", 2000}).ok());
  }
  auto store = Open();
  auto entries = store->ListOutbox();
  ASSERT_TRUE(entries.ok()) << entries.status();
  ASSERT_EQ(entries->size(), 2u);
  EXPECT_EQ((*entries)[0].message_id, kId1);
  EXPECT_EQ((*entries)[0].payload, payload);
  EXPECT_EQ((*entries)[0].conversation, "bob");
  EXPECT_EQ((*entries)[0].body, "hi");
  EXPECT_EQ((*entries)[1].message_id, kId2);
}

TEST_F(OutboxStoreTest, DuplicateOutboxMessageIdIsAlreadyExists) {
  auto store = Open();
  ASSERT_TRUE(store->AddOutbox({kId1, "bob", 1, "hi", "p", 1}).ok());
  EXPECT_EQ(store->AddOutbox({kId1, "bob", 1, "hi", "q", 1}).code(),
            absl::StatusCode::kAlreadyExists);
}

TEST_F(OutboxStoreTest, UpdateAndRemoveOutbox) {
  auto store = Open();
  ASSERT_TRUE(store->AddOutbox({kId1, "bob", 1, "hi", "p", 1}).ok());
  ASSERT_TRUE(store->UpdateOutboxPayload(kId1, "new").ok());
  EXPECT_EQ(store->UpdateOutboxPayload(kId2, "x").code(), absl::StatusCode::kNotFound);
  auto entries = store->ListOutbox();
  ASSERT_TRUE(entries.ok());
  ASSERT_EQ(entries->size(), 1u);
  EXPECT_EQ((*entries)[0].payload, "new");
  ASSERT_TRUE(store->RemoveOutbox(kId1).ok());
  ASSERT_TRUE(store->RemoveOutbox(kId1).ok());  // idempotent
  EXPECT_TRUE(store->ListOutbox()->empty());
}

TEST_F(OutboxStoreTest, MarkReceivedDedupesPerSenderDevice) {
  auto store = Open();
  EXPECT_TRUE(*store->MarkReceived({"alice", 1}, kId1));
  EXPECT_FALSE(*store->MarkReceived({"alice", 1}, kId1));
  EXPECT_TRUE(*store->MarkReceived({"alice", 2}, kId1));
  EXPECT_TRUE(*store->WasReceived({"alice", 1}, kId1));
  EXPECT_FALSE(*store->WasReceived({"alice", 1}, kId2));
}

TEST_F(OutboxStoreTest, HistoryStatusOnlyRises) {
  auto store = Open();
  ASSERT_TRUE(store->AddMessage({kId1, "bob", "alice", 1, 1, "hi", 10, 10, true,
                                 MessageStatus::kPending})
                  .ok());
  EXPECT_EQ(store->AddMessage({kId1, "bob", "alice", 1, 1, "hi", 10, 10, true,
                               MessageStatus::kPending})
                .code(),
            absl::StatusCode::kAlreadyExists);
  ASSERT_TRUE(store->RaiseMessageStatus(kId1, MessageStatus::kRead).ok());
  ASSERT_TRUE(store->RaiseMessageStatus(kId1, MessageStatus::kDelivered).ok());
  ASSERT_TRUE(store->AddMessage({kId2, "carol", "carol", 1, 1, "yo", 20, 21, false,
                                 MessageStatus::kDelivered})
                  .ok());
  auto bob = store->ListMessages("bob");
  ASSERT_TRUE(bob.ok());
  ASSERT_EQ(bob->size(), 1u);
  EXPECT_EQ((*bob)[0].status, MessageStatus::kRead);
  EXPECT_TRUE((*bob)[0].outgoing);
  auto all = store->ListMessages("");
  ASSERT_TRUE(all.ok());
  ASSERT_EQ(all->size(), 2u);
  EXPECT_EQ((*all)[1].body, "yo");
}

TEST_F(OutboxStoreTest, AccountAndDeviceLists) {
  auto store = Open();
  EXPECT_EQ(store->LoadAccount().status().code(), absl::StatusCode::kNotFound);
  ASSERT_TRUE(store->SaveAccount({"alice", 1, 101, 1}).ok());
  EXPECT_EQ(store->SaveAccount({"alice", 1, 101, 1}).code(), absl::StatusCode::kAlreadyExists);
  ASSERT_TRUE(store->UpdatePreKeyIds(201, 2).ok());
  auto account = store->LoadAccount();
  ASSERT_TRUE(account.ok());
  EXPECT_EQ(account->user_id, "alice");
  EXPECT_EQ(account->next_prekey_id, 201u);
  EXPECT_EQ(account->signed_prekey_id, 2u);

  EXPECT_FALSE(store->LoadVerifiedDeviceList("bob")->has_value());
  ASSERT_TRUE(store->SaveVerifiedDeviceList("bob", {3, "list-bytes"}).ok());
  auto list = store->LoadVerifiedDeviceList("bob");
  ASSERT_TRUE(list.ok() && list->has_value());
  EXPECT_EQ((*list)->version, 3u);
  EXPECT_EQ((*list)->signed_list, "list-bytes");
}

TEST_F(OutboxStoreTest, NestedTransactionFailureRollsBackOnlyItself) {
  auto store = Open();
  absl::Status outer = store->InTransaction([&]() -> absl::Status {
    EXPECT_TRUE(store->AddOutbox({kId1, "bob", 1, "kept", "p", 1}).ok());
    absl::Status inner = store->InTransaction([&]() -> absl::Status {
      EXPECT_TRUE(store->AddOutbox({kId2, "bob", 1, "undone", "p", 1}).ok());
      return absl::DataLossError("inner failure");
    });
    EXPECT_EQ(inner.code(), absl::StatusCode::kDataLoss);
    return absl::OkStatus();
  });
  ASSERT_TRUE(outer.ok()) << outer;
  auto entries = store->ListOutbox();
  ASSERT_TRUE(entries.ok());
  ASSERT_EQ(entries->size(), 1u);
  EXPECT_EQ((*entries)[0].body, "kept");
}

TEST_F(OutboxStoreTest, OuterFailureUndoesCommittedInnerWork) {
  auto store = Open();
  absl::Status outer = store->InTransaction([&]() -> absl::Status {
    EXPECT_TRUE(store->InTransaction([&] {
                       return store->AddOutbox({kId1, "bob", 1, "x", "p", 1});
                     }).ok());
    return absl::AbortedError("outer failure");
  });
  EXPECT_EQ(outer.code(), absl::StatusCode::kAborted);
  EXPECT_TRUE(store->ListOutbox()->empty());
}

TEST_F(OutboxStoreTest, GroupsAndSharedSenderKeys) {
  auto store = Open();
  const std::string gid(16, '\x09');
  EXPECT_FALSE(store->LoadGroup(gid)->has_value());
  ASSERT_TRUE(store->SaveGroup({gid, "friends", {"alice", "bob"}, 0}).ok());
  ASSERT_TRUE(store->SaveGroup({gid, "friends", {"alice", "bob", "carol"}, 1}).ok());
  auto group = store->LoadGroup(gid);
  ASSERT_TRUE(group.ok() && group->has_value());
  EXPECT_EQ((*group)->members, (std::vector<std::string>{"alice", "bob", "carol"}));
  EXPECT_EQ((*group)->epoch, 1u);
  EXPECT_EQ(store->ListGroups()->size(), 1u);

  EXPECT_FALSE(*store->SenderKeyShared(gid, {"bob", 1}, 1));
  ASSERT_TRUE(store->MarkSenderKeyShared(gid, {"bob", 1}, 1).ok());
  EXPECT_TRUE(*store->SenderKeyShared(gid, {"bob", 1}, 1));
  EXPECT_FALSE(*store->SenderKeyShared(gid, {"bob", 1}, 2));  // a rotation needs a new share
  ASSERT_TRUE(store->DeleteGroup(gid).ok());
  EXPECT_FALSE(store->LoadGroup(gid)->has_value());
}

TEST_F(OutboxStoreTest, MigratesVersionOneFileInPlace) {
  {
    // A version-1 file as the first increment left it (the tables the v2 step touches).
    sqlite3* db = nullptr;
    ASSERT_EQ(sqlite3_open(path_.c_str(), &db), SQLITE_OK);
    const char* v1 = R"sql(
      CREATE TABLE messages (
        row_id INTEGER PRIMARY KEY AUTOINCREMENT, message_id BLOB NOT NULL UNIQUE,
        conversation TEXT NOT NULL, sender_user_id TEXT NOT NULL,
        sender_device_id INTEGER NOT NULL, content_kind INTEGER NOT NULL, body BLOB NOT NULL,
        sent_at_ms INTEGER NOT NULL, received_at_ms INTEGER NOT NULL, outgoing INTEGER NOT NULL);
      INSERT INTO messages (message_id, conversation, sender_user_id, sender_device_id,
        content_kind, body, sent_at_ms, received_at_ms, outgoing)
        VALUES (x'01010101010101010101010101010101', 'bob', 'bob', 1, 1, 'old', 1, 1, 0);
      PRAGMA user_version = 1;)sql";
    ASSERT_EQ(sqlite3_exec(db, v1, nullptr, nullptr, nullptr), SQLITE_OK);
    sqlite3_close(db);
  }
  auto store = Open();
  ASSERT_NE(store, nullptr);
  EXPECT_EQ(*store->SchemaVersion(), kLocalStoreSchemaVersion);
  auto messages = store->ListMessages("bob");
  ASSERT_TRUE(messages.ok()) << messages.status();
  ASSERT_EQ(messages->size(), 1u);
  EXPECT_EQ((*messages)[0].body, "old");
  EXPECT_EQ((*messages)[0].status, MessageStatus::kPending);
  EXPECT_TRUE(store->AddOutbox({kId2, "bob", 1, "x", "p", 1}).ok());
}

}  // namespace
}  // namespace padlock::client
