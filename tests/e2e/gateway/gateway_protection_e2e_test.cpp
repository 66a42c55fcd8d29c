// The gateway's protections end to end, against the real binaries: TLS with the configured
// certificate, each rate limit tripping with its status, oversize sends refused while the stream
// lives on, the stream cap, and keepalive dropping a client that went silent.
#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "tests/e2e/gateway/e2e_client.h"
#include "tests/harness/stack.h"
#include "tests/harness/tcp_proxy.h"
#include "tests/unit/runtime/runtime_test_util.h"

namespace padlock::e2e {
namespace {

using testing::PadlockStack;
using testing::WaitFor;
using runtime::testing::ScrapeValue;

std::string MustToken(AccountOps& ops, const Account& account, uint32_t device) {
  auto token = ops.Login(account, device);
  EXPECT_TRUE(token.ok()) << token.status();
  return token.ok() ? *token : "";
}

// One gateway with small limits (production profile, limits set explicitly).
class GatewayLimitsTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    auto stack = PadlockStack::Start(
        {.gateways = 1,
         .gateway_env = {{"PADLOCK_RATE_LIMIT_PROFILE", "production"},
                         {"PADLOCK_REGISTER_BURST", "1000"},
                         {"PADLOCK_LOGIN_BURST", "1000"},
                         {"PADLOCK_SEND_BURST", "3"},
                         {"PADLOCK_SEND_RATE", "1"},
                         {"PADLOCK_MAX_SEND_BYTES", "4096"},
                         {"PADLOCK_MAX_STREAMS", "3"},
                         // Short enough for the silent-client test to see a drop within
                         // seconds, long enough that a loaded machine's live clients (every
                         // other test here) always answer a ping in time.
                         {"PADLOCK_KEEPALIVE_TIME", "1s"},
                         {"PADLOCK_KEEPALIVE_TIMEOUT", "2s"}}});
    ASSERT_TRUE(stack.ok()) << stack.status();
    stack_ = stack->release();
  }
  static void TearDownTestSuite() {
    delete stack_;
    stack_ = nullptr;
  }
  void SetUp() override {
    ASSERT_NE(stack_, nullptr);
    ops_ = std::make_unique<AccountOps>(
        grpc::CreateChannel(stack_->gateway_target(), grpc::InsecureChannelCredentials()));
    // Streams of the previous test are gone before this one starts.
    ASSERT_TRUE(WaitFor([] { return Streams() == 0; }, absl::Seconds(10)));
  }
  void TearDown() override {
    if (HasFailure()) std::cerr << stack_->Logs().substr(0, 20000);
  }
  static double Streams() {
    return ScrapeValue(stack_->gateway_metrics_port(), "padlock_gateway_streams", {});
  }
  Account MustRegister(const std::string& name) {
    auto account = ops_->Register(name);
    EXPECT_TRUE(account.ok()) << account.status();
    return account.ok() ? *std::move(account) : Account{};
  }

  static PadlockStack* stack_;
  std::unique_ptr<AccountOps> ops_;
};
PadlockStack* GatewayLimitsTest::stack_ = nullptr;

TEST_F(GatewayLimitsTest, OversizeSendIsRefusedAndTheStreamLivesOn) {
  Account alice = MustRegister("alice.oversize");
  Account bob = MustRegister("bob.oversize");
  auto a1 = DeviceConn::Open(ops_->stub(), MustToken(*ops_, alice, 1));
  ASSERT_TRUE(a1->WaitConnected());
  auto big = a1->Result(a1->Send(OneToOne(alice, 1, bob, std::string(5000, 'x'))));
  ASSERT_TRUE(big.has_value());
  ASSERT_TRUE(big->has_refused()) << big->DebugString();
  EXPECT_EQ(big->refused().code(), static_cast<int>(grpc::StatusCode::INVALID_ARGUMENT));
  EXPECT_NE(big->refused().message().find("exceeds the limit of 4096"), std::string::npos);
  auto small = a1->Result(a1->Send(OneToOne(alice, 1, bob, "small.oversize")));
  ASSERT_TRUE(small.has_value());
  EXPECT_TRUE(small->has_accepted()) << small->DebugString();
  EXPECT_FALSE(a1->ended());
}

