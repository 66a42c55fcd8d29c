// KeyRegistry rules on the in-memory fakes, and the KeyStore contract on InMemoryKeyStore.
#include "services/key_directory/key_registry.h"

#include <gtest/gtest.h>

#include "absl/strings/match.h"
#include "prometheus/registry.h"
#include "services/key_directory/in_memory_key_store.h"
#include "tests/fakes/device_list_summaries_contract.h"
#include "tests/fakes/manual_clock.h"
#include "tests/fakes/key_directory_fakes.h"
#include "tests/fakes/key_store_contract.h"
#include "tests/unit/key_directory/test_identities.h"

namespace padlock::key_directory::testing {
namespace {

struct InMemoryFactory {
  static StoreHandle Make() { return {nullptr, std::make_unique<InMemoryKeyStore>()}; }
};
INSTANTIATE_TYPED_TEST_SUITE_P(InMemory, KeyStoreContract, InMemoryFactory);

INSTANTIATE_TEST_SUITE_P(
    Fake, DeviceListSummariesContract,
    ::testing::Values(SummariesFactory{"Fake",
                                       [] {
                                         auto fake = std::make_unique<FakeDeviceListSummaries>();
                                         FakeDeviceListSummaries* raw = fake.get();
                                         return SummariesHandle{
                                             std::move(fake), [raw](const std::string& user) {
                                               return raw->Get(user);
                                             }};
                                       }}),
    [](const ::testing::TestParamInfo<SummariesFactory>& info) { return info.param.name; });

class KeyRegistryTest : public ::testing::Test {
 protected:
  explicit KeyRegistryTest(RegistryOptions options = {}) { MakeRegistry(options); }
  void MakeRegistry(RegistryOptions options) {
    registry_ = std::make_unique<KeyRegistry>(
        &store_, &invites_, &limiter_, &publisher_, &summaries_, options, nullptr,
        &clock_, [this] { return absl::StrCat("tok", ++n_); });
  }
  // Registers `user` with a fresh primary holding `prekeys` one-time prekeys.
  TestDevice RegisterUser(const std::string& user, uint32_t prekeys = 3) {
    TestDevice device = keys_.NewDevice(1, prekeys);
    auto registered = registry_->Register(keys_.MakeRegistration(user, device));
    EXPECT_TRUE(registered.ok()) << registered.status();
    return device;
  }
  padlock::testing::ManualClock clock_{absl::FromUnixSeconds(1000)};  // never advanced
  InMemoryKeyStore store_;
  FakeInviteStore invites_;
  FakeRateLimiter limiter_;
  RecordingPublisher publisher_;
  FakeDeviceListSummaries summaries_;
  TestKeys keys_;
  int n_ = 0;
  std::unique_ptr<KeyRegistry> registry_;
};


TEST_F(KeyRegistryTest, RegistersValidAccount) {
  TestDevice alice = RegisterUser("alice");
  auto list = registry_->GetDeviceList("alice");
  ASSERT_TRUE(list.ok());
  EXPECT_EQ(list->version, 1u);
  EXPECT_EQ(list->entries[0], alice.Entry());
}

TEST_F(KeyRegistryTest, RejectsBadUserId) {
  TestDevice d = keys_.NewDevice(1, 0);
  auto status = registry_->Register(keys_.MakeRegistration("Al", d)).status();
  EXPECT_TRUE(absl::IsInvalidArgument(status));
  EXPECT_TRUE(absl::StartsWith(status.message(), "user_id")) << status;
}

TEST_F(KeyRegistryTest, RejectsShortIdentityKey) {
  TestDevice d = keys_.NewDevice(1, 0);
  Registration r = keys_.MakeRegistration("alice", d);
  r.identity_key.pop_back();
  auto status = registry_->Register(r).status();
  EXPECT_TRUE(absl::IsInvalidArgument(status));
  EXPECT_TRUE(absl::StartsWith(status.message(), "identity_key")) << status;
}

TEST_F(KeyRegistryTest, RejectsWrongKeyTypeByte) {
  TestDevice d = keys_.NewDevice(1, 0);
  Registration r = keys_.MakeRegistration("alice", d);
  r.signed_prekey->public_key[0] = 0x06;
  auto status = registry_->Register(r).status();
  EXPECT_TRUE(absl::IsInvalidArgument(status));
  EXPECT_TRUE(absl::StartsWith(status.message(), "signed_prekey")) << status;
}

TEST_F(KeyRegistryTest, RejectsSignedPreKeyWithBadSignature) {
  TestDevice d = keys_.NewDevice(1, 0);
  Registration r = keys_.MakeRegistration("alice", d);
  r.signed_prekey->signature[5] ^= 1;
  EXPECT_TRUE(absl::IsUnauthenticated(registry_->Register(r).status()));
}

TEST_F(KeyRegistryTest, RejectsBadRegistrationSignature) {
  TestDevice d = keys_.NewDevice(1, 0);
  Registration r = keys_.MakeRegistration("alice", d);
  r.registration_signature[0] ^= 1;
  EXPECT_TRUE(absl::IsUnauthenticated(registry_->Register(r).status()));
  r = keys_.MakeRegistration("alice", d);
  r.registration_id += 1;  // the statement no longer matches (and the list neither)
  EXPECT_FALSE(registry_->Register(r).ok());
}

TEST_F(KeyRegistryTest, RejectsDeviceListSignedByAnotherKey) {
  TestDevice d = keys_.NewDevice(1, 0);
  TestDevice other = keys_.NewDevice(1, 0);
  Registration r = keys_.MakeRegistration("alice", d);
  r.device_list = keys_.SignedList("alice", 1, {&d}, other);
  EXPECT_TRUE(absl::IsUnauthenticated(registry_->Register(r).status()));
}

TEST_F(KeyRegistryTest, RejectsDeviceListNotExactlyDeviceOne) {
  TestDevice d = keys_.NewDevice(1, 0);
  TestDevice two = keys_.NewDevice(2, 0);
  Registration r = keys_.MakeRegistration("alice", d);
  r.device_list = keys_.SignedList("alice", 1, {&d, &two}, d);
  EXPECT_TRUE(absl::IsInvalidArgument(registry_->Register(r).status()));
  r.device_list = keys_.SignedList("alice", 2, {&d}, d);  // version 2 for a new account
  EXPECT_TRUE(absl::IsInvalidArgument(registry_->Register(r).status()));
}

TEST_F(KeyRegistryTest, RejectsTooManyOrDuplicateOneTimePreKeys) {
  TestDevice d = keys_.NewDevice(1, 101);
  auto status = registry_->Register(keys_.MakeRegistration("alice", d)).status();
  EXPECT_TRUE(absl::IsInvalidArgument(status));
  EXPECT_TRUE(absl::StartsWith(status.message(), "one_time_prekeys")) << status;
  TestDevice e = keys_.NewDevice(1, 2);
  e.one_time_prekeys[1].key_id = e.one_time_prekeys[0].key_id;
  EXPECT_TRUE(absl::IsInvalidArgument(
      registry_->Register(keys_.MakeRegistration("alice", e)).status()));
}

TEST_F(KeyRegistryTest, FirstComeClaimsTheUsername) {
  RegisterUser("alice");
  TestDevice other = keys_.NewDevice(1, 0);
  EXPECT_TRUE(absl::IsAlreadyExists(
      registry_->Register(keys_.MakeRegistration("alice", other)).status()));
}

TEST_F(KeyRegistryTest, PhoneNumberNeedsInvite) {
  TestDevice d = keys_.NewDevice(1, 0);
  Registration r = keys_.MakeRegistration("+15551234567", d);
  EXPECT_TRUE(absl::IsPermissionDenied(registry_->Register(r).status()));
  auto invite = registry_->CreateInvite(absl::ZeroDuration(), "");
  ASSERT_TRUE(invite.ok());
  EXPECT_EQ(invite->expires_at, absl::FromUnixSeconds(1000) + absl::Hours(24 * 7));
  r.invite_token = invite->token;
  EXPECT_TRUE(registry_->Register(r).ok());
  EXPECT_EQ(invites_.size(), 0u);  // consumed
}

TEST_F(KeyRegistryTest, RejectsOverlongInviteToken) {
  TestDevice d = keys_.NewDevice(1, 0);
  Registration r = keys_.MakeRegistration("alice", d);
  r.invite_token = std::string(65, 'a');
  auto status = registry_->Register(r).status();
  EXPECT_TRUE(absl::IsInvalidArgument(status));
  EXPECT_TRUE(absl::StartsWith(status.message(), "invite_token")) << status;
}

TEST_F(KeyRegistryTest, InvitePolicyNeedsSingleUseInvite) {
  MakeRegistry(RegistryOptions{.policy = RegistrationPolicy::kInvite});
  TestDevice d = keys_.NewDevice(1, 0);
  Registration r = keys_.MakeRegistration("alice", d);
  EXPECT_TRUE(absl::IsPermissionDenied(registry_->Register(r).status()));
  r.invite_token = "unknown";
  EXPECT_TRUE(absl::IsPermissionDenied(registry_->Register(r).status()));
  auto invite = registry_->CreateInvite(absl::Hours(1), "");
  ASSERT_TRUE(invite.ok());
  r.invite_token = invite->token;
  ASSERT_TRUE(registry_->Register(r).ok());
  TestDevice e = keys_.NewDevice(1, 0);
  Registration again = keys_.MakeRegistration("bob", e);
  again.invite_token = invite->token;
  EXPECT_TRUE(absl::IsPermissionDenied(registry_->Register(again).status()));
}

TEST_F(KeyRegistryTest, InviteForAnotherUserIsRefusedAndKept) {
  MakeRegistry(RegistryOptions{.policy = RegistrationPolicy::kInvite});
  auto invite = registry_->CreateInvite(absl::Hours(1), "carol");
  ASSERT_TRUE(invite.ok());
  TestDevice d = keys_.NewDevice(1, 0);
  Registration r = keys_.MakeRegistration("alice", d);
  r.invite_token = invite->token;
  EXPECT_TRUE(absl::IsPermissionDenied(registry_->Register(r).status()));
  EXPECT_EQ(invites_.size(), 1u);
}

TEST_F(KeyRegistryTest, InviteIsGivenBackWhenIdTaken) {
  MakeRegistry(RegistryOptions{.policy = RegistrationPolicy::kInvite});
  auto first = registry_->CreateInvite(absl::Hours(1), "");
  TestDevice d = keys_.NewDevice(1, 0);
  Registration r = keys_.MakeRegistration("alice", d);
  r.invite_token = first->token;
  ASSERT_TRUE(registry_->Register(r).ok());
  auto second = registry_->CreateInvite(absl::Hours(1), "");
  r.invite_token = second->token;
  EXPECT_TRUE(absl::IsAlreadyExists(registry_->Register(r).status()));
}

TEST_F(KeyRegistryTest, CreateInviteValidatesInput) {
  EXPECT_TRUE(absl::IsInvalidArgument(registry_->CreateInvite(absl::Hours(1), "B@d").status()));
  EXPECT_TRUE(
      absl::IsInvalidArgument(registry_->CreateInvite(absl::Hours(24 * 365), "").status()));
}

TEST_F(KeyRegistryTest, BannedIdCannotRegisterAndIsNotFound) {
  RegisterUser("alice");
  ASSERT_TRUE(registry_->BanAccount("alice").ok());
  EXPECT_EQ(publisher_.revoked().size(), 1u);
  TestDevice d = keys_.NewDevice(1, 0);
  EXPECT_TRUE(absl::IsPermissionDenied(
      registry_->Register(keys_.MakeRegistration("alice", d)).status()));
  EXPECT_TRUE(absl::IsNotFound(registry_->ClaimBundles({"bob", 1}, "alice", 0).status()));
  EXPECT_TRUE(absl::IsNotFound(registry_->GetIdentityKey({"alice", 1}).status()));
  ASSERT_TRUE(registry_->UnbanAccount("alice").ok());
  EXPECT_TRUE(absl::IsNotFound(registry_->UnbanAccount("alice")));
  EXPECT_TRUE(registry_->ClaimBundles({"bob", 1}, "alice", 0).ok());
  EXPECT_TRUE(absl::IsNotFound(registry_->BanAccount("nobody")));
}

TEST_F(KeyRegistryTest, ClaimTakesKeysThenNoneAndTellsOwner) {
  TestDevice alice = RegisterUser("alice", 2);
  for (int i = 0; i < 2; ++i) {
    auto claim = registry_->ClaimBundles({"bob", 1}, "alice", 1);
    ASSERT_TRUE(claim.ok());
    EXPECT_EQ(claim->bundles[0].one_time_prekey, alice.one_time_prekeys[i]);
  }
  auto empty = registry_->ClaimBundles({"bob", 1}, "alice", 0);
  ASSERT_TRUE(empty.ok());
  ASSERT_EQ(empty->bundles.size(), 1u);
  EXPECT_FALSE(empty->bundles[0].one_time_prekey.has_value());
  auto low = publisher_.low();
  ASSERT_EQ(low.size(), 3u);
  EXPECT_EQ(low.back(), std::make_tuple(std::string("alice"), 1u, 0u));
}

TEST_F(KeyRegistryTest, ClaimAboveThresholdDoesNotAnnounce) {
  RegisterUser("alice", 12);
  ASSERT_TRUE(registry_->ClaimBundles({"bob", 1}, "alice", 1).ok());  // 11 left
  EXPECT_TRUE(publisher_.low().empty());
  ASSERT_TRUE(registry_->ClaimBundles({"bob", 1}, "alice", 1).ok());  // 10 left
  EXPECT_TRUE(publisher_.low().empty());
  ASSERT_TRUE(registry_->ClaimBundles({"bob", 1}, "alice", 1).ok());  // 9 left
  EXPECT_EQ(publisher_.low().size(), 1u);
}

TEST_F(KeyRegistryTest, ClaimUnknownUserOrDeviceIsNotFound) {
  RegisterUser("alice");
  EXPECT_TRUE(absl::IsNotFound(registry_->ClaimBundles({"bob", 1}, "nobody", 0).status()));
  EXPECT_TRUE(absl::IsNotFound(registry_->ClaimBundles({"bob", 1}, "alice", 3).status()));
  EXPECT_TRUE(absl::IsInvalidArgument(registry_->ClaimBundles({"bob", 1}, "A", 0).status()));
}

TEST_F(KeyRegistryTest, ClaimsAreRateLimitedWithRetryAfter) {
  MakeRegistry(RegistryOptions{.claims_per_requester = {.burst = 2, .per_second = 1}});
  RegisterUser("alice");
  ASSERT_TRUE(registry_->ClaimBundles({"bob", 1}, "alice", 0).ok());
  ASSERT_TRUE(registry_->ClaimBundles({"bob", 1}, "alice", 0).ok());
  absl::Status limited = registry_->ClaimBundles({"bob", 1}, "alice", 0).status();
  EXPECT_TRUE(absl::IsResourceExhausted(limited));
  EXPECT_TRUE(absl::StrContains(limited.message(), "retry after 1500 ms")) << limited;
  EXPECT_EQ(limited.GetPayload(kRetryAfterPayload), absl::Cord("1500"));
  EXPECT_TRUE(registry_->ClaimBundles({"carol", 1}, "alice", 0).ok());
}

TEST_F(KeyRegistryTest, ClaimsPerTargetAreRateLimited) {
  MakeRegistry(RegistryOptions{.claims_per_target = {.burst = 1, .per_second = 1}});
  RegisterUser("alice");
  ASSERT_TRUE(registry_->ClaimBundles({"bob", 1}, "alice", 0).ok());
  EXPECT_TRUE(
      absl::IsResourceExhausted(registry_->ClaimBundles({"carol", 1}, "alice", 0).status()));
}

TEST_F(KeyRegistryTest, ClaimChargesBothBucketsInOneLimiterCall) {
  RegisterUser("alice");
  const int before = limiter_.calls();
  ASSERT_TRUE(registry_->ClaimBundles({"bob", 1}, "alice", 0).ok());
  EXPECT_EQ(limiter_.calls() - before, 1);
  EXPECT_EQ(limiter_.taken("rl:claim:from:bob"), 1);
  EXPECT_EQ(limiter_.taken("rl:claim:to:alice"), 1);
}

// Each bucket decides on its own: a claim refused for its target's bucket still costs the
// requester a token, and the other way round.
TEST_F(KeyRegistryTest, RefusedClaimStillChargesTheBucketThatHadATokenLeft) {
  MakeRegistry(RegistryOptions{.claims_per_requester = {.burst = 3, .per_second = 1},
                               .claims_per_target = {.burst = 1, .per_second = 1}});
  RegisterUser("alice");
  ASSERT_TRUE(registry_->ClaimBundles({"bob", 1}, "alice", 0).ok());
  EXPECT_TRUE(absl::IsResourceExhausted(registry_->ClaimBundles({"bob", 1}, "alice", 0).status()));
  EXPECT_EQ(limiter_.taken("rl:claim:from:bob"), 2);
  EXPECT_EQ(limiter_.taken("rl:claim:to:alice"), 1);
}

TEST_F(KeyRegistryTest, ClaimRetryAfterIsTheLongestWaitOfTheEmptyBuckets) {
  MakeRegistry(RegistryOptions{.claims_per_requester = {.burst = 1, .per_second = 1},
                               .claims_per_target = {.burst = 1, .per_second = 1}});
  RegisterUser("alice");
  limiter_.set_wait("rl:claim:from:bob", absl::Milliseconds(700));
  limiter_.set_wait("rl:claim:to:alice", absl::Microseconds(2300500));  // rounded up
  ASSERT_TRUE(registry_->ClaimBundles({"bob", 1}, "alice", 0).ok());
  absl::Status limited = registry_->ClaimBundles({"bob", 1}, "alice", 0).status();
  EXPECT_TRUE(absl::IsResourceExhausted(limited)) << limited;
  EXPECT_EQ(limited.GetPayload(kRetryAfterPayload), absl::Cord("2301"));
  EXPECT_TRUE(absl::StrContains(limited.message(), "retry after 2301 ms")) << limited;
}

TEST_F(KeyRegistryTest, ClaimWithTheLimiterDownIsUnavailableAndTakesNothing) {
  RegisterUser("alice", 1);
  limiter_.set_fail(true);
  EXPECT_TRUE(absl::IsUnavailable(registry_->ClaimBundles({"bob", 1}, "alice", 1).status()));
  limiter_.set_fail(false);
  auto claim = registry_->ClaimBundles({"bob", 1}, "alice", 1);
  ASSERT_TRUE(claim.ok()) << claim.status();
  ASSERT_TRUE(claim->bundles[0].one_time_prekey.has_value());  // the failed claim took none
}

// The gateway's form of a claim: the requester must be listed. A refused requester is still
// charged (its bucket fills), and the claim takes nothing.
TEST_F(KeyRegistryTest, ClaimRequiringAListedRequesterRefusesOthersAfterCharging) {
  MakeRegistry(RegistryOptions{.claims_per_requester = {.burst = 2, .per_second = 1}});
  RegisterUser("alice", 2);
  RegisterUser("bob");
  RegisterUser("carol");
  absl::Status refused = registry_->ClaimBundles({"bob", 2}, "alice", 1, true).status();
  EXPECT_TRUE(absl::IsUnauthenticated(refused)) << refused;
  EXPECT_EQ(refused.message(), kRequesterNotListedMessage);
  // Without the check the same requester is served (the service's own callers).
  auto unchecked = registry_->ClaimBundles({"bob", 2}, "alice", 1);
  ASSERT_TRUE(unchecked.ok()) << unchecked.status();
  EXPECT_EQ(unchecked->bundles[0].one_time_prekeys_remaining, 1u);  // the refusal took none
  EXPECT_TRUE(absl::IsResourceExhausted(
      registry_->ClaimBundles({"bob", 2}, "alice", 1, true).status()));
  auto listed = registry_->ClaimBundles({"carol", 1}, "alice", 1, true);
  ASSERT_TRUE(listed.ok()) << listed.status();
  EXPECT_EQ(listed->bundles[0].one_time_prekeys_remaining, 0u);
}

class DeviceListTest : public KeyRegistryTest {
 protected:
  void SetUp() override {
    alice_ = RegisterUser("alice", 1);
    phone_ = keys_.NewDevice(2, 2, 100);
  }
  NewDeviceKeys KeysOf(const TestDevice& d) {
    return {d.device_id, d.signed_prekey, d.one_time_prekeys};
  }
  TestDevice alice_;
  TestDevice phone_;
};

TEST_F(DeviceListTest, LinksDeviceWithKeys) {
  auto published = registry_->PublishDeviceList(
      {"alice", 1}, keys_.SignedList("alice", 2, {&alice_, &phone_}, alice_), {KeysOf(phone_)});
  ASSERT_TRUE(published.ok()) << published.status();
  EXPECT_EQ(published->version, 2u);
  auto claim = registry_->ClaimBundles({"bob", 1}, "alice", 2);
  ASSERT_TRUE(claim.ok());
  EXPECT_EQ(claim->bundles[0].identity_key, phone_.identity.public_key);
  auto info = registry_->GetIdentityKey({"alice", 2});
  ASSERT_TRUE(info.ok());
  EXPECT_EQ(info->device_list_version, 2u);
}

TEST_F(DeviceListTest, UnlinkRevokesAndNeverReusesId) {
  ASSERT_TRUE(registry_
                  ->PublishDeviceList({"alice", 1},
                                      keys_.SignedList("alice", 2, {&alice_, &phone_}, alice_),
                                      {KeysOf(phone_)})
                  .ok());
  auto unlinked = registry_->PublishDeviceList(
      {"alice", 1}, keys_.SignedList("alice", 3, {&alice_}, alice_), {});
  ASSERT_TRUE(unlinked.ok());
  EXPECT_EQ(unlinked->removed_device_ids, std::vector<uint32_t>{2});
  EXPECT_EQ(publisher_.revoked(),
            (std::vector<std::pair<std::string, uint32_t>>{{"alice", 2}}));
  EXPECT_TRUE(absl::IsNotFound(registry_->ClaimBundles({"bob", 1}, "alice", 2).status()));
  TestDevice again = keys_.NewDevice(2, 0);
  EXPECT_TRUE(absl::IsFailedPrecondition(
      registry_->PublishDeviceList({"alice", 1},
                                   keys_.SignedList("alice", 4, {&alice_, &again}, alice_), {})
          .status()));
}

TEST_F(DeviceListTest, PublishFailureAfterCommitIsNotAnError) {
  ASSERT_TRUE(registry_
                  ->PublishDeviceList({"alice", 1},
                                      keys_.SignedList("alice", 2, {&alice_, &phone_}, alice_), {})
                  .ok());
  publisher_.set_fail(true);
  EXPECT_TRUE(registry_
                  ->PublishDeviceList({"alice", 1},
                                      keys_.SignedList("alice", 3, {&alice_}, alice_), {})
                  .ok());
}

TEST_F(DeviceListTest, VersionMustIncrease) {
  EXPECT_TRUE(absl::IsFailedPrecondition(
      registry_
          ->PublishDeviceList({"alice", 1},
                              keys_.SignedList("alice", 1, {&alice_, &phone_}, alice_), {})
          .status()));
}

TEST_F(DeviceListTest, TooManyDevicesIsFailedPrecondition) {
  std::vector<TestDevice> devices;
  std::vector<const TestDevice*> listed{&alice_};
  for (uint32_t id = 2; id <= 6; ++id) devices.push_back(keys_.NewDevice(id, 0));
  for (const auto& d : devices) listed.push_back(&d);
  EXPECT_TRUE(absl::IsFailedPrecondition(
      registry_->PublishDeviceList({"alice", 1}, keys_.SignedList("alice", 2, listed, alice_), {})
          .status()));
}

TEST_F(DeviceListTest, OnlyPrimaryPublishesAndSignatureChecked) {
  DeviceList list = keys_.SignedList("alice", 2, {&alice_, &phone_}, alice_);
  EXPECT_TRUE(absl::IsPermissionDenied(
      registry_->PublishDeviceList({"alice", 2}, list, {}).status()));
  EXPECT_TRUE(absl::IsPermissionDenied(
      registry_->PublishDeviceList({"bob", 1}, list, {}).status()));
  EXPECT_TRUE(absl::IsUnauthenticated(
      registry_
          ->PublishDeviceList({"alice", 1},
                              keys_.SignedList("alice", 2, {&alice_, &phone_}, phone_), {})
          .status()));
  EXPECT_TRUE(absl::IsNotFound(
      registry_
          ->PublishDeviceList({"nobody", 1},
                              keys_.SignedList("nobody", 2, {&alice_}, alice_), {})
          .status()));
}

TEST_F(DeviceListTest, PrimaryMustStay) {
  TestDevice three = keys_.NewDevice(3, 0);
  EXPECT_TRUE(absl::IsFailedPrecondition(
      registry_
          ->PublishDeviceList({"alice", 1}, keys_.SignedList("alice", 2, {&phone_, &three}, alice_),
                              {})
          .status()));
}

TEST_F(DeviceListTest, NewDeviceSignedPreKeyVerifiedAgainstNewKey) {
  NewDeviceKeys keys = KeysOf(phone_);
  keys.signed_prekey = keys_.NewSignedPreKey(alice_, 9);  // signed by the wrong key
  EXPECT_TRUE(absl::IsUnauthenticated(
      registry_
          ->PublishDeviceList({"alice", 1},
                              keys_.SignedList("alice", 2, {&alice_, &phone_}, alice_), {keys})
          .status()));
  NewDeviceKeys stray = KeysOf(keys_.NewDevice(4, 0));
  EXPECT_TRUE(absl::IsInvalidArgument(
      registry_
          ->PublishDeviceList({"alice", 1},
                              keys_.SignedList("alice", 2, {&alice_, &phone_}, alice_), {stray})
          .status()));
}

TEST_F(DeviceListTest, PublishPreKeysRules) {
  auto remaining = registry_->PublishPreKeys({"alice", 1}, keys_.NewSignedPreKey(alice_, 8),
                                             keys_.NewPreKeys(10, 5));
  ASSERT_TRUE(remaining.ok()) << remaining.status();
  EXPECT_EQ(*remaining, 6u);
  EXPECT_TRUE(absl::IsAlreadyExists(
      registry_->PublishPreKeys({"alice", 1}, std::nullopt, keys_.NewPreKeys(10, 1)).status()));
  EXPECT_TRUE(absl::IsInvalidArgument(
      registry_->PublishPreKeys({"alice", 1}, std::nullopt, keys_.NewPreKeys(200, 101)).status()));
  EXPECT_TRUE(absl::IsUnauthenticated(
      registry_->PublishPreKeys({"alice", 1}, keys_.NewSignedPreKey(phone_, 8), {}).status()));
  EXPECT_TRUE(absl::IsNotFound(
      registry_->PublishPreKeys({"alice", 9}, std::nullopt, keys_.NewPreKeys(1, 1)).status()));
}

TEST_F(DeviceListTest, PublishPreKeysCapsStoredKeys) {
  MakeRegistry(RegistryOptions{.max_prekeys_stored = 5});
  EXPECT_TRUE(absl::IsResourceExhausted(
      registry_->PublishPreKeys({"alice", 1}, std::nullopt, keys_.NewPreKeys(10, 5)).status()));
}

TEST_F(DeviceListTest, ChangeIdentityOfPrimary) {
  TestDevice reinstalled = keys_.NewDevice(1, 2, 500);
  auto changed = registry_->ChangeIdentity(
      keys_.MakeIdentityChange("alice", alice_, reinstalled, {}, 2));
  ASSERT_TRUE(changed.ok()) << changed.status();
  auto info = registry_->GetIdentityKey({"alice", 1});
  ASSERT_TRUE(info.ok());
  EXPECT_EQ(info->identity_key, reinstalled.identity.public_key);
  auto claim = registry_->ClaimBundles({"bob", 1}, "alice", 1);
  EXPECT_EQ(claim->bundles[0].one_time_prekey, reinstalled.one_time_prekeys[0]);
}

TEST_F(DeviceListTest, ChangeIdentityRejections) {
  TestDevice reinstalled = keys_.NewDevice(1, 0);
  IdentityChange c = keys_.MakeIdentityChange("alice", reinstalled, reinstalled, {}, 2);
  EXPECT_TRUE(absl::IsUnauthenticated(registry_->ChangeIdentity(c).status()));  // not old key
  c = keys_.MakeIdentityChange("alice", alice_, reinstalled, {}, 1);
  EXPECT_TRUE(absl::IsFailedPrecondition(registry_->ChangeIdentity(c).status()));
  c = keys_.MakeIdentityChange("alice", alice_, reinstalled, {}, 2);
  c.device_list = keys_.SignedList("alice", 2, {&reinstalled}, alice_);  // signed by old key
  EXPECT_TRUE(absl::IsUnauthenticated(registry_->ChangeIdentity(c).status()));
  c = keys_.MakeIdentityChange("alice", alice_, reinstalled, {}, 2);
  c.device_list.reset();
  EXPECT_TRUE(absl::IsInvalidArgument(registry_->ChangeIdentity(c).status()));
  c = keys_.MakeIdentityChange("alice", alice_, reinstalled, {}, 2);
  c.device.device_id = 2;
  EXPECT_TRUE(absl::IsPermissionDenied(registry_->ChangeIdentity(c).status()));
  c = keys_.MakeIdentityChange("alice", alice_, reinstalled, {&phone_}, 2);  // adds a device
  EXPECT_TRUE(absl::IsFailedPrecondition(registry_->ChangeIdentity(c).status()));
}

TEST_F(DeviceListTest, DeleteAccountByPrimaryFreesId) {
  EXPECT_TRUE(absl::IsPermissionDenied(registry_->DeleteAccount({"alice", 2})));
  ASSERT_TRUE(registry_->DeleteAccount({"alice", 1}).ok());
  EXPECT_EQ(publisher_.revoked().size(), 1u);
  EXPECT_TRUE(absl::IsNotFound(registry_->GetDeviceList("alice").status()));
  EXPECT_TRUE(absl::IsNotFound(registry_->DeleteAccount({"alice", 1})));
  RegisterUser("alice");
}

TEST_F(DeviceListTest, ResetKeepsIdForInvitedOwner) {
  ASSERT_TRUE(registry_->ResetIdentity("alice").ok());
  EXPECT_TRUE(absl::IsNotFound(registry_->GetDeviceList("alice").status()));
  TestDevice fresh = keys_.NewDevice(1, 0);
  Registration r = keys_.MakeRegistration("alice", fresh);
  auto bound = registry_->CreateInvite(absl::Hours(1), "alice");
  r.invite_token = bound->token;
  EXPECT_TRUE(absl::IsFailedPrecondition(registry_->Register(r).status()));  // version 1
  r.device_list = keys_.SignedList("alice", 2, {&fresh}, fresh);
  r.invite_token = "";
  EXPECT_TRUE(absl::IsPermissionDenied(registry_->Register(r).status()));  // no invite
  auto any = registry_->CreateInvite(absl::Hours(1), "");
  r.invite_token = any->token;
  EXPECT_TRUE(absl::IsPermissionDenied(registry_->Register(r).status()));  // unbound invite
  r.invite_token = bound->token;
  ASSERT_TRUE(registry_->Register(r).ok());
  EXPECT_EQ(registry_->GetDeviceList("alice")->version, 2u);
  EXPECT_TRUE(absl::IsNotFound(registry_->ResetIdentity("nobody")));
}

TEST_F(KeyRegistryTest, GetDeviceListsSkipsUnknownAndBoundsInput) {
  RegisterUser("alice");
  auto lists = registry_->GetDeviceLists({"alice", "nobody"});
  ASSERT_TRUE(lists.ok());
  EXPECT_EQ(lists->size(), 1u);
  std::vector<std::string> many(1025, "alice");
  EXPECT_TRUE(absl::IsInvalidArgument(registry_->GetDeviceLists(many).status()));
  EXPECT_TRUE(absl::IsInvalidArgument(registry_->GetDeviceLists({"x"}).status()));
}

// The Redis device-list summaries: every change brackets its PostgreSQL write with BeginChange /
// EndChange and ends with the state it committed; GetDeviceLists fills missing ones.
std::string Listed(uint64_t version, std::vector<const TestDevice*> devices) {
  device_lists::Summary summary{.listed = true, .version = version};
  for (const TestDevice* d : devices) summary.devices.push_back({d->device_id, d->registration_id});
  return device_lists::EncodeSummary(summary);
}

TEST_F(DeviceListTest, EveryListChangeWritesItsSummaryThrough) {
  EXPECT_EQ(summaries_.Get("alice"), Listed(1, {&alice_}));
  ASSERT_TRUE(registry_
                  ->PublishDeviceList({"alice", 1},
                                      keys_.SignedList("alice", 2, {&alice_, &phone_}, alice_),
                                      {KeysOf(phone_)})
                  .ok());
  EXPECT_EQ(summaries_.Get("alice"), Listed(2, {&alice_, &phone_}));
  ASSERT_TRUE(registry_
                  ->PublishDeviceList({"alice", 1},
                                      keys_.SignedList("alice", 3, {&alice_}, alice_), {})
                  .ok());
  EXPECT_EQ(summaries_.Get("alice"), Listed(3, {&alice_}));
  TestDevice reinstalled = keys_.NewDevice(1, 0, 700);
  ASSERT_TRUE(
      registry_->ChangeIdentity(keys_.MakeIdentityChange("alice", alice_, reinstalled, {}, 4))
          .ok());
  EXPECT_EQ(summaries_.Get("alice"), Listed(4, {&reinstalled}));
  ASSERT_TRUE(registry_->BanAccount("alice").ok());
  EXPECT_EQ(summaries_.Get("alice"), "n");
  ASSERT_TRUE(registry_->UnbanAccount("alice").ok());
  EXPECT_EQ(summaries_.Get("alice"), "");  // left for the next look-up to fill
  ASSERT_TRUE(registry_->GetDeviceLists({"alice"}).ok());
  EXPECT_EQ(summaries_.Get("alice"), Listed(4, {&reinstalled}));
  ASSERT_TRUE(registry_->ResetIdentity("alice").ok());
  EXPECT_EQ(summaries_.Get("alice"), "n");
  RegisterUser("bob");
  ASSERT_TRUE(registry_->AdminDeleteAccount("bob").ok());
  EXPECT_EQ(summaries_.Get("bob"), "n");
  for (const std::string& entry : summaries_.log()) {
    EXPECT_TRUE(absl::StartsWith(entry, "begin ") || absl::StartsWith(entry, "end ")) << entry;
  }
}

TEST_F(DeviceListTest, ARefusalBeforeTheWriteBeginsNoChange) {
  summaries_.clear_log();
  // Version not above the current one: refused before anything is written, no change begun.
  EXPECT_TRUE(absl::IsFailedPrecondition(
      registry_->PublishDeviceList({"alice", 1}, keys_.SignedList("alice", 1, {&alice_}, alice_),
                                   {})
          .status()));
  EXPECT_TRUE(summaries_.log().empty());
  EXPECT_EQ(summaries_.Get("alice"), Listed(1, {&alice_}));
  EXPECT_TRUE(absl::IsNotFound(registry_->UnbanAccount("alice")));  // not banned: no bracket
  TestDevice bob = keys_.NewDevice(1, 0);
  Registration taken = keys_.MakeRegistration("alice", bob);
  EXPECT_TRUE(absl::IsAlreadyExists(registry_->Register(taken).status()));
  EXPECT_TRUE(summaries_.log().empty());  // refused by the pre-check, no bracket either
}

TEST_F(DeviceListTest, RedisDownBeforeTheChangeRefusesItAndWritesNothing) {
  summaries_.set_fail_begin(true);
  auto published = registry_->PublishDeviceList(
      {"alice", 1}, keys_.SignedList("alice", 2, {&alice_, &phone_}, alice_), {KeysOf(phone_)});
  EXPECT_TRUE(absl::IsUnavailable(published.status())) << published.status();
  EXPECT_EQ(registry_->GetDeviceList("alice")->version, 1u);  // not committed
  EXPECT_TRUE(absl::IsUnavailable(registry_->BanAccount("alice")));
  EXPECT_TRUE(absl::IsUnavailable(registry_->AdminDeleteAccount("alice")));
  EXPECT_TRUE(absl::IsUnavailable(registry_->ResetIdentity("alice")));
  EXPECT_TRUE(registry_->GetDeviceList("alice").ok());
  TestDevice carol = keys_.NewDevice(1, 0);
  EXPECT_TRUE(
      absl::IsUnavailable(registry_->Register(keys_.MakeRegistration("carol", carol)).status()));
  EXPECT_TRUE(absl::IsNotFound(registry_->GetDeviceList("carol").status()));
}

TEST_F(DeviceListTest, RedisDownAfterTheCommitStillAnswersOk) {
  // Begin deleted the summary; the failed end leaves it absent, so look-ups read PostgreSQL.
  summaries_.set_fail_end(true);
  ASSERT_TRUE(registry_
                  ->PublishDeviceList({"alice", 1},
                                      keys_.SignedList("alice", 2, {&alice_, &phone_}, alice_),
                                      {KeysOf(phone_)})
                  .ok());
  EXPECT_EQ(summaries_.Get("alice"), "");
  EXPECT_EQ(registry_->GetDeviceList("alice")->version, 2u);
}

TEST_F(KeyRegistryTest, GetDeviceListsFillsMissingSummariesUnknownUsersAsNotListed) {
  TestDevice alice = RegisterUser("alice");
  ASSERT_TRUE(registry_->BanAccount("alice").ok());
  ASSERT_TRUE(registry_->UnbanAccount("alice").ok());
  ASSERT_EQ(summaries_.Get("alice"), "");
  auto lists = registry_->GetDeviceLists({"alice", "nobody"});
  ASSERT_TRUE(lists.ok());
  EXPECT_EQ(summaries_.Get("alice"), Listed(1, {&alice}));
  EXPECT_EQ(summaries_.Get("nobody"), "n");
}

// Metrics: label values, never user ids.
double Sample(prometheus::Registry& registry, const std::string& name, const std::string& label,
              const std::string& value) {
  for (const auto& family : registry.Collect()) {
    if (family.name != name) continue;
    for (const auto& metric : family.metric) {
      for (const auto& l : metric.label) {
        if (l.name == label && l.value == value) {
          return family.type == prometheus::MetricType::Histogram
                     ? static_cast<double>(metric.histogram.sample_count)
                     : metric.counter.value;
        }
      }
      if (label.empty() && family.type == prometheus::MetricType::Histogram) {
        return static_cast<double>(metric.histogram.sample_count);
      }
    }
  }
  return -1;
}

TEST(KeyRegistryMetrics, CountsRegistrationsClaimsAndSignatureFailures) {
  InMemoryKeyStore store;
  FakeInviteStore invites;
  FakeRateLimiter limiter;
  RecordingPublisher publisher;
  prometheus::Registry metrics;
  KeyRegistry registry(&store, &invites, &limiter, &publisher, nullptr, {}, &metrics);
  TestKeys keys;
  TestDevice alice = keys.NewDevice(1, 1);
  Registration forged = keys.MakeRegistration("alice", alice);
  forged.registration_signature[1] ^= 1;
  EXPECT_TRUE(absl::IsUnauthenticated(registry.Register(forged).status()));
  ASSERT_TRUE(registry.Register(keys.MakeRegistration("alice", alice)).ok());
  EXPECT_TRUE(
      absl::IsAlreadyExists(registry.Register(keys.MakeRegistration("alice", alice)).status()));
  ASSERT_TRUE(registry.ClaimBundles({"bob", 1}, "alice", 0).ok());
  ASSERT_TRUE(registry.ClaimBundles({"bob", 1}, "alice", 0).ok());
  EXPECT_EQ(Sample(metrics, "padlock_registrations_total", "result", "ok"), 1);
  EXPECT_EQ(Sample(metrics, "padlock_registrations_total", "result", "taken"), 1);
  EXPECT_EQ(Sample(metrics, "padlock_registrations_total", "result", "bad_signature"), 1);
  EXPECT_EQ(Sample(metrics, "padlock_signature_failures_total", "statement", "registration"), 1);
  EXPECT_EQ(Sample(metrics, "padlock_bundle_claims_total", "one_time_key", "yes"), 1);
  EXPECT_EQ(Sample(metrics, "padlock_bundle_claims_total", "one_time_key", "no"), 1);
  EXPECT_EQ(Sample(metrics, "padlock_prekeys_remaining", "", ""), 2);
  for (const auto& family : metrics.Collect()) {
    for (const auto& metric : family.metric) {
      for (const auto& l : metric.label) EXPECT_NE(l.value, "alice") << family.name;
    }
  }
}

TEST(KeyRegistryMetrics, CountsSummaryFailuresByStepAndPopulates) {
  InMemoryKeyStore store;
  FakeInviteStore invites;
  FakeRateLimiter limiter;
  RecordingPublisher publisher;
  FakeDeviceListSummaries summaries;
  prometheus::Registry metrics;
  KeyRegistry registry(&store, &invites, &limiter, &publisher, &summaries, {}, &metrics);
  TestKeys keys;
  TestDevice alice = keys.NewDevice(1, 0);
  summaries.set_fail_begin(true);
  EXPECT_TRUE(
      absl::IsUnavailable(registry.Register(keys.MakeRegistration("alice", alice)).status()));
  summaries.set_fail_begin(false);
  summaries.set_fail_end(true);
  ASSERT_TRUE(registry.Register(keys.MakeRegistration("alice", alice)).ok());
  summaries.set_fail_end(false);
  ASSERT_TRUE(registry.GetDeviceLists({"alice", "nobody"}).ok());
  EXPECT_EQ(Sample(metrics, "padlock_device_list_summary_failures_total", "step", "begin"), 1);
  EXPECT_EQ(Sample(metrics, "padlock_device_list_summary_failures_total", "step", "end"), 1);
  EXPECT_EQ(Sample(metrics, "padlock_registrations_total", "result", "error"), 1);
  double populated = -1;
  for (const auto& family : metrics.Collect()) {
    if (family.name == "padlock_device_list_summary_populates_total") {
      populated = family.metric.at(0).counter.value;
    }
  }
  // Only nobody: alice's failed end left her change marked in flight (in Redis until its
  // deadline), so her summary stays absent and sends keep asking PostgreSQL meanwhile.
  EXPECT_EQ(populated, 1);
  EXPECT_EQ(summaries.Get("alice"), "");
  EXPECT_EQ(summaries.Get("nobody"), "n");
}

}  // namespace
}  // namespace padlock::key_directory::testing
