// Web Push subscriptions end to end: the real binaries on one
// redis-server and on a 3-master Redis Cluster, through the public gateway. A subscription lands
// in Redis under the device's hash tag with its TTL, a Connect renews the TTL, and deleting it,
// unlinking the device or deleting the account removes the key. The gateway allows loopback push
// hosts only because this stack lists them (PADLOCK_PUSH_ALLOWED_HOSTS), as the local stack does.
#include <gtest/gtest.h>

#include <map>
#include <memory>
#include <string>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "services/common/channels/device_channel.h"
#include "tests/e2e/gateway/e2e_client.h"
#include "tests/harness/mode_stacks.h"
#include "tests/harness/stack.h"

namespace padlock::e2e {
namespace {

using testing::PadlockStack;
using testing::WaitFor;

constexpr int64_t kTtlSeconds = 3600;

// The P-256 base point, uncompressed: a valid p256dh (and a valid VAPID public key).
std::string ValidPoint() {
  return absl::HexStringToBytes(
      "046B17D1F2E12C4247F8BCE6E563A440F277037D812DEB33A0F4A13945D898C296"
      "4FE342E2FE1A7F9B8EE7EB4A7C0F9E162BCE33576B315ECECBB6406837BF51F5");
}

PadlockStack* StackFor(bool cluster) {
  std::string vapid;
  absl::WebSafeBase64Escape(ValidPoint(), &vapid);
  return testing::StackForMode(
      cluster, {.gateway_env = {{"PADLOCK_PUSH_ALLOWED_HOSTS", "127.0.0.1,localhost"},
                                {"PADLOCK_PUSH_ENDPOINT_TTL", absl::StrCat(kTtlSeconds, "s")},
                                {"PADLOCK_VAPID_PUBLIC_KEY", vapid}}});
}

class PushSubscriptionE2eTest : public ::testing::TestWithParam<bool> {
 protected:
  void SetUp() override {
    stack_ = StackFor(GetParam());
    ASSERT_NE(stack_, nullptr);
    ops_ = std::make_unique<AccountOps>(
        grpc::CreateChannel(stack_->gateway_target(), stack_->gateway_credentials()));
    prefix_ = testing::TestUserSuffix(GetParam());
  }
  void TearDown() override {
    if (HasFailure() && stack_ != nullptr) std::cerr << stack_->Logs().substr(0, 20000);
  }

  Account MustRegister(const std::string& name) {
    auto account = ops_->Register(absl::StrCat(name, ".", prefix_));
    EXPECT_TRUE(account.ok()) << account.status();
    return account.ok() ? *std::move(account) : Account{};
  }
  std::string MustLogin(const Account& account, uint32_t device) {
    auto token = ops_->Login(account, device);
    EXPECT_TRUE(token.ok()) << token.status();
    return token.ok() ? *token : "";
  }
  grpc::Status SetSubscription(const std::string& token, const std::string& endpoint,
                               pb::SetPushSubscriptionResponse* response = nullptr) {
    pb::SetPushSubscriptionRequest request;
    request.mutable_subscription()->set_endpoint(endpoint);
    request.mutable_subscription()->set_p256dh(ValidPoint());
    request.mutable_subscription()->set_auth(std::string(16, 'k'));
    pb::SetPushSubscriptionResponse ignored;
    grpc::ClientContext context;
    if (!token.empty()) Authorize(context, token);
    return ops_->stub().SetPushSubscription(&context, request,
                                            response != nullptr ? response : &ignored);
  }
  // redis-cli on the node owning the device's push key; its output trimmed.
  std::string Cli(const std::string& key, const std::vector<std::string>& args) {
    auto out = stack_->RedisCliForKey(key, args);
    EXPECT_TRUE(out.ok()) << out.status();
    return out.ok() ? std::string(absl::StripAsciiWhitespace(*out)) : "";
  }
  int64_t Ttl(const std::string& key) {
    int64_t ttl = -3;
    EXPECT_TRUE(absl::SimpleAtoi(Cli(key, {"TTL", key}), &ttl));
    return ttl;
  }
  bool Exists(const std::string& key) { return Cli(key, {"EXISTS", key}) == "1"; }