TEST_F(GatewayLimitsTest, PerDeviceSendRateRefusesWithRetryAfter) {
  Account alice = MustRegister("alice.rate");
  Account bob = MustRegister("bob.rate");
  auto a1 = DeviceConn::Open(ops_->stub(), MustToken(*ops_, alice, 1));
  ASSERT_TRUE(a1->WaitConnected());
  std::vector<uint64_t> ids;
  for (int i = 0; i < 5; ++i) ids.push_back(a1->Send(OneToOne(alice, 1, bob, absl::StrCat("r", i))));
  int accepted = 0, limited = 0;
  for (uint64_t id : ids) {
    auto r = a1->Result(id);
    ASSERT_TRUE(r.has_value());
    if (r->has_accepted()) ++accepted;
    if (r->has_refused()) {
      EXPECT_EQ(r->refused().code(), static_cast<int>(grpc::StatusCode::RESOURCE_EXHAUSTED));
      EXPECT_GT(r->refused().retry_after_ms(), 0u);
      ++limited;
    }
  }
  // The burst of 3, plus at most one token per second refilled while the five sends arrive (the
  // slowest rate the gateway accepts): on a loaded machine that can be one more.
  EXPECT_GE(accepted, 3);
  EXPECT_GE(limited, 1);
  EXPECT_EQ(accepted + limited, 5);
  EXPECT_FALSE(a1->ended());
  EXPECT_GE(ScrapeValue(stack_->gateway_metrics_port(), "padlock_gateway_sends_rate_limited_total",
                        {}),
            2.0);
}

