// The gateway (this increment: login, tokens, unary relays) against real Redis and the real
// key-directory on a fresh PostgreSQL database, both in process on port 0 (ServiceRunner,
// handle_signals=false) built from the same adapters as the main.cpp files, through real gRPC.
// Servers start once per binary; every test gets a fresh database, a flushed Redis and new
// service instances.
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <chrono>
#include <future>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "clients/sdk/crypto_provider.h"
#include "clients/sdk/identity.h"
#include "common/statement/signed_statement.h"
#include "padlock/v1/gateway.grpc.pb.h"
#include "services/common/postgres/migrations.h"
#include "services/common/postgres/pool.h"
#include "services/common/ratelimit/redis_rate_limiter.h"
#include "services/common/redis/redis_client.h"
#include "services/common/runtime/executor.h"
#include "services/common/runtime/server.h"
#include "services/common/runtime/status.h"
#include "services/common/wiring/wiring.h"
#include "services/gateway/authenticator.h"
#include "services/gateway/gateway_service.h"
#include "services/gateway/key_directory_client.h"
#include "services/gateway/redis_adapters.h"
#include "services/gateway/session_token.h"
#include "services/key_directory/embedded_migrations.h"
#include "services/key_directory/key_directory_service.h"
#include "services/key_directory/postgres_key_store.h"
#include "services/key_directory/redis_adapters.h"
#include "tests/harness/harness.h"
#include "tests/harness/postgres_server.h"
#include "tests/harness/redis_modes.h"
#include "tests/harness/redis_server.h"
#include "tests/unit/key_directory/test_identities.h"

namespace padlock::gateway {
namespace {

namespace pb = padlock::v1;
namespace kd = padlock::key_directory;
using padlock::testing::WaitFor;

using Servers = padlock::testing::PostgresRedisEnvironment;
const auto* const kEnvironment = ::testing::AddGlobalTestEnvironment(new Servers);

const std::string kSecretA(32, 'A');
const std::string kSecretB(32, 'B');

void RegistrationToProto(const kd::Registration& r, pb::RegisterRequest* out) {
  out->set_user_id(r.user_id);
  out->set_identity_key(r.identity_key);
  out->set_registration_id(r.registration_id);
  out->mutable_signed_prekey()->set_key_id(r.signed_prekey->key_id);
  out->mutable_signed_prekey()->set_public_key(r.signed_prekey->public_key);
  out->mutable_signed_prekey()->set_signature(r.signed_prekey->signature);
  for (const auto& k : r.one_time_prekeys) {
    auto* key = out->add_one_time_prekeys();
    key->set_key_id(k.key_id);
    key->set_public_key(k.public_key);
  }
  kd::ToProto(*r.device_list, out->mutable_device_list());
  out->set_registration_signature(r.registration_signature);
}

struct GatewayConfig {
  std::string secret = kSecretA;
  std::string previous = {};
  absl::Duration challenge_ttl = absl::Seconds(60);
  RateLimit register_limit = {.burst = 1e6, .per_second = 1e6};  // the test profile
  absl::Duration key_directory_deadline = absl::Seconds(2);
  std::string key_directory_target = {};  // empty: the fixture's key-directory
  int workers = 4;
  size_t queue = 256;
  size_t max_relays_in_flight = 4096;
};

// The gateway stack of services/gateway/main.cpp, in process.
class GatewayStack {
 public:
  GatewayStack(redis::RedisClient* redis, const std::string& key_directory_target,
               const GatewayConfig& config)
      : tokens_(config.secret, config.previous),
        challenges_(redis),
        limiter_(redis),
        key_directory_(wiring::MakeInternalChannel(config.key_directory_target.empty()
                                                       ? key_directory_target
                                                       : config.key_directory_target,
                                                   runtime::InternalTls{.insecure = true},
                                                   "key-directory"),
                       config.key_directory_deadline),
        executor_("gw-test", config.workers, config.queue) {
    runtime::ServerOptions options;
    options.service_name = "gateway";
    options.listen_address = "127.0.0.1:0";
    options.metrics_host = "127.0.0.1";
    options.grace_period = absl::Seconds(2);
    options.handle_signals = false;
    runner_ = std::make_unique<runtime::ServiceRunner>(options);
    auth_ = std::make_unique<Authenticator>(
        &challenges_, &key_directory_, &tokens_,
        AuthOptions{.audience = "padlock-test", .challenge_ttl = config.challenge_ttl,
                    .token_ttl = absl::Hours(1)},
        &runner_->metrics());
    service_ = std::make_unique<GatewayService>(
        auth_.get(), &key_directory_, &limiter_, &executor_,
        GatewayLimits{.register_per_address = config.register_limit,
                      .max_relays_in_flight = config.max_relays_in_flight},
        TurnOptions{},
        &runner_->metrics());
    runner_->AddService(service_.get());
    started_ = runner_->Start();
    stub_ = pb::Gateway::NewStub(grpc::CreateChannel(
        absl::StrCat("127.0.0.1:", runner_->grpc_port()), grpc::InsecureChannelCredentials()));
  }
  ~GatewayStack() {
    runner_->RequestShutdown();
    runner_->Wait();
    executor_.Shutdown();
  }
  const absl::Status& started() const { return started_; }
  pb::Gateway::Stub& stub() { return *stub_; }
  const SessionTokens& tokens() const { return tokens_; }
  runtime::BoundedExecutor& executor() { return executor_; }
  // padlock_gateway_relays_in_flight as exported (-1 when absent).
  double RelaysInFlightGauge() {
    for (const auto& family : runner_->metrics().Collect()) {
      if (family.name != "padlock_gateway_relays_in_flight") continue;
      for (const auto& metric : family.metric) return metric.gauge.value;
    }
    return -1;
  }
  GatewayService& service() { return *service_; }