  PadlockStack* stack_ = nullptr;
  std::unique_ptr<AccountOps> ops_;
  std::string prefix_;
};

TEST_P(PushSubscriptionE2eTest, RegisterStoresTheKeyWithItsTtl) {
  Account alice = MustRegister("alice");
  const std::string token = MustLogin(alice, 1);
  const std::string endpoint = "http://127.0.0.1:9/push/alice-1";
  pb::SetPushSubscriptionResponse response;
  grpc::Status status = SetSubscription(token, endpoint, &response);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(response.ttl_seconds(), kTtlSeconds);
  const std::string key = channels::PushSubscriptionKey(alice.user, 1);
  EXPECT_EQ(key, absl::StrCat("push:{", alice.user, ":1}"));
  const int64_t ttl = Ttl(key);
  EXPECT_GT(ttl, kTtlSeconds - 60);
  EXPECT_LE(ttl, kTtlSeconds);
  EXPECT_NE(Cli(key, {"GET", key}).find(endpoint), std::string::npos);

  // A second registration replaces the first.
  ASSERT_TRUE(SetSubscription(token, "http://localhost:9/push/new").ok());
  const std::string value = Cli(key, {"GET", key});
  EXPECT_NE(value.find("http://localhost:9/push/new"), std::string::npos);
  EXPECT_EQ(value.find(endpoint), std::string::npos);
}

TEST_P(PushSubscriptionE2eTest, ReconnectRefreshesTheTtl) {
  Account bob = MustRegister("bob");
  const std::string token = MustLogin(bob, 1);
  ASSERT_TRUE(SetSubscription(token, "http://127.0.0.1:9/push/bob").ok());
  const std::string key = channels::PushSubscriptionKey(bob.user, 1);
  // Most of the TTL has passed...
  ASSERT_EQ(Cli(key, {"EXPIRE", key, "100"}), "1");
  ASSERT_LE(Ttl(key), 100);
  // ...then the device connects: the renewal happens before `connected`.
  auto conn = DeviceConn::Open(ops_->stub(), token);
  ASSERT_TRUE(conn->WaitConnected().has_value());
  EXPECT_GT(Ttl(key), kTtlSeconds - 60);
}

TEST_P(PushSubscriptionE2eTest, ConnectClearsThePushCoalescingMark) {
  Account dave = MustRegister("dave");
  const std::string token = MustLogin(dave, 1);
  ASSERT_TRUE(SetSubscription(token, "http://127.0.0.1:9/push/dave").ok());
  // A push went out while the device slept (the message-queue set the mark)...
  const std::string mark = channels::PushCoalesceKey(dave.user, 1);
  ASSERT_EQ(Cli(mark, {"SET", mark, "1", "PX", "600000"}), "OK");
  ASSERT_TRUE(Exists(mark));
  // ...then it connects: the next message after this connect may push again.
  auto conn = DeviceConn::Open(ops_->stub(), token);
  ASSERT_TRUE(conn->WaitConnected().has_value());
  EXPECT_FALSE(Exists(mark));
}

TEST_P(PushSubscriptionE2eTest, DeleteRemovesTheKey) {
  Account carol = MustRegister("carol");
  const std::string token = MustLogin(carol, 1);
  ASSERT_TRUE(SetSubscription(token, "http://127.0.0.1:9/push/carol").ok());
  const std::string key = channels::PushSubscriptionKey(carol.user, 1);
  ASSERT_TRUE(Exists(key));
  for (int i = 0; i < 2; ++i) {  // the second delete finds nothing and still succeeds
    grpc::ClientContext context;
    Authorize(context, token);
    pb::DeletePushSubscriptionResponse response;
    grpc::Status status = ops_->stub().DeletePushSubscription(
        &context, pb::DeletePushSubscriptionRequest(), &response);
    ASSERT_TRUE(status.ok()) << status.error_message();
    EXPECT_FALSE(Exists(key));
  }
}

TEST_P(PushSubscriptionE2eTest, UnlinkingTheDeviceRemovesItsKey) {
  Account dave = MustRegister("dave");
  ASSERT_TRUE(ops_->Link(dave, 2).ok());
  ASSERT_TRUE(SetSubscription(MustLogin(dave, 1), "http://127.0.0.1:9/push/dave-1").ok());
  ASSERT_TRUE(SetSubscription(MustLogin(dave, 2), "http://127.0.0.1:9/push/dave-2").ok());
  const std::string key1 = channels::PushSubscriptionKey(dave.user, 1);
  const std::string key2 = channels::PushSubscriptionKey(dave.user, 2);
  ASSERT_TRUE(Exists(key2));
  ASSERT_TRUE(ops_->Unlink(dave, 2).ok());
  EXPECT_TRUE(WaitFor([&] { return !Exists(key2); }, absl::Seconds(10)));
  EXPECT_TRUE(Exists(key1));  // the other device keeps its own
}

TEST_P(PushSubscriptionE2eTest, DeletingTheAccountRemovesEveryKey) {
  Account erin = MustRegister("erin");
  ASSERT_TRUE(ops_->Link(erin, 2).ok());
  ASSERT_TRUE(SetSubscription(MustLogin(erin, 2), "http://127.0.0.1:9/push/erin-2").ok());
  const std::string primary = MustLogin(erin, 1);
  ASSERT_TRUE(SetSubscription(primary, "http://127.0.0.1:9/push/erin-1").ok());
  ASSERT_TRUE(Exists(channels::PushSubscriptionKey(erin.user, 1)));
  ASSERT_TRUE(Exists(channels::PushSubscriptionKey(erin.user, 2)));
  grpc::ClientContext context;
  Authorize(context, primary);
  pb::DeleteAccountResponse response;
  grpc::Status status =
      ops_->stub().DeleteAccount(&context, pb::GatewayDeleteAccountRequest(), &response);
  ASSERT_TRUE(status.ok()) << status.error_message();
  for (uint32_t device : {1u, 2u}) {
    const std::string key = channels::PushSubscriptionKey(erin.user, device);
    EXPECT_TRUE(WaitFor([&] { return !Exists(key); }, absl::Seconds(10))) << key;
  }
}

TEST_P(PushSubscriptionE2eTest, UnauthenticatedCallsAreRefused) {
  EXPECT_EQ(SetSubscription("", "http://127.0.0.1:9/push/x").error_code(),
            grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(SetSubscription("not-a-token", "http://127.0.0.1:9/push/x").error_code(),
            grpc::StatusCode::UNAUTHENTICATED);
  {
    grpc::ClientContext context;
    pb::DeletePushSubscriptionResponse response;
    EXPECT_EQ(ops_->stub()
                  .DeletePushSubscription(&context, pb::DeletePushSubscriptionRequest(), &response)
                  .error_code(),
              grpc::StatusCode::UNAUTHENTICATED);
  }
  {
    grpc::ClientContext context;
    pb::GetPushConfigResponse response;
    EXPECT_EQ(ops_->stub().GetPushConfig(&context, pb::GetPushConfigRequest(), &response)
                  .error_code(),
              grpc::StatusCode::UNAUTHENTICATED);
  }
}

TEST_P(PushSubscriptionE2eTest, RefusedEndpointsAreInvalidArgumentAndStoreNothing) {
  Account frank = MustRegister("frank");
  const std::string token = MustLogin(frank, 1);
  // 127.0.0.2 and 10.0.0.1 are not on this stack's allow-list; the rest break other rules.
  // (No unresolvable host here: that would need DNS; the unit tests cover it.)
  for (const std::string& endpoint :
       {std::string("http://127.0.0.2:9/push"), std::string("https://10.0.0.1/push"),
        std::string("ftp://127.0.0.1/push"), std::string("http://u:p@127.0.0.1/push"),
        std::string("http://127.0.0.1/") + std::string(1000, 'a')}) {
    grpc::Status status = SetSubscription(token, endpoint);
    EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT)
        << endpoint.substr(0, 40) << ": " << status.error_message();
  }
  EXPECT_FALSE(Exists(channels::PushSubscriptionKey(frank.user, 1)));
}

TEST_P(PushSubscriptionE2eTest, GetPushConfigReturnsTheVapidKey) {
  Account grace = MustRegister("grace");
  grpc::ClientContext context;
  Authorize(context, MustLogin(grace, 1));
  pb::GetPushConfigResponse response;
  grpc::Status status = ops_->stub().GetPushConfig(&context, pb::GetPushConfigRequest(), &response);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(response.vapid_public_key(), ValidPoint());
}

INSTANTIATE_TEST_SUITE_P(Redis, PushSubscriptionE2eTest, ::testing::Values(false, true),
                         [](const ::testing::TestParamInfo<bool>& info) {
                           return info.param ? "Cluster" : "Standalone";
                         });

}  // namespace
}  // namespace padlock::e2e
