// GatewayClient and GatewayStream against an in-process fake gateway on a loopback port (real
// gRPC, no services): login with a real identity-key signature over the shared login statement,
// re-login after UNAUTHENTICATED, retry-after from trailing metadata, an unreachable gateway, and
// a device stream that reconnects after a transport fault.
#include "clients/sdk/gateway_client.h"

#include <atomic>
#include <memory>
#include <mutex>
#include <set>
#include <string>

#include "absl/strings/str_cat.h"
#include "clients/sdk/crypto_provider.h"
#include "clients/sdk/identity.h"
#include "common/statement/signature.h"
#include "common/statement/signed_statement.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"

namespace padlock::client {
namespace {

constexpr char kAudience[] = "test-audience";

class FakeGateway final : public padlock::v1::Gateway::Service {
 public:
  explicit FakeGateway(std::string public_key) : public_key_(std::move(public_key)) {}

  grpc::Status GetChallenge(grpc::ServerContext*, const padlock::v1::GetChallengeRequest*,
                            padlock::v1::GetChallengeResponse* response) override {
    std::lock_guard<std::mutex> lock(mu_);
    const std::string challenge = absl::StrCat("challenge-", ++challenges_, std::string(20, 'x'));
    outstanding_.insert(challenge);
    response->set_challenge(challenge);
    response->set_audience(kAudience);
    return grpc::Status::OK;
  }

  grpc::Status Login(grpc::ServerContext*, const padlock::v1::LoginRequest* request,
                     padlock::v1::LoginResponse* response) override {
    std::lock_guard<std::mutex> lock(mu_);
    const bool fresh = outstanding_.erase(request->challenge()) == 1;
    const std::string statement =
        statement::EncodeLogin(request->device().user_id(), request->device().device_id(),
                               request->challenge(), kAudience);
    if (!fresh || !statement::VerifySignature(public_key_, statement, request->signature())) {
      return grpc::Status(grpc::StatusCode::UNAUTHENTICATED, "login failed");
    }
    const std::string token = absl::StrCat("token-", ++logins_);
    valid_.insert(token);
    response->set_token(token);
    response->set_expires_at_ms(absl::ToUnixMillis(absl::Now() + absl::Hours(1)));
    return grpc::Status::OK;
  }

  grpc::Status GetDeviceList(grpc::ServerContext* context,
                             const padlock::v1::GetDeviceListRequest* request,
                             padlock::v1::GetDeviceListResponse* response) override {
    std::lock_guard<std::mutex> lock(mu_);
    const std::string token = TokenOf(context);
    // The first token "expires" at its first use: the client must log in again and retry.
    if (token == "token-1") valid_.erase(token);
    if (valid_.count(token) == 0) {
      return grpc::Status(grpc::StatusCode::UNAUTHENTICATED, "invalid or expired session token");
    }
    response->mutable_device_list()->mutable_list()->set_user_id(request->user_id());
    return grpc::Status::OK;
  }

  grpc::Status ClaimBundles(grpc::ServerContext* context,
                            const padlock::v1::GatewayClaimBundlesRequest*,
                            padlock::v1::ClaimBundlesResponse*) override {
    context->AddTrailingMetadata("retry-after-ms", "2500");
    return grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED, "claim rate limit");
  }

  grpc::Status Connect(
      grpc::ServerContext* context,
      grpc::ServerReaderWriter<padlock::v1::ServerFrame, padlock::v1::ClientFrame>* stream)
      override {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (valid_.count(TokenOf(context)) == 0) {
        return grpc::Status(grpc::StatusCode::UNAUTHENTICATED, "invalid or expired token");
      }
    }
    const int n = ++connects_;
    padlock::v1::ServerFrame connected;
    connected.mutable_connected()->set_epoch(static_cast<uint64_t>(n));
    stream->Write(connected);
    if (n == 1) {
      padlock::v1::ServerFrame deliver;
      deliver.mutable_deliver()->add_envelopes()->set_server_id("1-0");
      stream->Write(deliver);
      return grpc::Status(grpc::StatusCode::UNAVAILABLE, "simulated transport fault");
    }
    padlock::v1::ClientFrame frame;
    while (stream->Read(&frame)) {
      if (frame.frame_case() == padlock::v1::ClientFrame::kPing) {
        padlock::v1::ServerFrame pong;
        pong.set_pong(frame.ping());
        stream->Write(pong);
      }
    }
    return grpc::Status::OK;
  }

  int logins() {
    std::lock_guard<std::mutex> lock(mu_);
    return logins_;
  }
  int connects() const { return connects_; }

 private:
  static std::string TokenOf(grpc::ServerContext* context) {
    auto it = context->client_metadata().find("authorization");
    if (it == context->client_metadata().end()) return "";
    std::string value(it->second.data(), it->second.size());
    return value.rfind("Bearer ", 0) == 0 ? value.substr(7) : "";
  }

  const std::string public_key_;
  std::mutex mu_;
  int challenges_ = 0;
  int logins_ = 0;
  std::atomic<int> connects_{0};
  std::set<std::string> outstanding_;
  std::set<std::string> valid_;
};

