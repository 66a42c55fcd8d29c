#pragma once
// The DeviceListSummaries contract (services/key_directory/key_registry.h): the ordering rules
// the message-queue relies on, as a parameterised suite run on FakeDeviceListSummaries (unit
// binary) and on RedisDeviceListSummaries over a real Redis and a 3-master cluster (integration
// binary), so that the fake the KeyRegistry tests use stays honest. What only Redis has (TTLs,
// the writer deadline) is tested next to the Redis instantiation.
#include <gtest/gtest.h>

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "services/common/device_lists/device_list_summary.h"
#include "services/key_directory/key_registry.h"

namespace padlock::key_directory::testing {

struct SummariesHandle {
  std::unique_ptr<DeviceListSummaries> summaries;
  // The stored summary of a user, encoded; "" when there is none.
  std::function<std::string(const std::string&)> stored;
};

// Makes an empty store (or returns a handle without one when its server could not start).
struct SummariesFactory {
  std::string name;
  std::function<SummariesHandle()> make;
};

inline device_lists::Summary Listed(uint64_t version,
                                    std::vector<std::pair<uint32_t, uint32_t>> devices) {
  device_lists::Summary summary{.listed = true, .version = version};
  for (const auto& [id, registration] : devices) summary.devices.push_back({id, registration});
  return summary;
}

class DeviceListSummariesContract : public ::testing::TestWithParam<SummariesFactory> {
 protected:
  void SetUp() override {
    handle_ = GetParam().make();
    ASSERT_NE(handle_.summaries, nullptr);
  }
  std::string Stored(const std::string& user) { return handle_.stored(user); }
  // One look-up's populate, split where a racing change may fall: the token (before PostgreSQL)
  // and the write (after).
  std::string Token(const std::string& user) {
    auto tokens = handle_.summaries->PopulateTokens({user});
    EXPECT_TRUE(tokens.ok()) << tokens.status();
    return tokens.ok() && tokens->size() == 1 ? (*tokens)[0] : "?";
  }
  int Populate(const std::string& user, const std::string& token,
               const device_lists::Summary& summary) {
    auto stored = handle_.summaries->Populate({user}, {token}, {summary});
    EXPECT_TRUE(stored.ok()) << stored.status();
    return stored.ok() ? *stored : -1;
  }
  std::string Begin(const std::string& user) {
    auto token = handle_.summaries->BeginChange(user);
    EXPECT_TRUE(token.ok()) << token.status();
    return token.ok() ? *token : "?";
  }
  void End(const std::string& user, const std::string& token,
           std::optional<device_lists::Summary> after) {
    EXPECT_TRUE(handle_.summaries->EndChange(user, token, after).ok());
  }

