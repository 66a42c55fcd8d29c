// The notifier's parts wired as main.cpp wires them — the gRPC service on a ServiceRunner
// (port 0), the dispatcher, the Redis subscription store on a real redis-server, the libcurl client and the
// timer — against a tiny HTTP push service on 127.0.0.1 (allow-listed, as the local stack does).
#include <grpcpp/grpcpp.h>

#include <memory>
#include <mutex>
#include <random>
#include <string>

#include <openssl/evp.h>
#include <openssl/pem.h>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "padlock/v1/gateway.pb.h"
#include "padlock/v1/notifier.grpc.pb.h"
#include "services/common/channels/device_channel.h"
#include "services/common/redis/redis_client.h"
#include "services/common/runtime/executor.h"
#include "services/common/runtime/server.h"
#include "services/notifier/curl_push_client.h"
#include "services/notifier/notifier_service.h"
#include "services/notifier/push_dispatcher.h"
#include "services/notifier/redis_subscription_store.h"
#include "services/notifier/timer_scheduler.h"
#include "services/notifier/web_push.h"
#include "tests/harness/harness.h"
#include "tests/harness/redis_server.h"
#include "tests/unit/notifier/tiny_http_server.h"

namespace padlock::notifier {
namespace {

namespace v1 = padlock::v1;
using padlock::testing::WaitFor;

std::string NewVapidPem() {
  EVP_PKEY* key = EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-256");
  BIO* bio = BIO_new(BIO_s_mem());
  PEM_write_bio_PrivateKey(bio, key, nullptr, nullptr, 0, nullptr, nullptr);
  char* data = nullptr;
  const long length = BIO_get_mem_data(bio, &data);
  std::string pem(data, static_cast<size_t>(length));
  BIO_free(bio);
  EVP_PKEY_free(key);
  return pem;
}

std::string NewP256dh() {
  EVP_PKEY* key = EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-256");
  std::string point(65, '\0');
  size_t length = 0;
  EVP_PKEY_get_octet_string_param(key, "encoded-pub-key",
                                  reinterpret_cast<unsigned char*>(point.data()), 65, &length);
  EVP_PKEY_free(key);
  return point;
}

class NotifierIntegrationTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    auto redis = padlock::testing::RedisServer::Start();
    ASSERT_TRUE(redis.ok()) << redis.status();
    redis_server_ = redis->release();
  }
  static void TearDownTestSuite() {
    delete redis_server_;
    redis_server_ = nullptr;
  }

  void SetUp() override {
    ASSERT_NE(redis_server_, nullptr);
    ASSERT_TRUE(redis_server_->FlushAll().ok());
    redis::RedisOptions options;
    options.addresses = {redis_server_->address()};
    redis_ = *redis::RedisClient::Create(options);
    signer_ = *VapidSigner::FromPem(NewVapidPem(), "mailto:ops@example.org", &clock_);
    CurlPushClientOptions http;
    http.allowed_hosts = {"127.0.0.1"};
    http.timeout = absl::Seconds(10);
    http_ = *CurlPushClient::Create(http);
    store_ = std::make_unique<RedisSubscriptionStore>(redis_.get());
    executor_ = std::make_unique<runtime::BoundedExecutor>("notifier", 2, 100);
    scheduler_ = std::make_unique<TimerScheduler>(executor_.get(), nullptr);
    gate_ = std::make_unique<OriginGate>(&clock_);
    DispatcherOptions dispatch;
    dispatch.retry.max_retries = 0;
    dispatcher_ = std::make_unique<PushDispatcher>(dispatch, store_.get(), http_.get(),
                                                   signer_.get(), gate_.get(), scheduler_.get(),
                                                   &clock_, [] { return 0.5; }, nullptr);
    service_ = std::make_unique<NotifierService>(dispatcher_.get(), executor_.get(), nullptr);
    runtime::ServerOptions server_options;
    server_options.service_name = "notifier";
    server_options.listen_address = "127.0.0.1:0";
    server_options.metrics_host = "127.0.0.1";
    server_options.metrics_port = 0;
    server_options.handle_signals = false;
    server_options.grace_period = absl::Seconds(1);
    runner_ = std::make_unique<runtime::ServiceRunner>(server_options);
    runner_->AddService(service_.get());
    ASSERT_TRUE(runner_->Start().ok());
    stub_ = v1::Notifier::NewStub(grpc::CreateChannel(
        absl::StrCat("127.0.0.1:", runner_->grpc_port()), grpc::InsecureChannelCredentials()));
  }
  void TearDown() override {
    runner_->RequestShutdown();
    runner_->Wait();
    scheduler_->Stop();
    http_.reset();
    executor_->Shutdown();
  }

