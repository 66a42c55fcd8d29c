// Login and bearer-token checks with fakes (challenge store, identity source, clock, randomness)
// and real libsignal identity keys, so signatures are the ones clients make.
#include "services/gateway/authenticator.h"

#include <gtest/gtest.h>
#include <prometheus/registry.h>

#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <tuple>

#include "absl/strings/str_cat.h"
#include "clients/sdk/crypto_provider.h"
#include "clients/sdk/identity.h"
#include "common/statement/signed_statement.h"
#include "tests/fakes/manual_clock.h"

namespace padlock::gateway {
namespace {

// Expiry follows the injected clock. One challenge per device, as the Redis store keeps.
class FakeChallengeStore final : public ChallengeStore {
 public:
  explicit FakeChallengeStore(const runtime::Clock* clock) : clock_(clock) {}
  absl::Status Put(const DeviceRef& device, const std::string& challenge,
                   const std::string& audience, absl::Duration ttl) override {
    std::lock_guard lock(mu_);
    if (down) return absl::UnavailableError("fake store down");
    entries_[Key(device)] = {challenge, audience, clock_->Now() + ttl};
    return absl::OkStatus();
  }
  absl::StatusOr<std::optional<std::string>> Consume(const DeviceRef& device,
                                                     const std::string& challenge) override {
    std::lock_guard lock(mu_);
    if (down) return absl::UnavailableError("fake store down");
    auto it = entries_.find(Key(device));
    if (it == entries_.end() || std::get<0>(it->second) != challenge) {
      return std::optional<std::string>();
    }
    auto [stored, audience, expires] = it->second;
    entries_.erase(it);
    if (clock_->Now() >= expires) return std::optional<std::string>();
    return std::optional<std::string>(audience);
  }
  size_t size() {
    std::lock_guard lock(mu_);
    return entries_.size();
  }
  bool down = false;

 private:
  static std::pair<std::string, uint32_t> Key(const DeviceRef& d) {
    return {d.user_id, d.device_id};
  }
  const runtime::Clock* const clock_;
  std::mutex mu_;
  std::map<std::pair<std::string, uint32_t>, std::tuple<std::string, std::string, absl::Time>>
      entries_;
};

class FakeIdentities final : public IdentitySource {
 public:
  absl::StatusOr<IdentityInfo> GetIdentityKey(const DeviceRef& device) override {
    if (down) return absl::UnavailableError("fake key-directory down");
    auto it = keys.find({device.user_id, device.device_id});
    if (it == keys.end()) return absl::NotFoundError("no such device");
    return it->second;
  }
  std::map<std::pair<std::string, uint32_t>, IdentityInfo> keys;
  bool down = false;
};

class AuthenticatorTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto context = client::SignalContext::Create();
    ASSERT_TRUE(context.ok());
    signal_ = *std::move(context);
    auto key = client::GenerateIdentityKeyPair(*signal_);
    ASSERT_TRUE(key.ok());
    alice_ = *key;
    auto other = client::GenerateIdentityKeyPair(*signal_);
    ASSERT_TRUE(other.ok());
    mallory_ = *other;
    identities_.keys[{"alice", 1}] = {alice_.public_key, 3};
    auth_ = std::make_unique<Authenticator>(
        &challenges_, &identities_, &tokens_,
        AuthOptions{.audience = "test-aud", .challenge_ttl = absl::Seconds(60),
                    .token_ttl = absl::Hours(1)},
        &metrics_, &clock_,
        [this] { return std::string(32, static_cast<char>(++counter_)); });
  }

  std::string SignLogin(const client::IdentityKeyPair& key, const DeviceRef& device,
                        const std::string& challenge, const std::string& audience) {
    auto signature = client::Sign(
        *signal_, key.private_key,
        statement::EncodeLogin(device.user_id, device.device_id, challenge, audience));
    EXPECT_TRUE(signature.ok());
    return signature.ok() ? *signature : "";
  }

  void ExpectLoginFailed(const absl::StatusOr<Session>& session) {
    ASSERT_FALSE(session.ok());
    EXPECT_EQ(session.status().code(), absl::StatusCode::kUnauthenticated);
    EXPECT_EQ(session.status().message(), kLoginFailedMessage);
  }

  double Counter(const std::string& name, const std::string& result = "") {
    for (const auto& family : metrics_.Collect()) {
      if (family.name != name) continue;
      for (const auto& m : family.metric) {
        if (result.empty() || (!m.label.empty() && m.label[0].value == result)) {
          return m.counter.value;
        }
      }
    }
    return 0;
  }

