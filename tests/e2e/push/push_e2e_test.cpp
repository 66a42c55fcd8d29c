// Web Push wake-ups end to end: the real binaries (gateway, presence, message-queue,
// key-directory, notifier) on one redis-server, and push services played by HTTP/1.1 listeners
// in this test on 127.0.0.1 (allow-listed, as the local stack does). Waits are conditions with
// deadlines; the coalescing interval is 2 s.
#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "services/common/channels/device_channel.h"
#include "services/notifier/push_policy.h"
#include "tests/e2e/gateway/e2e_client.h"
#include "tests/harness/stack.h"
#include "tests/unit/notifier/tiny_http_server.h"
#include "tests/unit/notifier/web_push_test_util.h"

namespace padlock::e2e {
namespace {

using notifier::TinyHttpServer;
using notifier::test_util::Decrypt;
using notifier::test_util::Device;
using notifier::test_util::NewDevice;
using testing::PadlockStack;
using testing::WaitFor;

constexpr absl::Duration kInterval = absl::Seconds(2);

PadlockStack* Stack() {
  static std::unique_ptr<PadlockStack> stack;
  if (stack != nullptr) return stack.get();
  auto started = PadlockStack::Start(
      {.gateway_env = {{"PADLOCK_PUSH_ALLOWED_HOSTS", "127.0.0.1"}},
       .notifier = true,
       .push_interval = kInterval,
       .notifier_env = {{"PADLOCK_PUSH_ALLOWED_HOSTS", "127.0.0.1"}}});
  EXPECT_TRUE(started.ok()) << started.status();
  if (!started.ok()) return nullptr;
  stack = *std::move(started);
  return stack.get();
}

class PushE2eTest : public ::testing::Test {
 protected:
  void SetUp() override {
    stack_ = Stack();
    ASSERT_NE(stack_, nullptr);
    ops_ = std::make_unique<AccountOps>(
        grpc::CreateChannel(stack_->gateway_target(), stack_->gateway_credentials()));
    for (char c : std::string(::testing::UnitTest::GetInstance()->current_test_info()->name())) {
      if (std::isupper(static_cast<unsigned char>(c)) && prefix_.size() < 12) {
        prefix_ += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
      }
    }
  }
  void TearDown() override {
    if (HasFailure() && stack_ != nullptr) std::cerr << stack_->Logs().substr(0, 30000);
  }

  Account MustRegister(const std::string& name) {
    auto account = ops_->Register(absl::StrCat(name, ".", prefix_));
    EXPECT_TRUE(account.ok()) << account.status();
    return account.ok() ? *std::move(account) : Account{};
  }
  // Registers `device`'s keys with the push endpoint `path` on `server`.
  void Subscribe(const Account& account, const Device& device, TinyHttpServer& server,
                 const std::string& path) {
    pb::SetPushSubscriptionRequest request;
    request.mutable_subscription()->set_endpoint(
        absl::StrCat("http://127.0.0.1:", server.port(), path));
    request.mutable_subscription()->set_p256dh(device.public_point);
    request.mutable_subscription()->set_auth(device.auth);
    pb::SetPushSubscriptionResponse response;
    grpc::ClientContext context;
    Authorize(context, account.primary_token);
    grpc::Status status = ops_->stub().SetPushSubscription(&context, request, &response);
    ASSERT_TRUE(status.ok()) << status.error_message();
  }
  // Alice's device 1 sends `n` messages to `to`; each must be accepted.
  void SendMessages(DeviceConn& from, const Account& alice, const Account& to, int n,
                    const std::string& label) {
    for (int i = 0; i < n; ++i) {
      auto result = from.Result(from.Send(OneToOne(alice, 1, to, absl::StrCat(label, i))));
      ASSERT_TRUE(result.has_value() && result->has_accepted());
    }
  }
  bool HasSubscription(const std::string& user) {
    const std::string key = channels::PushSubscriptionKey(user, 1);
    auto out = stack_->RedisCliForKey(key, {"EXISTS", key});
    return out.ok() && out->find('1') != std::string::npos;
  }