  SummariesHandle handle_;
};

TEST_P(DeviceListSummariesContract, APopulateFillsAnEmptySummaryAndNeverReplacesOne) {
  EXPECT_EQ(Populate("alice", Token("alice"), Listed(3, {{1, 101}, {2, 102}})), 1);
  EXPECT_EQ(Stored("alice"), "a 3 1:101 2:102");
  EXPECT_EQ(Populate("nobody", Token("nobody"), device_lists::Summary{}), 1);
  EXPECT_EQ(Stored("nobody"), "n");
  EXPECT_EQ(Populate("alice", Token("alice"), Listed(2, {{1, 101}})), 0);
  EXPECT_EQ(Stored("alice"), "a 3 1:101 2:102");
}

TEST_P(DeviceListSummariesContract, APopulateOfManyUsersCountsWhatItStored) {
  ASSERT_EQ(Populate("bob", Token("bob"), Listed(1, {{1, 5}})), 1);
  const std::vector<std::string> users = {"alice", "bob", "carol"};
  auto tokens = handle_.summaries->PopulateTokens(users);
  ASSERT_TRUE(tokens.ok()) << tokens.status();
  auto stored = handle_.summaries->Populate(
      users, *tokens, {Listed(1, {{1, 1}}), Listed(2, {{1, 6}}), device_lists::Summary{}});
  ASSERT_TRUE(stored.ok()) << stored.status();
  EXPECT_EQ(*stored, 2);  // bob already had one
  EXPECT_EQ(Stored("alice"), "a 1 1:1");
  EXPECT_EQ(Stored("bob"), "a 1 1:5");
  EXPECT_EQ(Stored("carol"), "n");
}

TEST_P(DeviceListSummariesContract, ABeginDeletesTheSummaryAndTheEndWritesTheNewOne) {
  ASSERT_EQ(Populate("alice", Token("alice"), Listed(3, {{1, 101}})), 1);
  const std::string change = Begin("alice");
  EXPECT_EQ(Stored("alice"), "");
  End("alice", change, Listed(4, {{1, 101}, {2, 102}}));
  EXPECT_EQ(Stored("alice"), "a 4 1:101 2:102");
}

TEST_P(DeviceListSummariesContract, APopulateThatReadBeforeAChangeNeverLandsAfterIt) {
  // Token and PostgreSQL read (version 3) before the link; the write after its end (version 4).
  const std::string before = Token("alice");
  End("alice", Begin("alice"), Listed(4, {{1, 101}, {2, 102}}));
  EXPECT_EQ(Populate("alice", before, Listed(3, {{1, 101}})), 0);
  EXPECT_EQ(Stored("alice"), "a 4 1:101 2:102");
  // The same when the end stored nothing (the state was not at hand, or the change failed).
  const std::string before2 = Token("alice");
  End("alice", Begin("alice"), std::nullopt);
  EXPECT_EQ(Populate("alice", before2, Listed(4, {{1, 101}, {2, 102}})), 0);
  EXPECT_EQ(Stored("alice"), "");
  EXPECT_EQ(Populate("alice", Token("alice"), Listed(5, {{1, 101}})), 1);  // a fresh look-up
}

TEST_P(DeviceListSummariesContract, APopulateDuringAChangeIsRefusedEvenWithAFreshToken) {
  // The look-up read PostgreSQL while the change was not yet committed: its token is current,
  // but a change is in flight.
  const std::string change = Begin("alice");
  const std::string during = Token("alice");
  EXPECT_EQ(Populate("alice", during, Listed(3, {{1, 101}})), 0);
  EXPECT_EQ(Stored("alice"), "");
  End("alice", change, Listed(4, {{1, 101}, {2, 102}}));
  EXPECT_EQ(Populate("alice", during, Listed(3, {{1, 101}})), 0);  // the end moved the generation
  EXPECT_EQ(Stored("alice"), "a 4 1:101 2:102");
}

TEST_P(DeviceListSummariesContract, BanAndDeletionWinOverARacingStalePopulate) {
  ASSERT_EQ(Populate("alice", Token("alice"), Listed(3, {{1, 101}})), 1);
  // The ban's begin deletes the summary; a look-up that read the unbanned account races it.
  const std::string ban = Begin("alice");
  const std::string racing = Token("alice");
  End("alice", ban, device_lists::Summary{});
  EXPECT_EQ(Populate("alice", racing, Listed(3, {{1, 101}})), 0);
  EXPECT_EQ(Stored("alice"), "n");
  // Deletion, then a new account under the same id starting again at version 1: an old look-up
  // of the deleted account (version 3, more than 1) still never lands.
  const std::string old = Token("alice");
  End("alice", Begin("alice"), device_lists::Summary{});
  End("alice", Begin("alice"), Listed(1, {{1, 900}}));
  EXPECT_EQ(Populate("alice", old, Listed(3, {{1, 101}})), 0);
  EXPECT_EQ(Stored("alice"), "a 1 1:900");
}

TEST_P(DeviceListSummariesContract, OverlappingChangesLeaveTheSummaryForTheNextLookUp) {
  // Neither end knows whether the other's commit came after its own: neither stores.
  const std::string first = Begin("alice");
  const std::string second = Begin("alice");
  End("alice", first, Listed(4, {{1, 101}}));
  EXPECT_EQ(Stored("alice"), "");
  EXPECT_EQ(Populate("alice", Token("alice"), Listed(4, {{1, 101}})), 0);  // second in flight
  End("alice", second, Listed(5, {{1, 101}, {2, 102}}));
  EXPECT_EQ(Stored("alice"), "");
  EXPECT_EQ(Populate("alice", Token("alice"), Listed(5, {{1, 101}, {2, 102}})), 1);
}

TEST_P(DeviceListSummariesContract, MismatchedPopulateArgumentsAreRefused) {
  EXPECT_TRUE(absl::IsInvalidArgument(
      handle_.summaries->Populate({"alice", "bob"}, {""}, {Listed(1, {{1, 1}})}).status()));
}

}  // namespace padlock::key_directory::testing
