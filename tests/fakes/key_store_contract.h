#pragma once
// The KeyStore contract, as a typed test suite run on InMemoryKeyStore (unit binary) and on
// PostgresKeyStore (integration binary). `Factory::Make()` returns a StoreHandle on an empty store.
#include <gtest/gtest.h>

#include <memory>

#include "services/key_directory/key_store.h"
#include "tests/unit/key_directory/test_identities.h"

namespace padlock::key_directory::testing {

struct StoreHandle {
  std::shared_ptr<void> resources;  // whatever the store needs kept alive (pools, servers)
  std::unique_ptr<KeyStore> store;
};

template <typename Factory>
class KeyStoreContract : public ::testing::Test {
 protected:
  void SetUp() override {
    handle_ = Factory::Make();
    ASSERT_NE(handle_.store, nullptr);
    store_ = handle_.store.get();
  }
  void TearDown() override {
    handle_.store.reset();
    handle_.resources.reset();
  }
  NewAccount Account(const std::string& user, const TestDevice& primary, uint64_t version = 1) {
    return NewAccount{.list = keys_.SignedList(user, version, {&primary}, primary),
                      .primary = DeviceKeys{.device_id = 1,
                                            .identity_key = primary.identity.public_key,
                                            .registration_id = primary.registration_id,
                                            .signed_prekey = primary.signed_prekey,
                                            .one_time_prekeys = primary.one_time_prekeys}};
  }
  StoreHandle handle_;
  KeyStore* store_ = nullptr;
  TestKeys keys_;
};

TYPED_TEST_SUITE_P(KeyStoreContract);

TYPED_TEST_P(KeyStoreContract, CreateThenGetAccount) {
  TestDevice alice = this->keys_.NewDevice(1, 3);
  ASSERT_TRUE(this->store_->CreateAccount(this->Account("alice", alice), false).ok());
  auto account = this->store_->GetAccount("alice");
  ASSERT_TRUE(account.ok()) << account.status();
  EXPECT_FALSE(account->banned);
  EXPECT_FALSE(account->reset);
  EXPECT_EQ(account->max_device_id, 1u);
  ASSERT_EQ(account->list.entries.size(), 1u);
  EXPECT_EQ(account->list.entries[0], alice.Entry());
  EXPECT_EQ(account->list.version, 1u);
  EXPECT_EQ(account->list.signature.size(), 64u);
  EXPECT_TRUE(absl::IsNotFound(this->store_->GetAccount("bob").status()));
}

TYPED_TEST_P(KeyStoreContract, SecondCreateIsAlreadyExists) {
  TestDevice alice = this->keys_.NewDevice(1, 0);
  ASSERT_TRUE(this->store_->CreateAccount(this->Account("alice", alice), false).ok());
  EXPECT_TRUE(absl::IsAlreadyExists(
      this->store_->CreateAccount(this->Account("alice", alice), false)));
}

TYPED_TEST_P(KeyStoreContract, ClaimTakesLowestKeyOnceThenNone) {
  TestDevice alice = this->keys_.NewDevice(1, 2);
  ASSERT_TRUE(this->store_->CreateAccount(this->Account("alice", alice), false).ok());
  auto first = this->store_->ClaimBundles("alice", 1, std::nullopt);
  ASSERT_TRUE(first.ok()) << first.status();
  ASSERT_EQ(first->bundles.size(), 1u);
  EXPECT_EQ(first->bundles[0].one_time_prekey, alice.one_time_prekeys[0]);
  EXPECT_EQ(first->bundles[0].one_time_prekeys_remaining, 1u);
  EXPECT_EQ(first->bundles[0].signed_prekey, alice.signed_prekey);
  EXPECT_EQ(first->bundles[0].identity_key, alice.identity.public_key);
  auto second = this->store_->ClaimBundles("alice", 0, std::nullopt);
  ASSERT_TRUE(second.ok());
  EXPECT_EQ(second->bundles[0].one_time_prekey, alice.one_time_prekeys[1]);
  auto third = this->store_->ClaimBundles("alice", 1, std::nullopt);
  ASSERT_TRUE(third.ok());
  EXPECT_FALSE(third->bundles[0].one_time_prekey.has_value());
  EXPECT_EQ(third->bundles[0].one_time_prekeys_remaining, 0u);
  EXPECT_TRUE(absl::IsNotFound(this->store_->ClaimBundles("alice", 2, std::nullopt).status()));
  EXPECT_TRUE(absl::IsNotFound(this->store_->ClaimBundles("nobody", 0, std::nullopt).status()));
}

TYPED_TEST_P(KeyStoreContract, AddPreKeysRules) {
  TestDevice alice = this->keys_.NewDevice(1, 2);
  ASSERT_TRUE(this->store_->CreateAccount(this->Account("alice", alice), false).ok());
  auto added = this->store_->AddPreKeys({"alice", 1}, std::nullopt, this->keys_.NewPreKeys(10, 3),
                                        5);
  ASSERT_TRUE(added.ok()) << added.status();
  EXPECT_EQ(*added, 5u);
  EXPECT_TRUE(absl::IsResourceExhausted(
      this->store_->AddPreKeys({"alice", 1}, std::nullopt, this->keys_.NewPreKeys(20, 1), 5)
          .status()));
  EXPECT_TRUE(absl::IsAlreadyExists(
      this->store_->AddPreKeys({"alice", 1}, std::nullopt, this->keys_.NewPreKeys(10, 1), 100)
          .status()));
  EXPECT_TRUE(absl::IsNotFound(
      this->store_->AddPreKeys({"alice", 2}, std::nullopt, {}, 100).status()));
  SignedPreKey replaced = this->keys_.NewSignedPreKey(alice, 99);
  ASSERT_TRUE(this->store_->AddPreKeys({"alice", 1}, replaced, {}, 100).ok());
  auto claimed = this->store_->ClaimBundles("alice", 1, std::nullopt);
  ASSERT_TRUE(claimed.ok());
  EXPECT_EQ(claimed->bundles[0].signed_prekey, replaced);
}

TYPED_TEST_P(KeyStoreContract, ApplyDeviceListAddsRemovesAndChecksVersion) {
  TestDevice alice = this->keys_.NewDevice(1, 1);
  TestDevice phone = this->keys_.NewDevice(2, 1, 50);
  ASSERT_TRUE(this->store_->CreateAccount(this->Account("alice", alice), false).ok());
  DeviceListUpdate link{.expected_version = 1,
                        .list = this->keys_.SignedList("alice", 2, {&alice, &phone}, alice)};
  link.written_devices.push_back(DeviceKeys{.device_id = 2,
                                            .identity_key = phone.identity.public_key,
                                            .registration_id = phone.registration_id,
                                            .signed_prekey = phone.signed_prekey,
                                            .one_time_prekeys = phone.one_time_prekeys});
  ASSERT_TRUE(this->store_->ApplyDeviceList(link).ok());
  EXPECT_TRUE(absl::IsAborted(this->store_->ApplyDeviceList(link)));
  auto lists = this->store_->GetDeviceLists({"alice", "nobody", "alice"}, ReadFrom::kReplica);
  ASSERT_TRUE(lists.ok());
  ASSERT_EQ(lists->size(), 1u);
  EXPECT_EQ((*lists)[0], link.list);
  auto account = this->store_->GetAccount("alice");
  ASSERT_TRUE(account.ok());
  EXPECT_EQ(account->max_device_id, 2u);
  DeviceListUpdate unlink{.expected_version = 2,
                          .list = this->keys_.SignedList("alice", 3, {&alice}, alice),
                          .removed_device_ids = {2}};
  ASSERT_TRUE(this->store_->ApplyDeviceList(unlink).ok());
  EXPECT_TRUE(absl::IsNotFound(this->store_->ClaimBundles("alice", 2, std::nullopt).status()));
  account = this->store_->GetAccount("alice");
  ASSERT_TRUE(account.ok());
  EXPECT_EQ(account->max_device_id, 2u);
  EXPECT_EQ(account->list, unlink.list);
}

TYPED_TEST_P(KeyStoreContract, BanHidesAccountAndResetKeepsId) {
  TestDevice alice = this->keys_.NewDevice(1, 1);
  ASSERT_TRUE(this->store_->CreateAccount(this->Account("alice", alice), false).ok());
  auto devices = this->store_->SetBanned("alice", true);
  ASSERT_TRUE(devices.ok());
  EXPECT_EQ(*devices, std::vector<uint32_t>{1});
  EXPECT_TRUE(absl::IsNotFound(this->store_->ClaimBundles("alice", 0, std::nullopt).status()));
  EXPECT_TRUE(this->store_->GetDeviceLists({"alice"}, ReadFrom::kPrimary)->empty());
  EXPECT_TRUE(this->store_->GetAccount("alice")->banned);
  EXPECT_TRUE(absl::IsPermissionDenied(
      this->store_->CreateAccount(this->Account("alice", alice), true)));
  ASSERT_TRUE(this->store_->SetBanned("alice", false).ok());
  EXPECT_TRUE(this->store_->ClaimBundles("alice", 0, std::nullopt).ok());
  auto removed = this->store_->ResetAccount("alice");
  ASSERT_TRUE(removed.ok());
  EXPECT_EQ(*removed, std::vector<uint32_t>{1});
  EXPECT_TRUE(this->store_->GetAccount("alice")->reset);
  EXPECT_TRUE(absl::IsNotFound(this->store_->ClaimBundles("alice", 0, std::nullopt).status()));
  EXPECT_TRUE(absl::IsAlreadyExists(
      this->store_->CreateAccount(this->Account("alice", alice, 2), false)));
  EXPECT_TRUE(absl::IsFailedPrecondition(
      this->store_->CreateAccount(this->Account("alice", alice, 1), true)));
  ASSERT_TRUE(this->store_->CreateAccount(this->Account("alice", alice, 2), true).ok());
  EXPECT_EQ(this->store_->GetAccount("alice")->list.version, 2u);
  EXPECT_TRUE(absl::IsNotFound(this->store_->SetBanned("bob", true).status()));
  EXPECT_TRUE(absl::IsNotFound(this->store_->ResetAccount("bob").status()));
}

TYPED_TEST_P(KeyStoreContract, DeleteFreesTheId) {
  TestDevice alice = this->keys_.NewDevice(1, 1);
  ASSERT_TRUE(this->store_->CreateAccount(this->Account("alice", alice), false).ok());
  auto removed = this->store_->DeleteAccount("alice");
  ASSERT_TRUE(removed.ok());
  EXPECT_EQ(*removed, std::vector<uint32_t>{1});
  EXPECT_TRUE(absl::IsNotFound(this->store_->GetAccount("alice").status()));
  EXPECT_TRUE(absl::IsNotFound(this->store_->DeleteAccount("alice").status()));
  EXPECT_TRUE(this->store_->CreateAccount(this->Account("alice", alice), false).ok());
}

// The requester check of a claim: only a listed device of an account that is not banned may
// claim; a refused claim takes no one-time prekey; the requester is judged before the target.
TYPED_TEST_P(KeyStoreContract, ClaimWithRequesterCheckRefusesUnlistedRequesters) {
  TestDevice alice = this->keys_.NewDevice(1, 4);
  TestDevice bob = this->keys_.NewDevice(1, 0);
  ASSERT_TRUE(this->store_->CreateAccount(this->Account("alice", alice), false).ok());
  ASSERT_TRUE(this->store_->CreateAccount(this->Account("bob", bob), false).ok());
  auto expect_refused = [&](const DeviceAddress& requester, const std::string& target) {
    absl::Status status = this->store_->ClaimBundles(target, 0, requester).status();
    EXPECT_TRUE(absl::IsUnauthenticated(status)) << requester.user_id << ": " << status;
    EXPECT_EQ(status.message(), kRequesterNotListedMessage);
  };
  expect_refused({"bob", 2}, "alice");     // a device bob does not have
  expect_refused({"carol", 1}, "alice");   // no such account
  expect_refused({"carol", 1}, "nobody");  // requester first, though the target is unknown too
  // Nothing was taken by the refusals: the listed requester gets alice's first key.
  auto claimed = this->store_->ClaimBundles("alice", 1, DeviceAddress{"bob", 1});
  ASSERT_TRUE(claimed.ok()) << claimed.status();
  ASSERT_EQ(claimed->bundles.size(), 1u);
  EXPECT_EQ(claimed->bundles[0].one_time_prekey, alice.one_time_prekeys[0]);
  EXPECT_EQ(claimed->bundles[0].one_time_prekeys_remaining, 3u);
  // A listed requester still gets NotFound for an unknown target; a user may claim its own.
  EXPECT_TRUE(absl::IsNotFound(
      this->store_->ClaimBundles("nobody", 0, DeviceAddress{"bob", 1}).status()));
  EXPECT_TRUE(this->store_->ClaimBundles("alice", 1, DeviceAddress{"alice", 1}).ok());
  // Banned, then reset: bob's device 1 is no longer listed.
  ASSERT_TRUE(this->store_->SetBanned("bob", true).ok());
  expect_refused({"bob", 1}, "alice");
  ASSERT_TRUE(this->store_->SetBanned("bob", false).ok());
  auto after_unban = this->store_->ClaimBundles("alice", 1, DeviceAddress{"bob", 1});
  ASSERT_TRUE(after_unban.ok()) << after_unban.status();
  EXPECT_EQ(after_unban->bundles[0].one_time_prekey, alice.one_time_prekeys[2]);
  ASSERT_TRUE(this->store_->ResetAccount("bob").ok());
  expect_refused({"bob", 1}, "alice");
  // Three claims succeeded in all: the last key is still there.
  auto last = this->store_->ClaimBundles("alice", 1, std::nullopt);
  ASSERT_TRUE(last.ok());
  EXPECT_EQ(last->bundles[0].one_time_prekey, alice.one_time_prekeys[3]);
  EXPECT_EQ(last->bundles[0].one_time_prekeys_remaining, 0u);
}

REGISTER_TYPED_TEST_SUITE_P(KeyStoreContract, CreateThenGetAccount, SecondCreateIsAlreadyExists,
                            ClaimTakesLowestKeyOnceThenNone, AddPreKeysRules,
                            ApplyDeviceListAddsRemovesAndChecksVersion,
                            BanHidesAccountAndResetKeepsId, DeleteFreesTheId,
                            ClaimWithRequesterCheckRefusesUnlistedRequesters);

}  // namespace padlock::key_directory::testing