TEST_F(GatewayLimitsTest, StreamCapRefusesTheNextStream) {
  std::vector<std::unique_ptr<DeviceConn>> open;
  for (int i = 0; i < 3; ++i) {
    Account a = MustRegister(absl::StrCat("cap", i));
    open.push_back(DeviceConn::Open(ops_->stub(), MustToken(*ops_, a, 1)));
    ASSERT_TRUE(open.back()->WaitConnected());
  }
  Account extra = MustRegister("cap.extra");
  auto refused = DeviceConn::Open(ops_->stub(), MustToken(*ops_, extra, 1));
  auto status = refused->WaitEnded();
  ASSERT_TRUE(status.has_value());
  EXPECT_EQ(status->error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_NE(status->error_message().find("maximum of 3 streams"), std::string::npos);
  // One closes: the next one gets in.
  open.pop_back();
  ASSERT_TRUE(WaitFor([] { return Streams() == 2; }, absl::Seconds(10)));
  auto admitted = DeviceConn::Open(ops_->stub(), MustToken(*ops_, extra, 1));
  EXPECT_TRUE(admitted->WaitConnected().has_value());
}

TEST_F(GatewayLimitsTest, KeepaliveDropsASilentClient) {
  Account alice = MustRegister("alice.silent");
  testing::TcpProxy proxy(stack_->gateway_port());
  AccountOps via_proxy(grpc::CreateChannel(absl::StrCat("127.0.0.1:", proxy.port()),
                                           grpc::InsecureChannelCredentials()));
  auto conn = DeviceConn::Open(via_proxy.stub(), MustToken(*ops_, alice, 1));
  ASSERT_TRUE(conn->WaitConnected());
  ASSERT_EQ(Streams(), 1.0);
  proxy.Freeze();  // the client stops answering anything, pings included
  EXPECT_TRUE(WaitFor([] { return Streams() == 0; }, absl::Seconds(15)))
      << "the gateway kept a silent client's stream";
}

// Per-address limits on registration and login (Redis token buckets shared by replicas), and the
// key-directory's claim limits per requester and per target, passed through with retry-after.
TEST(GatewayAddressLimitsTest, RegistrationLoginAndClaimLimitsTripWithRetryAfter) {
  auto stack = PadlockStack::Start({.gateway_env = {{"PADLOCK_RATE_LIMIT_PROFILE", "production"},
                                                    {"PADLOCK_REGISTER_BURST", "3"},
                                                    {"PADLOCK_LOGIN_BURST", "4"},
                                                    {"PADLOCK_LOGIN_REFILL", "1h"}},
                                    .service_env = {{"PADLOCK_CLAIMS_PER_REQUESTER_BURST", "2"},
                                                    {"PADLOCK_CLAIMS_PER_TARGET_BURST", "2"}}});
  ASSERT_TRUE(stack.ok()) << stack.status();
  AccountOps ops(
      grpc::CreateChannel((*stack)->gateway_target(), grpc::InsecureChannelCredentials()));
  auto alice = ops.Register("alice.limits");  // register 1, login 1
  ASSERT_TRUE(alice.ok()) << alice.status();
  auto bob = ops.Register("bob.limits");  // register 2, login 2
  ASSERT_TRUE(bob.ok()) << bob.status();
  auto carol = ops.Register("carol.limits");  // register 3, login 3
  ASSERT_TRUE(carol.ok()) << carol.status();
  auto dave = ops.Register("dave.limits");  // register 4: over
  EXPECT_EQ(dave.status().code(), absl::StatusCode::kResourceExhausted) << dave.status();
  EXPECT_TRUE(ops.Login(*alice, 1).ok());  // login 4
  auto over = ops.Login(*alice, 1);        // login 5: over
  EXPECT_EQ(over.status().code(), absl::StatusCode::kResourceExhausted) << over.status();
  EXPECT_NE(std::string(over.status().message()).find("retry after"), std::string::npos);

  auto claim = [&](const Account& requester, const Account& target) {
    pb::GatewayClaimBundlesRequest request;
    request.set_user_id(target.user);
    pb::ClaimBundlesResponse response;
    grpc::ClientContext context;
    Authorize(context, requester.primary_token);
    grpc::Status status = ops.stub().ClaimBundles(&context, request, &response);
    std::string retry_after;
    const auto& trailers = context.GetServerTrailingMetadata();
    if (auto it = trailers.find("retry-after-ms"); it != trailers.end()) {
      retry_after.assign(it->second.data(), it->second.size());
    }
    return std::pair{status, retry_after};
  };
  // Per target: bob can be claimed twice (by anyone), then not.
  EXPECT_TRUE(claim(*alice, *bob).first.ok());
  EXPECT_TRUE(claim(*carol, *bob).first.ok());
  auto [target_limited, target_retry] = claim(*alice, *bob);
  EXPECT_EQ(target_limited.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_FALSE(target_retry.empty());
  // Per requester: bob may claim twice (different targets), then not.
  EXPECT_TRUE(claim(*bob, *alice).first.ok());
  EXPECT_TRUE(claim(*bob, *carol).first.ok());
  auto [requester_limited, requester_retry] = claim(*bob, *carol);
  EXPECT_EQ(requester_limited.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_FALSE(requester_retry.empty());
}

// TLS on the public port with the configured certificate: a client trusting it logs in and
// streams; a plaintext client gets nowhere.
TEST(GatewayTlsTest, ServesTlsWithTheConfiguredCertificate) {
  testing::TempDir dir;
  const std::string cert = dir.path() + "/cert.pem";
  const std::string key = dir.path() + "/key.pem";
  const std::string command = absl::StrCat(
      "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 1 "
      "-subj /CN=localhost -addext subjectAltName=IP:127.0.0.1,DNS:localhost -keyout ",
      key, " -out ", cert, " 2>/dev/null");
  ASSERT_EQ(std::system(command.c_str()), 0);
  auto stack = PadlockStack::Start(
      {.gateway_env = {{"PADLOCK_TLS", "on"}, {"PADLOCK_TLS_CERT", cert}, {"PADLOCK_TLS_KEY", key}}});
  ASSERT_TRUE(stack.ok()) << stack.status();
  AccountOps tls(grpc::CreateChannel((*stack)->gateway_target(), (*stack)->gateway_credentials()));
  auto alice = tls.Register("alice.tls");
  ASSERT_TRUE(alice.ok()) << alice.status();
  auto conn = DeviceConn::Open(tls.stub(), alice->primary_token);
  EXPECT_TRUE(conn->WaitConnected().has_value());

  AccountOps plain(
      grpc::CreateChannel((*stack)->gateway_target(), grpc::InsecureChannelCredentials()));
  pb::GetChallengeRequest request;
  request.mutable_device()->set_user_id("alice.tls");
  request.mutable_device()->set_device_id(1);
  pb::GetChallengeResponse response;
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
  EXPECT_EQ(plain.stub().GetChallenge(&context, request, &response).error_code(),
            grpc::StatusCode::UNAVAILABLE);
}

}  // namespace
}  // namespace padlock::e2e