 private:
  SessionTokens tokens_;
  RedisChallengeStore challenges_;
  ratelimit::RedisRateLimiter limiter_;
  KeyDirectoryClient key_directory_;
  runtime::BoundedExecutor executor_;
  std::unique_ptr<runtime::ServiceRunner> runner_;
  std::unique_ptr<Authenticator> auth_;
  std::unique_ptr<GatewayService> service_;
  std::unique_ptr<pb::Gateway::Stub> stub_;
  absl::Status started_;
};

class GatewayIntegration : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(Servers::redis()->FlushAll().ok());
    auto db = Servers::postgres()->CreateFreshDatabase();
    ASSERT_TRUE(db.ok()) << db.status();
    const std::string conninfo = Servers::postgres()->ConnInfo(*db);
    ASSERT_TRUE(postgres::Migrate({.conninfo = conninfo}, kd::EmbeddedMigrations()).ok());
    auto pool = postgres::Pool::Create(
        {.conninfo = conninfo, .size = 4, .statements = kd::PostgresKeyStore::Statements()});
    ASSERT_TRUE(pool.ok()) << pool.status();
    pool_ = *std::move(pool);
    redis::RedisOptions redis_options;
    redis_options.addresses = {Servers::redis()->address()};
    redis_options.pool_size = 4;
    auto redis = redis::RedisClient::Create(redis_options);
    ASSERT_TRUE(redis.ok());
    redis_ = *std::move(redis);
    store_ = std::make_unique<kd::PostgresKeyStore>(pool_.get(), nullptr);
    invites_ = std::make_unique<kd::RedisInviteStore>(redis_.get());
    kd_limiter_ = std::make_unique<ratelimit::RedisRateLimiter>(redis_.get());
    publisher_ = std::make_unique<kd::RedisDeviceEventPublisher>(redis_.get());
    summaries_ = std::make_unique<kd::RedisDeviceListSummaries>(
        redis_.get(), kd::RedisDeviceListSummaries::Options{});
    kd_executor_ = std::make_unique<runtime::BoundedExecutor>("kd-test", 4, 256);
    runtime::ServerOptions options;
    options.service_name = "key-directory";
    options.listen_address = "127.0.0.1:0";
    options.metrics_host = "127.0.0.1";
    options.grace_period = absl::Seconds(2);
    options.handle_signals = false;
    kd_runner_ = std::make_unique<runtime::ServiceRunner>(options);
    registry_ = std::make_unique<kd::KeyRegistry>(
        store_.get(), invites_.get(), kd_limiter_.get(), publisher_.get(), summaries_.get(),
        kd::RegistryOptions{.claims_per_requester = {.burst = 1e5, .per_second = 1e5},
                            .claims_per_target = {.burst = 1e5, .per_second = 1e5}});
    kd_service_ = std::make_unique<kd::KeyDirectoryService>(registry_.get(), kd_executor_.get());
    kd_runner_->AddService(kd_service_.get());
    ASSERT_TRUE(kd_runner_->Start().ok());
    kd_target_ = absl::StrCat("127.0.0.1:", kd_runner_->grpc_port());
    auto signal = client::SignalContext::Create();
    ASSERT_TRUE(signal.ok());
    signal_ = *std::move(signal);
    StartGateway({});
  }