  void Subscribe(const std::string& user, const std::string& path) {
    v1::PushSubscription value;
    value.set_endpoint(absl::StrCat("http://127.0.0.1:", server_.port(), path));
    value.set_p256dh(NewP256dh());
    value.set_auth(std::string(16, 'a'));
    auto reply = redis_->Execute(redis::Command::Keyed(
        {"SET", channels::PushSubscriptionKey(user, 1), value.SerializeAsString()}, 1));
    ASSERT_TRUE(reply.ok() && !reply->is_error());
  }
  bool HasSubscription(const std::string& user) {
    auto reply = redis_->Execute(
        redis::Command::Keyed({"EXISTS", channels::PushSubscriptionKey(user, 1)}, 1));
    return reply.ok() && reply->integer() == 1;
  }
  grpc::Status Notify(const std::vector<std::string>& users, v1::NotifyResponse* response) {
    v1::NotifyRequest request;
    for (const std::string& user : users) {
      v1::PushWake* wake = request.add_wakes();
      wake->mutable_device()->set_user_id(user);
      wake->mutable_device()->set_device_id(1);
      wake->set_enqueued_at_ms(static_cast<uint64_t>(absl::ToUnixMillis(absl::Now())));
    }
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    return stub_->Notify(&context, request, response);
  }

  static padlock::testing::RedisServer* redis_server_;
  runtime::SystemClock clock_;
  TinyHttpServer server_;
  std::unique_ptr<redis::RedisClient> redis_;
  std::unique_ptr<VapidSigner> signer_;
  std::unique_ptr<CurlPushClient> http_;
  std::unique_ptr<RedisSubscriptionStore> store_;
  std::unique_ptr<runtime::BoundedExecutor> executor_;
  std::unique_ptr<TimerScheduler> scheduler_;
  std::unique_ptr<OriginGate> gate_;
  std::unique_ptr<PushDispatcher> dispatcher_;
  std::unique_ptr<NotifierService> service_;
  std::unique_ptr<runtime::ServiceRunner> runner_;
  std::unique_ptr<v1::Notifier::Stub> stub_;
};

padlock::testing::RedisServer* NotifierIntegrationTest::redis_server_ = nullptr;

TEST_F(NotifierIntegrationTest, NotifyPostsOneWakeUpPerSubscribedDevice) {
  Subscribe("bob", "/push/bob");
  v1::NotifyResponse response;
  grpc::Status status = Notify({"bob", "nobody"}, &response);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(response.queued(), 2u);
  ASSERT_TRUE(WaitFor([&] { return server_.requests().size() == 1; }, absl::Seconds(10)));
  const ReceivedRequest request = server_.requests()[0];
  EXPECT_EQ(request.method, "POST");
  EXPECT_EQ(request.path, "/push/bob");
  EXPECT_EQ(request.body.size(), kWakeUpBodyBytes);
  EXPECT_EQ(request.headers.at("content-encoding"), "aes128gcm");
  EXPECT_EQ(request.headers.at("ttl"), "604800");
  EXPECT_EQ(request.headers.at("urgency"), "high");
  EXPECT_EQ(request.headers.at("topic"), "padlock-wake");
  EXPECT_TRUE(absl::StartsWith(request.headers.at("authorization"), "vapid t="));
  EXPECT_TRUE(HasSubscription("bob"));
}

TEST_F(NotifierIntegrationTest, GoneDeletesTheSubscriptionInRedis) {
  Subscribe("carol", "/push/carol");
  server_.SetResponse("HTTP/1.1 410 Gone\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
  v1::NotifyResponse response;
  ASSERT_TRUE(Notify({"carol"}, &response).ok());
  ASSERT_TRUE(WaitFor([&] { return !HasSubscription("carol"); }, absl::Seconds(10)));
  EXPECT_EQ(server_.requests().size(), 1u);
}

TEST_F(NotifierIntegrationTest, MalformedDeviceIsInvalidArgumentAndQueuesNothing) {
  Subscribe("bob", "/push/bob");
  v1::NotifyResponse response;
  grpc::Status status = Notify({"bob", "evil}:x"}, &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  // A valid call afterwards is answered: the bad one queued nothing before it.
  ASSERT_TRUE(Notify({"bob"}, &response).ok());
  ASSERT_TRUE(WaitFor([&] { return server_.requests().size() == 1; }, absl::Seconds(10)));
  EXPECT_EQ(server_.requests().size(), 1u);
}

}  // namespace
}  // namespace padlock::notifier