  PadlockStack* stack_ = nullptr;
  std::unique_ptr<AccountOps> ops_;
  std::string prefix_;
  TinyHttpServer server_;
};

TEST_F(PushE2eTest, OfflineDeviceGetsOneFixedSizeWakeUpPerIntervalThenEverything) {
  Account alice = MustRegister("alice");
  Account bob = MustRegister("bob");
  const Device bob_keys = NewDevice();
  Subscribe(bob, bob_keys, server_, "/push/bob");
  auto a1 = DeviceConn::Open(ops_->stub(), alice.primary_token);
  ASSERT_TRUE(a1->WaitConnected().has_value());

  // Bob is offline: five messages in a burst, one push.
  SendMessages(*a1, alice, bob, 5, "burst");
  ASSERT_TRUE(WaitFor([&] { return server_.requests_to("/push/bob").size() >= 1; },
                      absl::Seconds(20)));
  const absl::Time first = server_.requests_to("/push/bob")[0].received;
  // The body is the fixed-size wake-up, and only bob's keys open it.
  const notifier::ReceivedRequest push = server_.requests_to("/push/bob")[0];
  EXPECT_EQ(push.body.size(), notifier::kWakeUpBodyBytes);
  EXPECT_EQ(Decrypt(push.body, bob_keys),
            std::optional<std::string>(std::string(notifier::kWakeUpPlaintext)));
  EXPECT_EQ(push.headers.at("content-encoding"), "aes128gcm");
  EXPECT_EQ(push.headers.at("urgency"), "high");
  EXPECT_EQ(push.headers.at("topic"), "padlock-wake");
  EXPECT_TRUE(push.headers.at("authorization").rfind("vapid t=", 0) == 0);

  // After the interval, the next message pushes again — and the burst made no other push.
  ASSERT_TRUE(WaitFor([&] { return absl::Now() > first + kInterval + absl::Milliseconds(200); },
                      absl::Seconds(10)));
  SendMessages(*a1, alice, bob, 1, "later");
  ASSERT_TRUE(WaitFor([&] { return server_.requests_to("/push/bob").size() >= 2; },
                      absl::Seconds(20)));
  EXPECT_EQ(server_.requests_to("/push/bob").size(), 2u);
  EXPECT_GE(server_.requests_to("/push/bob")[1].received - first, kInterval);

  // Bob wakes up and connects: everything is there.
  auto b1 = DeviceConn::Open(ops_->stub(), bob.primary_token);
  ASSERT_TRUE(b1->WaitConnected().has_value());
  ASSERT_TRUE(b1->WaitEnvelopes(6));
  EXPECT_EQ(b1->Envelopes().size(), 6u);
}

TEST_F(PushE2eTest, OnlineDeviceGetsNoPush) {
  Account alice = MustRegister("alice");
  Account carol = MustRegister("carol");
  Account dan = MustRegister("dan");
  Subscribe(carol, NewDevice(), server_, "/push/carol");
  Subscribe(dan, NewDevice(), server_, "/push/dan");
  auto a1 = DeviceConn::Open(ops_->stub(), alice.primary_token);
  ASSERT_TRUE(a1->WaitConnected().has_value());
  auto c1 = DeviceConn::Open(ops_->stub(), carol.primary_token);
  ASSERT_TRUE(c1->WaitConnected().has_value());
  SendMessages(*a1, alice, carol, 3, "online");
  ASSERT_TRUE(c1->WaitEnvelopes(3));
  // A push to an offline device enqueued after carol's messages has arrived: carol got none.
  SendMessages(*a1, alice, dan, 1, "offline");
  ASSERT_TRUE(WaitFor([&] { return server_.requests_to("/push/dan").size() == 1; },
                      absl::Seconds(20)));
  EXPECT_TRUE(server_.requests_to("/push/carol").empty());
}

TEST_F(PushE2eTest, NotFoundAndGoneDeleteTheSubscription) {
  Account alice = MustRegister("alice");
  Account erin = MustRegister("erin");
  Account finn = MustRegister("finn");
  server_.SetResponseFor("/push/erin", "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n"
                                       "Connection: close\r\n\r\n");
  server_.SetResponseFor("/push/finn", "HTTP/1.1 410 Gone\r\nContent-Length: 0\r\n"
                                       "Connection: close\r\n\r\n");
  Subscribe(erin, NewDevice(), server_, "/push/erin");
  Subscribe(finn, NewDevice(), server_, "/push/finn");
  ASSERT_TRUE(HasSubscription(erin.user));
  auto a1 = DeviceConn::Open(ops_->stub(), alice.primary_token);
  ASSERT_TRUE(a1->WaitConnected().has_value());
  SendMessages(*a1, alice, erin, 1, "e");
  SendMessages(*a1, alice, finn, 1, "f");
  EXPECT_TRUE(WaitFor([&] { return !HasSubscription(erin.user); }, absl::Seconds(20)));
  EXPECT_TRUE(WaitFor([&] { return !HasSubscription(finn.user); }, absl::Seconds(20)));
  EXPECT_EQ(server_.requests_to("/push/erin").size(), 1u);
  EXPECT_EQ(server_.requests_to("/push/finn").size(), 1u);
}

TEST_F(PushE2eTest, TooManyRequestsWithRetryAfterIsHonoured) {
  // A push service of its own (its own origin): its 429 must not hold back the other tests.
  TinyHttpServer throttling;
  throttling.SetResponse("HTTP/1.1 429 Too Many Requests\r\nRetry-After: 3\r\n"
                         "Content-Length: 0\r\nConnection: close\r\n\r\n");
  Account alice = MustRegister("alice");
  Account gus = MustRegister("gus");
  Subscribe(gus, NewDevice(), throttling, "/push/gus");
  auto a1 = DeviceConn::Open(ops_->stub(), alice.primary_token);
  ASSERT_TRUE(a1->WaitConnected().has_value());
  SendMessages(*a1, alice, gus, 1, "g");
  ASSERT_TRUE(WaitFor([&] { return throttling.requests().size() >= 2; }, absl::Seconds(30)));
  const std::vector<notifier::ReceivedRequest> requests = throttling.requests();
  // No request before Retry-After: the retry came 3 s or more after the 429.
  EXPECT_GE(requests[1].received - requests[0].received, absl::Seconds(3));
}

}  // namespace
}  // namespace padlock::e2e