  void TearDown() override {
    gateway_.reset();
    if (kd_runner_) {
      kd_runner_->RequestShutdown();
      kd_runner_->Wait();
    }
    kd_executor_.reset();
    kd_service_.reset();
    registry_.reset();
  }

  void StartGateway(const GatewayConfig& config) {
    gateway_.reset();
    gateway_ = std::make_unique<GatewayStack>(redis_.get(), kd_target_, config);
    ASSERT_TRUE(gateway_->started().ok()) << gateway_->started();
  }
  pb::Gateway::Stub& gw() { return gateway_->stub(); }

  // Registers `user` through the gateway with a fresh primary device holding `prekeys` keys.
  kd::testing::TestDevice RegisterUser(const std::string& user, uint32_t prekeys = 5) {
    kd::testing::TestDevice device = keys_.NewDevice(1, prekeys);
    pb::RegisterRequest request;
    RegistrationToProto(keys_.MakeRegistration(user, device), &request);
    pb::RegisterResponse response;
    grpc::ClientContext context;
    grpc::Status status = gw().Register(&context, request, &response);
    EXPECT_TRUE(status.ok()) << status.error_message();
    EXPECT_EQ(response.device_id(), 1u);
    return device;
  }

  absl::StatusOr<pb::GetChallengeResponse> Challenge(const std::string& user, uint32_t device) {
    pb::GetChallengeRequest request;
    request.mutable_device()->set_user_id(user);
    request.mutable_device()->set_device_id(device);
    pb::GetChallengeResponse response;
    grpc::ClientContext context;
    grpc::Status status = gw().GetChallenge(&context, request, &response);
    if (!status.ok()) return runtime::FromGrpcStatus(status);
    return response;
  }

  // The client's side of login: the statement signed with the SDK.
  std::string SignLogin(const client::IdentityKeyPair& key, const std::string& user,
                        uint32_t device, const pb::GetChallengeResponse& challenge) {
    auto signature = client::Sign(*signal_, key.private_key,
                                  statement::EncodeLogin(user, device, challenge.challenge(),
                                                         challenge.audience()));
    EXPECT_TRUE(signature.ok()) << signature.status();
    return signature.ok() ? *signature : "";
  }

  grpc::Status Login(const std::string& user, uint32_t device, const std::string& challenge,
                     const std::string& signature, pb::LoginResponse* response) {
    pb::LoginRequest request;
    request.mutable_device()->set_user_id(user);
    request.mutable_device()->set_device_id(device);
    request.set_challenge(challenge);
    request.set_signature(signature);
    grpc::ClientContext context;
    return gw().Login(&context, request, response);
  }

  // GetChallenge → sign → Login; the token.
  std::string LogIn(const std::string& user, const kd::testing::TestDevice& device) {
    auto challenge = Challenge(user, device.device_id);
    EXPECT_TRUE(challenge.ok()) << challenge.status();
    if (!challenge.ok()) return "";
    pb::LoginResponse response;
    grpc::Status status =
        Login(user, device.device_id, challenge->challenge(),
              SignLogin(device.identity, user, device.device_id, *challenge), &response);
    EXPECT_TRUE(status.ok()) << status.error_message();
    return response.token();
  }

  static void Authorize(grpc::ClientContext& context, const std::string& token) {
    context.AddMetadata("authorization", absl::StrCat("Bearer ", token));
  }

  grpc::Status GetDeviceList(const std::string& token, const std::string& user,
                             pb::GetDeviceListResponse* response = nullptr) {
    pb::GetDeviceListResponse ignored;
    pb::GetDeviceListRequest request;
    request.set_user_id(user);
    grpc::ClientContext context;
    if (!token.empty()) Authorize(context, token);
    return gw().GetDeviceList(&context, request, response ? response : &ignored);
  }

  // ClaimBundles of `user`'s device `device` (0: every device) as the bearer of `token` (none when
  // empty).
  grpc::Status ClaimBundles(const std::string& token, const std::string& user, uint32_t device,
                            pb::ClaimBundlesResponse* response = nullptr) {
    pb::ClaimBundlesResponse ignored;
    pb::GatewayClaimBundlesRequest request;
    request.set_user_id(user);
    request.set_device_id(device);
    grpc::ClientContext context;
    if (!token.empty()) Authorize(context, token);
    return gw().ClaimBundles(&context, request, response ? response : &ignored);
  }