class GatewayClientTest : public ::testing::Test {
 protected:
  void SetUp() override {
    context_ = *SignalContext::Create();
    identity_ = *GenerateIdentityKeyPair(*context_);
    service_ = std::make_unique<FakeGateway>(identity_.public_key);
    grpc::ServerBuilder builder;
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port_);
    builder.RegisterService(service_.get());
    server_ = builder.BuildAndStart();
    ASSERT_NE(server_, nullptr);
    GatewayClientOptions options;
    options.target = absl::StrCat("127.0.0.1:", port_);
    options.min_backoff = absl::Milliseconds(10);
    options.max_backoff = absl::Milliseconds(50);
    client_ = *GatewayClient::Create(options);
    padlock::v1::DeviceAddress self;
    self.set_user_id("alice");
    self.set_device_id(1);
    client_->SetDevice(self, Signer(identity_.private_key));
  }
  void TearDown() override {
    client_.reset();
    server_->Shutdown(std::chrono::system_clock::now());
  }

  LoginSigner Signer(std::string private_key) {
    SignalContext* context = context_.get();
    return [context, private_key](std::string_view statement) {
      return Sign(*context, private_key, statement);
    };
  }

  std::unique_ptr<SignalContext> context_;
  IdentityKeyPair identity_;
  std::unique_ptr<FakeGateway> service_;
  std::unique_ptr<grpc::Server> server_;
  int port_ = 0;
  std::unique_ptr<GatewayClient> client_;
};

TEST_F(GatewayClientTest, LogsInAndLogsInAgainWhenTheTokenIsRefused) {
  absl::StatusOr<padlock::v1::GetDeviceListResponse> list = client_->GetDeviceList("bob");
  ASSERT_TRUE(list.ok()) << list.status();
  EXPECT_EQ(list->device_list().list().user_id(), "bob");
  EXPECT_EQ(service_->logins(), 2);  // token-1 refused, token-2 used
  ASSERT_TRUE(client_->GetDeviceList("carol").ok());
  EXPECT_EQ(service_->logins(), 2);  // the token is reused
}

TEST_F(GatewayClientTest, LoginWithTheWrongKeyIsUnauthenticated) {
  IdentityKeyPair other = *GenerateIdentityKeyPair(*context_);
  padlock::v1::DeviceAddress self;
  self.set_user_id("alice");
  self.set_device_id(1);
  client_->SetDevice(self, Signer(other.private_key));
  absl::Status status = client_->Login();
  EXPECT_EQ(status.code(), absl::StatusCode::kUnauthenticated) << status;
  EXPECT_EQ(client_->GetDeviceList("bob").status().code(), absl::StatusCode::kUnauthenticated);
}

TEST_F(GatewayClientTest, ResourceExhaustedCarriesRetryAfter) {
  absl::Status status = client_->ClaimBundles("bob", 0).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kResourceExhausted);
  ASSERT_TRUE(RetryAfter(status).has_value()) << status;
  EXPECT_EQ(*RetryAfter(status), absl::Milliseconds(2500));
}

TEST(GatewayClientUnreachable, LoginIsUnavailable) {
  GatewayClientOptions options;
  options.target = "127.0.0.1:1";  // nothing listens on port 1
  options.call_timeout = absl::Seconds(5);
  auto client = *GatewayClient::Create(options);
  padlock::v1::DeviceAddress self;
  self.set_user_id("alice");
  self.set_device_id(1);
  client->SetDevice(self, [](std::string_view) { return std::string(64, 'x'); });
  EXPECT_EQ(client->Login().code(), absl::StatusCode::kUnavailable);
}

TEST_F(GatewayClientTest, GatewayStreamReconnectsAfterATransportFault) {
  std::unique_ptr<GatewayStream> stream = GatewayStream::Start(*client_);
  auto next_frame = [&]() -> padlock::v1::ServerFrame {
    for (int i = 0; i < 50; ++i) {
      std::optional<StreamEvent> e = stream->Next(absl::Seconds(10));
      if (!e.has_value()) break;
      if (e->kind == StreamEvent::Kind::kFrame) return e->frame;
      EXPECT_EQ(e->kind, StreamEvent::Kind::kDisconnected) << e->status;
    }
    ADD_FAILURE() << "no frame";
    return {};
  };
  padlock::v1::ServerFrame first = next_frame();
  ASSERT_TRUE(first.has_connected());
  EXPECT_EQ(first.connected().epoch(), 1u);
  padlock::v1::ServerFrame deliver = next_frame();
  ASSERT_TRUE(deliver.has_deliver());
  EXPECT_EQ(deliver.deliver().envelopes(0).server_id(), "1-0");
  padlock::v1::ServerFrame second = next_frame();  // after the fault and a backoff
  ASSERT_TRUE(second.has_connected());
  EXPECT_EQ(second.connected().epoch(), 2u);
  EXPECT_TRUE(stream->connected());  // set before the `connected` frame is handed out
  padlock::v1::ClientFrame ping;
  ping.set_ping(42);
  ASSERT_TRUE(stream->Write(ping).ok());
  padlock::v1::ServerFrame pong = next_frame();
  EXPECT_EQ(pong.pong(), 42u);
  stream->Stop();
  EXPECT_EQ(service_->connects(), 2);
}

}  // namespace
}  // namespace padlock::client