  padlock::testing::ManualClock clock_{absl::FromUnixSeconds(1'800'000'000)};
  int counter_ = 0;
  std::unique_ptr<client::SignalContext> signal_;
  client::IdentityKeyPair alice_, mallory_;
  FakeChallengeStore challenges_{&clock_};
  FakeIdentities identities_;
  SessionTokens tokens_{std::string(32, 's'), ""};
  prometheus::Registry metrics_;
  std::unique_ptr<Authenticator> auth_;
  const DeviceRef alice1_{"alice", 1};
};

TEST_F(AuthenticatorTest, ChallengeIsFreshAndCarriesAudience) {
  auto a = auth_->NewChallenge(alice1_);
  auto b = auth_->NewChallenge(alice1_);
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_EQ(a->challenge.size(), 32u);
  EXPECT_NE(a->challenge, b->challenge);
  EXPECT_EQ(a->audience, "test-aud");
  EXPECT_EQ(a->expires_at, clock_.Now() + absl::Seconds(60));
}

TEST_F(AuthenticatorTest, NewChallengeReplacesTheDevicesEarlierOne) {
  std::optional<Challenge> first;
  for (int i = 0; i < 100; ++i) {
    auto c = auth_->NewChallenge(alice1_);
    ASSERT_TRUE(c.ok());
    if (!first) first = *c;
  }
  EXPECT_EQ(challenges_.size(), 1u);  // a device id never makes the store hold more than one
  ExpectLoginFailed(auth_->Login(alice1_, first->challenge,
                                 SignLogin(alice_, alice1_, first->challenge, first->audience)));
  auto latest = auth_->NewChallenge(alice1_);
  ASSERT_TRUE(latest.ok());
  EXPECT_TRUE(auth_->Login(alice1_, latest->challenge,
                           SignLogin(alice_, alice1_, latest->challenge, latest->audience))
                  .ok());
}

TEST_F(AuthenticatorTest, ChallengeForUnknownDeviceSucceedsToo) {
  EXPECT_TRUE(auth_->NewChallenge({"nobody", 9}).ok());
}

TEST_F(AuthenticatorTest, ValidSignatureLogsIn) {
  auto c = auth_->NewChallenge(alice1_);
  ASSERT_TRUE(c.ok());
  auto session = auth_->Login(alice1_, c->challenge,
                              SignLogin(alice_, alice1_, c->challenge, c->audience));
  ASSERT_TRUE(session.ok()) << session.status();
  EXPECT_EQ(session->device_list_version, 3u);
  EXPECT_EQ(session->expires_at, clock_.Now() + absl::Hours(1));
  auto claims = tokens_.Verify(session->token, clock_.Now());
  ASSERT_TRUE(claims.ok());
  EXPECT_EQ(claims->user_id, "alice");
  EXPECT_EQ(claims->device_id, 1u);
  EXPECT_EQ(claims->device_list_version, 3u);
  EXPECT_EQ(Counter("padlock_gateway_logins_total", "ok"), 1);
}

TEST_F(AuthenticatorTest, ReplayedChallengeFails) {
  auto c = auth_->NewChallenge(alice1_);
  ASSERT_TRUE(c.ok());
  const std::string sig = SignLogin(alice_, alice1_, c->challenge, c->audience);
  ASSERT_TRUE(auth_->Login(alice1_, c->challenge, sig).ok());
  ExpectLoginFailed(auth_->Login(alice1_, c->challenge, sig));
}

TEST_F(AuthenticatorTest, WrongSignatureFailsAndBurnsTheChallenge) {
  auto c = auth_->NewChallenge(alice1_);
  ASSERT_TRUE(c.ok());
  ExpectLoginFailed(
      auth_->Login(alice1_, c->challenge, SignLogin(mallory_, alice1_, c->challenge, c->audience)));
  ExpectLoginFailed(
      auth_->Login(alice1_, c->challenge, SignLogin(alice_, alice1_, c->challenge, c->audience)));
  EXPECT_EQ(Counter("padlock_gateway_logins_total", "failed"), 2);
}

TEST_F(AuthenticatorTest, CrossPurposeSignatureFails) {
  auto c = auth_->NewChallenge(alice1_);
  ASSERT_TRUE(c.ok());
  // Right key, wrong audience in the statement.
  ExpectLoginFailed(
      auth_->Login(alice1_, c->challenge, SignLogin(alice_, alice1_, c->challenge, "other")));
  // Right key, challenge signed raw instead of in a login statement.
  auto c2 = auth_->NewChallenge(alice1_);
  ASSERT_TRUE(c2.ok());
  auto raw = client::Sign(*signal_, alice_.private_key, c2->challenge);
  ASSERT_TRUE(raw.ok());
  ExpectLoginFailed(auth_->Login(alice1_, c2->challenge, *raw));
}

TEST_F(AuthenticatorTest, ChallengeOfAnotherDeviceFails) {
  auto c = auth_->NewChallenge({"alice", 2});
  ASSERT_TRUE(c.ok());
  ExpectLoginFailed(
      auth_->Login(alice1_, c->challenge, SignLogin(alice_, alice1_, c->challenge, c->audience)));
}

TEST_F(AuthenticatorTest, ExpiredChallengeFails) {
  auto c = auth_->NewChallenge(alice1_);
  ASSERT_TRUE(c.ok());
  clock_.Advance(absl::Seconds(60));
  ExpectLoginFailed(
      auth_->Login(alice1_, c->challenge, SignLogin(alice_, alice1_, c->challenge, c->audience)));
}

TEST_F(AuthenticatorTest, UnknownDeviceFailsWithTheSameMessage) {
  const DeviceRef bob{"bob", 1};
  auto c = auth_->NewChallenge(bob);
  ASSERT_TRUE(c.ok());
  ExpectLoginFailed(auth_->Login(bob, c->challenge, SignLogin(alice_, bob, c->challenge,
                                                              c->audience)));
}

TEST_F(AuthenticatorTest, MalformedChallengeFails) {
  ExpectLoginFailed(auth_->Login(alice1_, "short", std::string(64, 'x')));
}

TEST_F(AuthenticatorTest, BackendOutagesAreUnavailableNotUnauthenticated) {
  auto c = auth_->NewChallenge(alice1_);
  ASSERT_TRUE(c.ok());
  identities_.down = true;
  EXPECT_EQ(auth_->Login(alice1_, c->challenge,
                         SignLogin(alice_, alice1_, c->challenge, c->audience))
                .status()
                .code(),
            absl::StatusCode::kUnavailable);
  challenges_.down = true;
  EXPECT_EQ(auth_->NewChallenge(alice1_).status().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(Counter("padlock_gateway_logins_total", "error"), 1);
}

TEST_F(AuthenticatorTest, RandomFailureIsInternal) {
  Authenticator broken(&challenges_, &identities_, &tokens_, {}, nullptr, nullptr,
                       [] { return std::string(); });
  EXPECT_EQ(broken.NewChallenge(alice1_).status().code(), absl::StatusCode::kInternal);
}

class BearerTest : public AuthenticatorTest {
 protected:
  std::string Token(absl::Duration ttl = absl::Hours(1)) {
    return tokens_.Issue({.user_id = "alice", .device_id = 1, .device_list_version = 3,
                          .expires_at = clock_.Now() + ttl});
  }
  void ExpectInvalid(const absl::StatusOr<SessionClaims>& claims) {
    ASSERT_FALSE(claims.ok());
    EXPECT_EQ(claims.status().code(), absl::StatusCode::kUnauthenticated);
    EXPECT_EQ(claims.status().message(), kInvalidTokenMessage);
  }
};

TEST_F(BearerTest, BearerHeaderYieldsTheDevice) {
  auto claims = auth_->Authenticate(absl::StrCat("Bearer ", Token()));
  ASSERT_TRUE(claims.ok()) << claims.status();
  EXPECT_EQ(claims->user_id, "alice");
  EXPECT_EQ(claims->device_id, 1u);
  EXPECT_TRUE(auth_->Authenticate(absl::StrCat("bearer ", Token())).ok());
}

TEST_F(BearerTest, MissingOrMalformedHeaderIsRefusedAlike) {
  ExpectInvalid(auth_->Authenticate(std::nullopt));
  ExpectInvalid(auth_->Authenticate(""));
  ExpectInvalid(auth_->Authenticate("Bearer "));
  ExpectInvalid(auth_->Authenticate(Token()));  // no scheme
  ExpectInvalid(auth_->Authenticate(absl::StrCat("Basic ", Token())));
  ExpectInvalid(auth_->Authenticate("Bearer forged"));
  EXPECT_EQ(Counter("padlock_gateway_auth_failures_total", "malformed"), 5);
  EXPECT_EQ(Counter("padlock_gateway_auth_failures_total", "invalid"), 1);
}

TEST_F(BearerTest, ExpiredTokenIsRefused) {
  const std::string token = Token(absl::Minutes(1));
  clock_.Advance(absl::Minutes(1));
  ExpectInvalid(auth_->Authenticate(absl::StrCat("Bearer ", token)));
}

TEST_F(BearerTest, CheckCurrentRefusesOlderDeviceListOrUnlistedDevice) {
  auto claims = auth_->Authenticate(absl::StrCat("Bearer ", Token()));
  ASSERT_TRUE(claims.ok());
  EXPECT_TRUE(auth_->CheckCurrent(*claims).ok());
  identities_.keys[{"alice", 1}].device_list_version = 4;
  absl::Status stale = auth_->CheckCurrent(*claims);
  EXPECT_EQ(stale.code(), absl::StatusCode::kUnauthenticated);
  EXPECT_EQ(stale.message(), kInvalidTokenMessage);
  identities_.keys.clear();
  EXPECT_EQ(auth_->CheckCurrent(*claims).code(), absl::StatusCode::kUnauthenticated);
  identities_.down = true;
  EXPECT_EQ(auth_->CheckCurrent(*claims).code(), absl::StatusCode::kUnavailable);
}

}  // namespace
}  // namespace padlock::gateway