  static void ExpectLoginFailed(const grpc::Status& status) {
    EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAUTHENTICATED) << status.error_message();
    EXPECT_EQ(status.error_message(), kLoginFailedMessage);
  }
  static void ExpectInvalidToken(const grpc::Status& status) {
    EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAUTHENTICATED) << status.error_message();
    EXPECT_EQ(status.error_message(), kInvalidTokenMessage);
  }

  kd::testing::TestKeys keys_;
  std::unique_ptr<client::SignalContext> signal_;
  std::unique_ptr<postgres::Pool> pool_;
  std::unique_ptr<redis::RedisClient> redis_;
  std::unique_ptr<kd::PostgresKeyStore> store_;
  std::unique_ptr<kd::RedisInviteStore> invites_;
  std::unique_ptr<ratelimit::RedisRateLimiter> kd_limiter_;
  std::unique_ptr<kd::RedisDeviceEventPublisher> publisher_;
  std::unique_ptr<kd::RedisDeviceListSummaries> summaries_;
  std::unique_ptr<runtime::BoundedExecutor> kd_executor_;
  std::unique_ptr<runtime::ServiceRunner> kd_runner_;
  std::unique_ptr<kd::KeyRegistry> registry_;
  std::unique_ptr<kd::KeyDirectoryService> kd_service_;
  std::string kd_target_;
  std::unique_ptr<GatewayStack> gateway_;
};

TEST_F(GatewayIntegration, LoginThenRelaysSucceed) {
  kd::testing::TestDevice alice = RegisterUser("alice", 2);
  kd::testing::TestDevice bob = RegisterUser("bob", 3);
  const std::string token = LogIn("alice", alice);
  ASSERT_FALSE(token.empty());

  // PublishPreKeys: the token's device is the one whose keys these are.
  pb::GatewayPublishPreKeysRequest publish;
  for (const auto& k : keys_.NewPreKeys(100, 4)) {
    auto* key = publish.add_one_time_prekeys();
    key->set_key_id(k.key_id);
    key->set_public_key(k.public_key);
  }
  pb::PublishPreKeysResponse published;
  {
    grpc::ClientContext context;
    Authorize(context, token);
    grpc::Status status = gw().PublishPreKeys(&context, publish, &published);
    ASSERT_TRUE(status.ok()) << status.error_message();
  }
  EXPECT_EQ(published.one_time_prekeys_remaining(), 6u);

  // GetDeviceList of another user.
  pb::GetDeviceListResponse list;
  ASSERT_TRUE(GetDeviceList(token, "bob", &list).ok());
  EXPECT_EQ(list.device_list().list().user_id(), "bob");
  EXPECT_EQ(list.device_list().list().version(), 1u);

  // ClaimBundles of bob's device 1 takes one of his one-time prekeys.
  pb::ClaimBundlesResponse bundles;
  {
    grpc::Status status = ClaimBundles(token, "bob", 1, &bundles);
    ASSERT_TRUE(status.ok()) << status.error_message();
  }
  ASSERT_EQ(bundles.bundles_size(), 1);
  EXPECT_EQ(bundles.bundles(0).identity_key(), bob.identity.public_key);
  EXPECT_EQ(bundles.device_list().list().version(), 1u);

  // Key-directory status codes pass through (NOT_FOUND for an unknown user).
  EXPECT_EQ(GetDeviceList(token, "carol").error_code(), grpc::StatusCode::NOT_FOUND);
}

// A claim never waits for the gateway's executor: with its one worker busy and its queue full
// (an offloaded rpc is refused), a claim still relays and succeeds.
TEST_F(GatewayIntegration, ClaimRelaysWithoutTheExecutor) {
  StartGateway({.workers = 1, .queue = 1});
  kd::testing::TestDevice alice = RegisterUser("alice");
  kd::testing::TestDevice bob = RegisterUser("bob", 2);
  const std::string token = LogIn("alice", alice);
  ASSERT_FALSE(token.empty());

  std::promise<void> release;
  std::shared_future<void> released = release.get_future().share();
  std::promise<void> started;
  ASSERT_TRUE(gateway_->executor()
                  .Submit([&started, released] {
                    started.set_value();
                    released.wait();
                  })
                  .ok());
  ASSERT_EQ(started.get_future().wait_for(std::chrono::seconds(10)), std::future_status::ready);
  ASSERT_TRUE(gateway_->executor().Submit([] {}).ok());  // the queue's one place
  EXPECT_EQ(GetDeviceList(token, "bob").error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);

  pb::ClaimBundlesResponse bundles;
  grpc::Status status = ClaimBundles(token, "bob", 1, &bundles);
  release.set_value();
  ASSERT_TRUE(status.ok()) << status.error_message();
  ASSERT_EQ(bundles.bundles_size(), 1);
  EXPECT_EQ(bundles.bundles(0).identity_key(), bob.identity.public_key);
  EXPECT_TRUE(bundles.bundles(0).has_one_time_prekey());
  EXPECT_EQ(gateway_->service().relays_in_flight(), 0u);
}

