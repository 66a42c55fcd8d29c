// LocalStore schema v3 (signed-prekey ages for scheduled rotation, stories with expiry), the
// in-place upgrade of a version-2 file, and the CLI's parsing of the account and story commands.
#include <sqlcipher/sqlite3.h>

#include <memory>
#include <string>
#include <vector>

#include "clients/cli/commands.h"
#include "clients/sdk/local_store.h"
#include "gtest/gtest.h"
#include "tests/harness/harness.h"
#include "tests/unit/clients/store_file_fixture.h"

namespace padlock::client {
namespace {

class AccountStoreTest : public StoreFileTest {};

TEST_F(AccountStoreTest, SignedPreKeyAgesAreKeptAndDeletedWithTheKey) {
  auto store = Open();
  ASSERT_NE(store, nullptr);
  ASSERT_TRUE(store->StoreSignedPreKey(1, "record-1").ok());  // as registration stores it
  ASSERT_TRUE(store->StoreSignedPreKeyAt(2, "record-2", 5000).ok());
  auto keys = store->ListSignedPreKeys();
  ASSERT_TRUE(keys.ok()) << keys.status();
  ASSERT_EQ(keys->size(), 2u);
  EXPECT_EQ((*keys)[0].id, 1u);
  EXPECT_EQ((*keys)[0].created_at_ms, 0);  // no age recorded
  EXPECT_EQ((*keys)[1].id, 2u);
  EXPECT_EQ((*keys)[1].created_at_ms, 5000);
  EXPECT_EQ((*keys)[1].retired_at_ms, 0);

  ASSERT_TRUE(store->SetSignedPreKeyAge({1, 100, 6000}).ok());
  keys = store->ListSignedPreKeys();
  EXPECT_EQ((*keys)[0].created_at_ms, 100);
  EXPECT_EQ((*keys)[0].retired_at_ms, 6000);

  ASSERT_TRUE(store->DeleteSignedPreKey(1).ok());
  EXPECT_FALSE(store->ContainsSignedPreKey(1).value());
  EXPECT_TRUE(store->ContainsSignedPreKey(2).value());
  ASSERT_EQ(store->ListSignedPreKeys()->size(), 1u);
  EXPECT_TRUE(store->DeleteSignedPreKey(1).ok());  // absent: fine
}

TEST_F(AccountStoreTest, StoriesAreListedUntilTheyExpireAndDeletedAfter) {
  auto store = Open();
  ASSERT_NE(store, nullptr);
  ASSERT_TRUE(store->AddStory({kId1, "alice", 1, "first", 1000, 5000, false, {}}).ok());
  ASSERT_TRUE(store->AddStory({kId2, "me", 1, "mine", 2000, 9000, true, {"alice", "bob"}}).ok());
  // Same sender and id again: refused; the same id from another sender is another story.
  EXPECT_TRUE(absl::IsAlreadyExists(
      store->AddStory({kId1, "alice", 2, "copy", 1000, 5000, false, {}})));
  ASSERT_TRUE(store->AddStory({kId1, "carol", 1, "carol's", 3000, 4000, false, {}}).ok());

  auto listed = store->ListStories(3999);
  ASSERT_TRUE(listed.ok()) << listed.status();
  ASSERT_EQ(listed->size(), 3u);
  EXPECT_EQ((*listed)[0].text, "first");
  EXPECT_EQ((*listed)[0].sender_user_id, "alice");
  EXPECT_EQ((*listed)[0].expires_at_ms, 5000);
  EXPECT_FALSE((*listed)[0].outgoing);
  EXPECT_EQ((*listed)[1].text, "mine");
  EXPECT_TRUE((*listed)[1].outgoing);
  EXPECT_EQ((*listed)[1].audience, (std::vector<std::string>{"alice", "bob"}));
  EXPECT_EQ((*listed)[2].text, "carol's");

  // At its expiry time a story is no longer shown.
  listed = store->ListStories(5000);
  ASSERT_EQ(listed->size(), 1u);
  EXPECT_EQ((*listed)[0].text, "mine");
  auto deleted = store->DeleteExpiredStories(5000);
  ASSERT_TRUE(deleted.ok());
  EXPECT_EQ(*deleted, 2);
  EXPECT_EQ(store->ListStories(0)->size(), 1u);
}

TEST_F(AccountStoreTest, MigratesVersionTwoFileInPlace) {
  {
    // A version-2 file: the current schema without what v3 adds, holding a signed prekey.
    auto store = Open();
    ASSERT_NE(store, nullptr);
    ASSERT_TRUE(store->StoreSignedPreKey(7, "record-7").ok());
    ASSERT_TRUE(store->SaveAccount({"alice", 1, 101, 7}).ok());
  }
  {
    sqlite3* db = nullptr;
    ASSERT_EQ(sqlite3_open(path_.c_str(), &db), SQLITE_OK);
    ASSERT_EQ(sqlite3_exec(db,
                           "DROP TABLE stories; DROP TABLE signed_prekey_ages; "
                           "PRAGMA user_version = 2;",
                           nullptr, nullptr, nullptr),
              SQLITE_OK)
        << sqlite3_errmsg(db);
    sqlite3_close(db);
  }
  auto store = Open();
  ASSERT_NE(store, nullptr);
  EXPECT_EQ(*store->SchemaVersion(), kLocalStoreSchemaVersion);
  EXPECT_EQ(kLocalStoreSchemaVersion, 3);
  EXPECT_EQ(store->LoadAccount()->signed_prekey_id, 7u);
  auto keys = store->ListSignedPreKeys();
  ASSERT_TRUE(keys.ok()) << keys.status();
  ASSERT_EQ(keys->size(), 1u);
  EXPECT_EQ((*keys)[0].id, 7u);
  EXPECT_EQ((*keys)[0].created_at_ms, 0);  // its age starts at the first rotation check
  ASSERT_TRUE(store->AddStory({kId3, "bob", 1, "after upgrade", 1, 2, false, {}}).ok());
  EXPECT_EQ(store->ListStories(1)->size(), 1u);
}

TEST(AccountCliArgsTest, HelpStoryAndUnlinkParse) {
  auto help = cli::ParseArgs({"--help"});
  ASSERT_TRUE(help.ok()) << help.status();
  EXPECT_EQ(help->command, "help");
  help = cli::ParseArgs({"story", "-h"});
  ASSERT_TRUE(help.ok());
  EXPECT_EQ(help->command, "help");
  EXPECT_NE(cli::Usage().find("devices unlink DEVICE_ID"), std::string::npos);
  EXPECT_NE(cli::Usage().find("story post --to USER[,USER...]"), std::string::npos);

  auto story = cli::ParseArgs({"story", "post", "--to", "alice,bob", "--ttl=60", "hi", "there"});
  ASSERT_TRUE(story.ok()) << story.status();
  EXPECT_EQ(story->command, "story");
  EXPECT_EQ(story->positional, (std::vector<std::string>{"post", "hi", "there"}));
  EXPECT_EQ(story->flags.at("to"), "alice,bob");
  EXPECT_EQ(story->flags.at("ttl"), "60");
  EXPECT_FALSE(cli::ParseArgs({"story", "post", "--to"}).ok());  // needs a value

  auto unlink = cli::ParseArgs({"devices", "unlink", "2"});
  ASSERT_TRUE(unlink.ok());
  EXPECT_EQ(unlink->positional, (std::vector<std::string>{"unlink", "2"}));
}

}  // namespace
}  // namespace padlock::client