// The key-directory's UNAUTHENTICATED for an unlisted requester is the gateway's invalid token.
TEST_F(GatewayIntegration, ClaimByAnUnlistedDeviceIsRefusedAsAnInvalidToken) {
  RegisterUser("alice");
  const SessionClaims unlisted{.user_id = "alice",
                               .device_id = 2,
                               .device_list_version = 1,
                               .expires_at = absl::Now() + absl::Hours(1),
                               .key_id = ""};
  ExpectInvalidToken(ClaimBundles(gateway_->tokens().Issue(unlisted), "alice", 0));
}

// A key-directory whose ClaimBundles answers only when the test says so, to hold relays in
// flight; its other rpcs are UNIMPLEMENTED.
class HeldKeyDirectory final : public pb::KeyDirectory::CallbackService {
 public:
  grpc::ServerUnaryReactor* ClaimBundles(grpc::CallbackServerContext* context,
                                         const pb::ClaimBundlesRequest* /*request*/,
                                         pb::ClaimBundlesResponse* /*response*/) override {
    std::lock_guard lock(mu_);
    held_.push_back({context, context->DefaultReactor()});
    return held_.back().reactor;
  }
  size_t held() {
    std::lock_guard lock(mu_);
    return held_.size();
  }
  // Answers every held claim with `status`, and trailing `retry-after-ms` when not empty.
  void ReleaseAll(const grpc::Status& status, const std::string& retry_after = "") {
    std::vector<Held> held;
    {
      std::lock_guard lock(mu_);
      held.swap(held_);
    }
    for (const Held& h : held) {
      if (!retry_after.empty()) h.context->AddTrailingMetadata("retry-after-ms", retry_after);
      h.reactor->Finish(status);
    }
  }

 private:
  struct Held {
    grpc::CallbackServerContext* context;
    grpc::ServerUnaryReactor* reactor;
  };
  std::mutex mu_;
  std::vector<Held> held_;
};

class GatewayRelayIntegration : public GatewayIntegration {
 protected:
  void SetUp() override {
    GatewayIntegration::SetUp();
    runtime::ServerOptions options;
    options.service_name = "held-key-directory";
    options.listen_address = "127.0.0.1:0";
    options.metrics_host = "127.0.0.1";
    options.grace_period = absl::Seconds(2);
    options.handle_signals = false;
    held_runner_ = std::make_unique<runtime::ServiceRunner>(options);
    held_runner_->AddService(&held_);
    ASSERT_TRUE(held_runner_->Start().ok());
    held_target_ = absl::StrCat("127.0.0.1:", held_runner_->grpc_port());
  }
  void TearDown() override {
    held_.ReleaseAll(grpc::Status(grpc::StatusCode::CANCELLED, "test over"));
    // Every claim answered before its buffers go (a failed assertion may have left one pending).
    for (const auto& claim : pending_) {
      EXPECT_EQ(claim->result.wait_for(std::chrono::seconds(10)), std::future_status::ready);
    }
    gateway_.reset();
    if (held_runner_) {
      held_runner_->RequestShutdown();
      held_runner_->Wait();
    }
    GatewayIntegration::TearDown();
  }

  // A valid token of alice:1 (the held key-directory checks nothing).
  std::string Token() {
    return gateway_->tokens().Issue({.user_id = "alice",
                                     .device_id = 1,
                                     .device_list_version = 1,
                                     .expires_at = absl::Now() + absl::Hours(1),
                                     .key_id = ""});
  }

  // A claim through the gateway, answered later (owned by the fixture).
  struct PendingClaim {
    grpc::ClientContext context;
    pb::GatewayClaimBundlesRequest request;
    pb::ClaimBundlesResponse response;
    std::promise<grpc::Status> done;
    std::shared_future<grpc::Status> result = done.get_future().share();
  };
  PendingClaim* StartClaim() {
    PendingClaim* claim = pending_.emplace_back(std::make_unique<PendingClaim>()).get();
    Authorize(claim->context, Token());
    claim->request.set_user_id("bob");
    gw().async()->ClaimBundles(
        &claim->context, &claim->request, &claim->response,
        [claim](grpc::Status status) { claim->done.set_value(std::move(status)); });
    return claim;
  }

  grpc::Status Claim(grpc::ClientContext* context) {
    Authorize(*context, Token());
    pb::GatewayClaimBundlesRequest request;
    request.set_user_id("bob");
    pb::ClaimBundlesResponse response;
    return gw().ClaimBundles(context, request, &response);
  }

  HeldKeyDirectory held_;
  std::vector<std::unique_ptr<PendingClaim>> pending_;
  std::unique_ptr<runtime::ServiceRunner> held_runner_;
  std::string held_target_;
};

TEST_F(GatewayRelayIntegration, ClaimRelayPassesCodeMessageAndRetryAfterThrough) {
  StartGateway({.key_directory_target = held_target_});
  PendingClaim* claim = StartClaim();
  ASSERT_TRUE(WaitFor([&] { return held_.held() == 1; }, absl::Seconds(10)));
  EXPECT_EQ(gateway_->service().relays_in_flight(), 1u);
  EXPECT_EQ(gateway_->RelaysInFlightGauge(), 1);
  held_.ReleaseAll(grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED,
                                "bundle claims rate-limited; retry after 42 ms"),
                   "42");
  ASSERT_EQ(claim->result.wait_for(std::chrono::seconds(10)), std::future_status::ready);
  const grpc::Status status = claim->result.get();
  EXPECT_EQ(status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_EQ(status.error_message(), "bundle claims rate-limited; retry after 42 ms");
  const auto& trailers = claim->context.GetServerTrailingMetadata();
  auto it = trailers.find("retry-after-ms");
  ASSERT_NE(it, trailers.end());
  EXPECT_EQ(std::string(it->second.data(), it->second.size()), "42");
  EXPECT_EQ(gateway_->service().relays_in_flight(), 0u);
  EXPECT_EQ(gateway_->RelaysInFlightGauge(), 0);
}

TEST_F(GatewayRelayIntegration, RelaysBeyondTheBoundAreRefusedAtOnce) {
  StartGateway({.key_directory_target = held_target_, .max_relays_in_flight = 1});
  PendingClaim* first = StartClaim();
  ASSERT_TRUE(WaitFor([&] { return held_.held() == 1; }, absl::Seconds(10)));
  grpc::ClientContext context;
  const grpc::Status refused = Claim(&context);
  EXPECT_EQ(refused.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_EQ(refused.error_message(), "gateway busy: 1 key-directory calls in flight");
  EXPECT_EQ(held_.held(), 1u);  // the refused claim never reached the key-directory

  held_.ReleaseAll(grpc::Status::OK);
  ASSERT_EQ(first->result.wait_for(std::chrono::seconds(10)), std::future_status::ready);
  EXPECT_TRUE(first->result.get().ok()) << first->result.get().error_message();
  EXPECT_EQ(gateway_->service().relays_in_flight(), 0u);
}

TEST_F(GatewayRelayIntegration, ClaimRelayKeepsTheKeyDirectoryDeadline) {
  StartGateway({.key_directory_deadline = absl::Milliseconds(300),
                .key_directory_target = held_target_});
  grpc::ClientContext context;  // no deadline of its own
  const grpc::Status status = Claim(&context);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED) << status.error_message();
  EXPECT_EQ(gateway_->service().relays_in_flight(), 0u);
}

TEST_F(GatewayIntegration, LoginResponseCarriesDeviceListVersionAndExpiry) {
  kd::testing::TestDevice alice = RegisterUser("alice");
  auto challenge = Challenge("alice", 1);
  ASSERT_TRUE(challenge.ok());
  EXPECT_EQ(challenge->challenge().size(), 32u);
  EXPECT_EQ(challenge->audience(), "padlock-test");
  pb::LoginResponse response;
  ASSERT_TRUE(Login("alice", 1, challenge->challenge(),
                    SignLogin(alice.identity, "alice", 1, *challenge), &response)
                  .ok());
  EXPECT_EQ(response.device_list_version(), 1u);
  const int64_t in =
      static_cast<int64_t>(response.expires_at_ms()) - absl::ToUnixMillis(absl::Now());
  EXPECT_GT(in, 59 * 60 * 1000);
  EXPECT_LE(in, 60 * 60 * 1000);
}

TEST_F(GatewayIntegration, ReplayedChallengeFails) {
  kd::testing::TestDevice alice = RegisterUser("alice");
  auto challenge = Challenge("alice", 1);
  ASSERT_TRUE(challenge.ok());
  const std::string signature = SignLogin(alice.identity, "alice", 1, *challenge);
  pb::LoginResponse response;
  ASSERT_TRUE(Login("alice", 1, challenge->challenge(), signature, &response).ok());
  ExpectLoginFailed(Login("alice", 1, challenge->challenge(), signature, &response));
}

TEST_F(GatewayIntegration, WrongSignatureFails) {
  RegisterUser("alice");
  kd::testing::TestDevice mallory = keys_.NewDevice(1, 0);
  auto challenge = Challenge("alice", 1);
  ASSERT_TRUE(challenge.ok());
  pb::LoginResponse response;
  ExpectLoginFailed(Login("alice", 1, challenge->challenge(),
                          SignLogin(mallory.identity, "alice", 1, *challenge), &response));
}

TEST_F(GatewayIntegration, UnknownDeviceFails) {
  kd::testing::TestDevice alice = RegisterUser("alice");
  pb::LoginResponse response;
  // A challenge is handed out for devices that do not exist (no enumeration).
  for (auto [user, device] : {std::pair<std::string, uint32_t>{"nobody", 1}, {"alice", 2}}) {
    auto challenge = Challenge(user, device);
    ASSERT_TRUE(challenge.ok()) << challenge.status();
    ExpectLoginFailed(Login(user, device, challenge->challenge(),
                            SignLogin(alice.identity, user, device, *challenge), &response));
  }
}

TEST_F(GatewayIntegration, ExpiredChallengeFails) {
  StartGateway({.challenge_ttl = absl::Milliseconds(200)});
  kd::testing::TestDevice alice = RegisterUser("alice");
  auto challenge = Challenge("alice", 1);
  ASSERT_TRUE(challenge.ok());
  // Wait until Redis has expired the challenge.
  const std::string key = RedisChallengeStore::Key({"alice", 1});
  ASSERT_TRUE(WaitFor(
      [&] {
        auto reply = redis_->Execute(redis::Command::Keyed({"EXISTS", key}, 1));
        return reply.ok() && reply->is_integer() && reply->integer() == 0;
      },
      absl::Seconds(5)));
  pb::LoginResponse response;
  ExpectLoginFailed(Login("alice", 1, challenge->challenge(),
                          SignLogin(alice.identity, "alice", 1, *challenge), &response));
}

TEST_F(GatewayIntegration, MissingForgedOrExpiredTokenIsRefusedAlike) {
  RegisterUser("alice");
  ExpectInvalidToken(GetDeviceList("", "alice"));
  ExpectInvalidToken(GetDeviceList("garbage", "alice"));
  SessionTokens forger(kSecretB, "");
  const SessionClaims claims{.user_id = "alice",
                             .device_id = 1,
                             .device_list_version = 1,
                             .expires_at = absl::Now() + absl::Hours(1),
                             .key_id = ""};
  ExpectInvalidToken(GetDeviceList(forger.Issue(claims), "alice"));
  SessionClaims expired = claims;
  expired.expires_at = absl::Now() - absl::Seconds(1);
  ExpectInvalidToken(GetDeviceList(gateway_->tokens().Issue(expired), "alice"));
  // The same token unexpired is accepted: the refusals above are for the stated reasons.
  EXPECT_TRUE(GetDeviceList(gateway_->tokens().Issue(claims), "alice").ok());
  // Every authenticated rpc checks the token.
  ExpectInvalidToken(ClaimBundles("", "alice", 0));
}

TEST_F(GatewayIntegration, PreviousSecretStillWorksAfterRotation) {
  kd::testing::TestDevice alice = RegisterUser("alice");
  const std::string old_token = LogIn("alice", alice);
  StartGateway({.secret = kSecretB, .previous = kSecretA});
  EXPECT_TRUE(GetDeviceList(old_token, "alice").ok());
  const std::string new_token = LogIn("alice", alice);
  EXPECT_TRUE(GetDeviceList(new_token, "alice").ok());
  EXPECT_NE(new_token, old_token);
  // Once the previous secret is retired, tokens it signed stop working.
  StartGateway({.secret = kSecretB});
  ExpectInvalidToken(GetDeviceList(old_token, "alice"));
  EXPECT_TRUE(GetDeviceList(new_token, "alice").ok());
}

TEST_F(GatewayIntegration, RegisterRateLimitPerAddress) {
  StartGateway({.register_limit = {.burst = 2, .per_second = 0.001}});
  RegisterUser("alice");
  RegisterUser("bob");
  pb::RegisterRequest request;
  RegistrationToProto(keys_.MakeRegistration("carol", keys_.NewDevice(1, 1)), &request);
  pb::RegisterResponse response;
  grpc::ClientContext context;
  grpc::Status status = gw().Register(&context, request, &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED) << status.error_message();
  const auto& trailers = context.GetServerTrailingMetadata();
  auto it = trailers.find(kRetryAfterMetadata);
  ASSERT_NE(it, trailers.end());
  EXPECT_GT(std::stoll(std::string(it->second.data(), it->second.size())), 0);
}

TEST_F(GatewayIntegration, TokenWithOlderDeviceListIsRefusedForAccountChanges) {
  kd::testing::TestDevice alice = RegisterUser("alice");
  const std::string token = LogIn("alice", alice);
  // Link device 2 (list version 2), with the old token (still current).
  kd::testing::TestDevice second = keys_.NewDevice(2, 1);
  pb::GatewayPublishDeviceListRequest link;
  kd::ToProto(keys_.SignedList("alice", 2, {&alice, &second}, alice), link.mutable_device_list());
  auto* keys = link.add_new_device_keys();
  keys->set_device_id(2);
  keys->mutable_signed_prekey()->set_key_id(second.signed_prekey.key_id);
  keys->mutable_signed_prekey()->set_public_key(second.signed_prekey.public_key);
  keys->mutable_signed_prekey()->set_signature(second.signed_prekey.signature);
  {
    pb::PublishDeviceListResponse response;
    grpc::ClientContext context;
    Authorize(context, token);
    grpc::Status status = gw().PublishDeviceList(&context, link, &response);
    ASSERT_TRUE(status.ok()) << status.error_message();
    EXPECT_EQ(response.device_list_version(), 2u);
  }
  // The token carries version 1: account changes need a fresh login.
  {
    pb::DeleteAccountResponse response;
    grpc::ClientContext context;
    Authorize(context, token);
    ExpectInvalidToken(gw().DeleteAccount(&context, {}, &response));
  }
  // Reads stay cheap and keep working with the older token.
  EXPECT_TRUE(GetDeviceList(token, "alice").ok());
  // The new device logs in with its own key.
  EXPECT_FALSE(LogIn("alice", second).empty());
  const std::string fresh = LogIn("alice", alice);
  {
    pb::DeleteAccountResponse response;
    grpc::ClientContext context;
    Authorize(context, fresh);
    grpc::Status status = gw().DeleteAccount(&context, {}, &response);
    EXPECT_TRUE(status.ok()) << status.error_message();
  }
  // The account is gone: its device cannot log in any more.
  auto challenge = Challenge("alice", 1);
  ASSERT_TRUE(challenge.ok());
  pb::LoginResponse response;
  ExpectLoginFailed(Login("alice", 1, challenge->challenge(),
                          SignLogin(alice.identity, "alice", 1, *challenge), &response));
}

TEST_F(GatewayIntegration, MalformedGetChallengeIsInvalidArgument) {
  pb::GetChallengeRequest empty;
  pb::GetChallengeResponse response;
  grpc::ClientContext context;
  grpc::Status status = gw().GetChallenge(&context, empty, &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(status.error_message(), "device.user_id: not a user id (E.164 or [a-z0-9._-]{3,32})");
}

TEST_F(GatewayIntegration, TurnWithoutSecretIsFailedPreconditionAndConnectUnimplemented) {
  kd::testing::TestDevice alice = RegisterUser("alice");
  const std::string token = LogIn("alice", alice);
  {
    pb::GetTurnCredentialsResponse response;
    grpc::ClientContext context;
    Authorize(context, token);
    EXPECT_EQ(gw().GetTurnCredentials(&context, {}, &response).error_code(),
              grpc::StatusCode::FAILED_PRECONDITION);
  }
  grpc::ClientContext context;
  Authorize(context, token);
  auto stream = gw().Connect(&context);
  stream->WritesDone();
  pb::ServerFrame frame;
  EXPECT_FALSE(stream->Read(&frame));
  EXPECT_EQ(stream->Finish().error_code(), grpc::StatusCode::UNIMPLEMENTED);
}

}  // namespace
}  // namespace padlock::gateway
