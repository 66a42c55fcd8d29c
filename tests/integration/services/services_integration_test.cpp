// The four real service binaries, started as child processes against a real redis-server and
// PostgreSQL on free loopback ports: they serve health (readiness and liveness), reflection-free
// gRPC, /metrics with the standard gRPC server metrics, answer UNIMPLEMENTED for domain rpcs not
// built yet, refuse bad configuration naming the variable, report readiness truthfully while a
// dependency is down, and exit cleanly on SIGTERM.

#include <signal.h>
#include <sys/wait.h>

#include <grpcpp/create_channel.h>

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "padlock/v1/gateway.grpc.pb.h"
#include "padlock/v1/key_directory.grpc.pb.h"
#include "padlock/v1/message_queue.grpc.pb.h"
#include "padlock/v1/presence.grpc.pb.h"
#include "services/common/runtime/health_client.h"
#include "tests/harness/harness.h"
#include "tests/harness/postgres_server.h"
#include "tests/harness/redis_server.h"
#include "tests/unit/runtime/runtime_test_util.h"

namespace padlock {
namespace {

using ::padlock::runtime::CheckHealth;
using ::padlock::runtime::HealthState;
using ::padlock::runtime::testing::ScrapeValue;
using ::padlock::testing::FreeTcpPort;
using ::padlock::testing::PostgresServer;
using ::padlock::testing::RedisServer;
using ::padlock::testing::Subprocess;
using ::padlock::testing::TempDir;
using ::padlock::testing::WaitFor;
using ::testing::HasSubstr;
using ::testing::Not;

constexpr absl::Duration kStartTimeout = absl::Seconds(30);
constexpr absl::Duration kGrace = absl::Seconds(5);

// One running service binary with its ports and log.
struct Service {
  std::string name;
  int grpc_port = 0;
  int metrics_port = 0;
  std::unique_ptr<Subprocess> process;
  std::shared_ptr<grpc::Channel> channel;

  HealthState Health(const std::string& service_name = "") const {
    auto state = CheckHealth(channel, service_name, absl::Seconds(2));
    return state.ok() ? *state : HealthState::kUnknown;
  }
};

class ServicesTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    auto redis = RedisServer::Start();
    ASSERT_TRUE(redis.ok()) << redis.status();
    redis_ = redis->release();
    auto pg = PostgresServer::Start();
    ASSERT_TRUE(pg.ok()) << pg.status();
    postgres_ = pg->release();
  }

  static void TearDownTestSuite() {
    delete redis_;
    redis_ = nullptr;
    delete postgres_;
    postgres_ = nullptr;
  }

  void SetUp() override {
    ASSERT_TRUE(redis_->StartAgain().ok() || redis_->running());
    ASSERT_TRUE(redis_->FlushAll().ok());
    auto db = postgres_->CreateFreshDatabase();
    ASSERT_TRUE(db.ok()) << db.status();
    dsn_ = postgres_->ConnInfo(*db);
  }

  // Environment every service gets: its own ports, the shared Redis and PostgreSQL, fast
  // readiness polling, a short grace period.
  // What the gateway needs beside BaseEnv: its token secret and where the internal services are.
  static std::map<std::string, std::string> GatewayEnv(int key_directory_port,
                                                       int message_queue_port, int presence_port) {
    return {{"PADLOCK_TOKEN_SECRET", std::string(64, 'a')},
            {"PADLOCK_TLS", "off"},
            {"PADLOCK_KEY_DIRECTORY_TARGET", absl::StrCat("127.0.0.1:", key_directory_port)},
            {"PADLOCK_MESSAGE_QUEUE_TARGET", absl::StrCat("127.0.0.1:", message_queue_port)},
            {"PADLOCK_PRESENCE_TARGET", absl::StrCat("127.0.0.1:", presence_port)}};
  }

  std::map<std::string, std::string> BaseEnv(int grpc_port, int metrics_port) const {
    // Plaintext internal gRPC: these tests are about serving, health and configuration; mutual
    // TLS is tested in tests/e2e/internal_trust.
    return {{"PADLOCK_INTERNAL_INSECURE", "1"},
            {"PADLOCK_GRPC_PORT", absl::StrCat(grpc_port)},
            {"PADLOCK_METRICS_PORT", absl::StrCat(metrics_port)},
            {"PADLOCK_REDIS_ADDRS", redis_->address()},
            {"PADLOCK_READINESS_INTERVAL", "100ms"},
            {"PADLOCK_SHUTDOWN_GRACE", "5s"}};
  }

  // Starts `binary` with BaseEnv plus `extra` and waits until it answers health (any state).
  Service Launch(const std::string& name, const std::string& binary,
                 std::map<std::string, std::string> extra = {}) {
    Service s;
    s.name = name;
    s.grpc_port = FreeTcpPort();
    s.metrics_port = FreeTcpPort();
    auto env = BaseEnv(s.grpc_port, s.metrics_port);
    // The key-directory's admin port defaults to 7431: two replicas (or a running local stack)
    // would collide.
    if (binary == PADLOCK_KEY_DIRECTORY_BIN) {
      env["PADLOCK_ADMIN_PORT"] = absl::StrCat(FreeTcpPort());
    }
    // Required by the message-queue (keys its dedupe ids; docs/PRIVACY.md).
    if (binary == PADLOCK_MESSAGE_QUEUE_BIN) env["PADLOCK_DEDUPE_SECRET"] = std::string(64, 'd');
    for (auto& [k, v] : extra) env[k] = v;
    auto process = Subprocess::Start({.argv = {binary},
                                      .env = env,
                                      .log_path = absl::StrCat(logs_.path(), "/", name, ".log")});
    EXPECT_TRUE(process.ok()) << process.status();
    s.process = std::make_unique<Subprocess>(std::move(*process));
    // Connect only once the port is open: a channel that failed its first connect backs off
    // (1 s, 1.6 s, ...) and would slow every test down.
    EXPECT_TRUE(WaitFor([&] { return padlock::testing::TcpPortOpen(s.grpc_port); }, kStartTimeout))
        << name << " never listened; log:\n"
        << s.process->ReadLog();
    s.channel = grpc::CreateChannel(absl::StrCat("127.0.0.1:", s.grpc_port),
                                    grpc::InsecureChannelCredentials());
    const bool answers = WaitFor(
        [&] { return CheckHealth(s.channel, "liveness", absl::Seconds(1)).ok(); }, kStartTimeout);
    EXPECT_TRUE(answers) << name << " never answered; log:\n" << s.process->ReadLog();
    return s;
  }

  static bool BecomesServing(const Service& s) {
    return WaitFor([&] { return s.Health() == HealthState::kServing; }, kStartTimeout);
  }

  // Starts all four in dependency order, each SERVING before the next starts.
  std::vector<Service> LaunchAll() {
    std::vector<Service> all;
    all.push_back(Launch("key-directory", PADLOCK_KEY_DIRECTORY_BIN,
                         {{"PADLOCK_POSTGRES_DSN", dsn_}}));
    all.push_back(Launch(
        "message-queue", PADLOCK_MESSAGE_QUEUE_BIN,
        {{"PADLOCK_KEY_DIRECTORY_TARGET", absl::StrCat("127.0.0.1:", all[0].grpc_port)}}));
    all.push_back(Launch("presence", PADLOCK_PRESENCE_BIN));
    for (const auto& s : all) EXPECT_TRUE(BecomesServing(s)) << s.name;
    all.push_back(Launch("gateway", PADLOCK_GATEWAY_BIN,
                         GatewayEnv(all[0].grpc_port, all[1].grpc_port, all[2].grpc_port)));
    EXPECT_TRUE(BecomesServing(all[3])) << all[3].process->ReadLog();
    return all;
  }

  static inline RedisServer* redis_ = nullptr;
  static inline PostgresServer* postgres_ = nullptr;
  std::string dsn_;
  TempDir logs_;
};

std::map<std::string, std::string> HandledLabels(const std::string& service,
                                                 const std::string& method,
                                                 const std::string& code) {
  return {{"grpc_service", service},
          {"grpc_method", method},
          {"grpc_type", "unary"},
          {"grpc_code", code}};
}

TEST_F(ServicesTest, AllFourServeHealthAndMetricsAndExitCleanlyOnSigterm) {
  std::vector<Service> all = LaunchAll();
  const std::map<std::string, std::string> full_names = {
      {"key-directory", "padlock.v1.KeyDirectory"},
      {"message-queue", "padlock.v1.MessageQueue"},
      {"presence", "padlock.v1.Presence"},
      {"gateway", "padlock.v1.Gateway"}};
  for (const Service& s : all) {
    SCOPED_TRACE(s.name);
    EXPECT_EQ(s.Health(""), HealthState::kServing);
    EXPECT_EQ(s.Health("liveness"), HealthState::kServing);
    EXPECT_EQ(s.Health(full_names.at(s.name)), HealthState::kServing);
    // The health calls above are counted under the standard gRPC server metric names.
    EXPECT_GE(ScrapeValue(s.metrics_port, "grpc_server_handled_total",
                          HandledLabels("grpc.health.v1.Health", "Check", "OK")),
              3.0);
  }
  // Reverse dependency order, as an orchestrator would.
  for (auto it = all.rbegin(); it != all.rend(); ++it) {
    SCOPED_TRACE(it->name);
    // gRPC's server shutdown waits for connected clients to go away (or the deadline); an idle
    // channel in this process has nobody reading its GOAWAY, so close it as a client would.
    it->channel.reset();
    auto status = it->process->Stop(SIGTERM, kGrace + absl::Seconds(2));
    ASSERT_TRUE(status.ok()) << it->name << " did not exit within the grace period";
    EXPECT_TRUE(WIFEXITED(*status));
    EXPECT_EQ(WEXITSTATUS(*status), 0);
  }
}

TEST_F(ServicesTest, DomainRpcsAnswerUnimplementedOrValidateAndAreCounted) {
  std::vector<Service> all = LaunchAll();
  grpc::Status status;
  {
    // An empty request is refused naming the field.
    auto stub = v1::KeyDirectory::NewStub(all[0].channel);
    grpc::ClientContext ctx;
    v1::ClaimBundlesResponse response;
    status = stub->ClaimBundles(&ctx, v1::ClaimBundlesRequest(), &response);
    EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
    EXPECT_THAT(status.error_message(), HasSubstr("requester.user_id"));
    EXPECT_EQ(ScrapeValue(all[0].metrics_port, "grpc_server_handled_total",
                          HandledLabels("padlock.v1.KeyDirectory", "ClaimBundles",
                                        "INVALID_ARGUMENT")),
              1.0);
  }
  {
    // Token rotation belongs to the gateway: UNIMPLEMENTED here, never faked.
    auto stub = v1::KeyDirectoryAdmin::NewStub(all[0].channel);
    grpc::ClientContext ctx;
    v1::RotateTokenSecretResponse response;
    status = stub->RotateTokenSecret(&ctx, v1::RotateTokenSecretRequest(), &response);
    EXPECT_EQ(status.error_code(), grpc::StatusCode::UNIMPLEMENTED);
  }
  {
    // A send with a malformed message id is refused on its own, with
    // INVALID_ARGUMENT in its outcome; the batch call itself succeeds.
    auto stub = v1::MessageQueue::NewStub(all[1].channel);
    grpc::ClientContext ctx;
    v1::EnqueueRequest request;
    v1::Send* send = request.add_sends();
    send->mutable_sender()->set_user_id("alice");
    send->mutable_sender()->set_device_id(1);
    send->mutable_message()->set_message_id("too-short");
    v1::EnqueueResponse response;
    status = stub->Enqueue(&ctx, request, &response);
    ASSERT_TRUE(status.ok()) << status.error_message();
    ASSERT_EQ(response.outcomes_size(), 1);
    ASSERT_TRUE(response.outcomes(0).has_refused());
    EXPECT_EQ(response.outcomes(0).refused().code(), grpc::StatusCode::INVALID_ARGUMENT);
    EXPECT_EQ(ScrapeValue(all[1].metrics_port, "grpc_server_handled_total",
                          HandledLabels("padlock.v1.MessageQueue", "Enqueue", "OK")),
              1.0);
  }
  {
    // An empty request is refused naming the field, never a crash.
    auto stub = v1::Presence::NewStub(all[2].channel);
    grpc::ClientContext ctx;
    v1::ConnectResponse response;
    status = stub->Connect(&ctx, v1::ConnectRequest(), &response);
    EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
    EXPECT_THAT(status.error_message(), HasSubstr("device.user_id"));
  }
  {
    auto stub = v1::Gateway::NewStub(all[3].channel);
    grpc::ClientContext ctx;
    v1::GetChallengeResponse response;
    status = stub->GetChallenge(&ctx, v1::GetChallengeRequest(), &response);
    // An empty request is refused naming the field.
    EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
    EXPECT_THAT(status.error_message(), HasSubstr("device.user_id"));
    EXPECT_EQ(ScrapeValue(all[3].metrics_port, "grpc_server_handled_total",
                          HandledLabels("padlock.v1.Gateway", "GetChallenge", "INVALID_ARGUMENT")),
              1.0);
  }
}

TEST_F(ServicesTest, BadConfigValueStopsEachServiceNamingTheVariable) {
  const std::vector<std::pair<std::string, std::string>> binaries = {
      {"key-directory", PADLOCK_KEY_DIRECTORY_BIN},
      {"message-queue", PADLOCK_MESSAGE_QUEUE_BIN},
      {"presence", PADLOCK_PRESENCE_BIN},
      {"gateway", PADLOCK_GATEWAY_BIN}};
  for (const auto& [name, binary] : binaries) {
    SCOPED_TRACE(name);
    auto env = BaseEnv(FreeTcpPort(), FreeTcpPort());
    env["PADLOCK_GRPC_PORT"] = "abc";
    env["PADLOCK_REDIS_MODE"] = "sideways";
    const std::string log = absl::StrCat(logs_.path(), "/bad-", name, ".log");
    auto process = Subprocess::Start({.argv = {binary}, .env = env, .log_path = log});
    ASSERT_TRUE(process.ok());
    auto status = process->Wait(absl::Seconds(10));
    ASSERT_TRUE(status.ok()) << "still running with a bad config";
    ASSERT_TRUE(WIFEXITED(*status));
    EXPECT_EQ(WEXITSTATUS(*status), 2);
    const std::string output = process->ReadLog();
    EXPECT_THAT(output, HasSubstr("PADLOCK_GRPC_PORT"));
    EXPECT_THAT(output, HasSubstr("not a port number: 'abc'"));
    EXPECT_THAT(output, HasSubstr("PADLOCK_REDIS_MODE"));
  }
}

TEST_F(ServicesTest, MessageQueueRefusesToStartWithoutAValidDedupeSecret) {
  // Replicas that each drew their own secret would store a retry twice: no default.
  for (const std::string& secret : {std::string(), std::string(62, 'd')}) {
    SCOPED_TRACE(secret.empty() ? "unset" : "31 bytes");
    auto env = BaseEnv(FreeTcpPort(), FreeTcpPort());
    if (!secret.empty()) env["PADLOCK_DEDUPE_SECRET"] = secret;
    const std::string log =
        absl::StrCat(logs_.path(), "/no-dedupe-secret-", secret.size(), ".log");
    auto process =
        Subprocess::Start({.argv = {PADLOCK_MESSAGE_QUEUE_BIN}, .env = env, .log_path = log});
    ASSERT_TRUE(process.ok());
    auto status = process->Wait(absl::Seconds(10));
    ASSERT_TRUE(status.ok()) << "started without a dedupe secret";
    ASSERT_TRUE(WIFEXITED(*status));
    EXPECT_EQ(WEXITSTATUS(*status), 2);
    const std::string output = process->ReadLog();
    EXPECT_THAT(output, HasSubstr("PADLOCK_DEDUPE_SECRET"));
    EXPECT_THAT(output, HasSubstr(secret.empty() ? "required" : "decodes to 31 bytes"));
    if (!secret.empty()) {
      EXPECT_THAT(output, Not(HasSubstr(secret)));
    }
  }
}

TEST_F(ServicesTest, EachServiceRefusesToStartWithoutInternalCertificates) {
  const std::vector<std::pair<std::string, std::string>> binaries = {
      {"key-directory", PADLOCK_KEY_DIRECTORY_BIN},
      {"message-queue", PADLOCK_MESSAGE_QUEUE_BIN},
      {"presence", PADLOCK_PRESENCE_BIN},
      {"gateway", PADLOCK_GATEWAY_BIN}};
  for (const auto& [name, binary] : binaries) {
    SCOPED_TRACE(name);
    auto env = BaseEnv(FreeTcpPort(), FreeTcpPort());
    env.erase("PADLOCK_INTERNAL_INSECURE");
    env["PADLOCK_POSTGRES_DSN"] = dsn_;
    for (auto& [k, v] : GatewayEnv(1, 2, 3)) env[k] = v;
    env["PADLOCK_INTERNAL_CERT"] = "/nonexistent/tls.crt";
    const std::string log = absl::StrCat(logs_.path(), "/no-certs-", name, ".log");
    auto process = Subprocess::Start({.argv = {binary}, .env = env, .log_path = log});
    ASSERT_TRUE(process.ok());
    auto status = process->Wait(absl::Seconds(10));
    ASSERT_TRUE(status.ok()) << "started without internal certificates";
    ASSERT_TRUE(WIFEXITED(*status));
    EXPECT_EQ(WEXITSTATUS(*status), 2);
    const std::string output = process->ReadLog();
    EXPECT_THAT(output, HasSubstr("PADLOCK_INTERNAL_CA"));
    EXPECT_THAT(output, HasSubstr("PADLOCK_INTERNAL_INSECURE=1"));
    EXPECT_THAT(output, HasSubstr("cannot read /nonexistent/tls.crt"));
  }
}

TEST_F(ServicesTest, ReadinessFollowsRedisWhileLivenessStays) {
  Service mq = Launch("message-queue", PADLOCK_MESSAGE_QUEUE_BIN);
  ASSERT_TRUE(BecomesServing(mq));
  ASSERT_TRUE(redis_->Stop().ok());
  EXPECT_TRUE(WaitFor([&] { return mq.Health() == HealthState::kNotServing; }, absl::Seconds(10)));
  EXPECT_EQ(mq.Health("liveness"), HealthState::kServing);
  ASSERT_TRUE(redis_->StartAgain().ok());
  EXPECT_TRUE(WaitFor([&] { return mq.Health() == HealthState::kServing; }, absl::Seconds(10)));
}

TEST_F(ServicesTest, GatewayIsNotReadyWhileAnInternalServiceIsDown) {
  // Targets where nothing listens: the gateway answers, but must not claim readiness.
  const int nowhere = FreeTcpPort();
  Service gw = Launch("gateway", PADLOCK_GATEWAY_BIN, GatewayEnv(nowhere, nowhere, nowhere));
  EXPECT_EQ(gw.Health("liveness"), HealthState::kServing);
  // Never SERVING; NOT_SERVING as soon as a check gets an answer (on a busy machine a single
  // check can time out, which reads as UNKNOWN).
  for (const std::string name : {"", "padlock.v1.Gateway"}) {
    EXPECT_TRUE(WaitFor(
        [&] {
          const HealthState state = gw.Health(name);
          EXPECT_NE(state, HealthState::kServing) << "service name '" << name << "'";
          return state == HealthState::kNotServing;
        },
        absl::Seconds(10)))
        << "service name '" << name << "'";
  }
}

TEST_F(ServicesTest, KeyDirectoryReplicasStartingTogetherMigrateOnce) {
  Service a = Launch("key-directory-a", PADLOCK_KEY_DIRECTORY_BIN, {{"PADLOCK_POSTGRES_DSN", dsn_}});
  Service b = Launch("key-directory-b", PADLOCK_KEY_DIRECTORY_BIN, {{"PADLOCK_POSTGRES_DSN", dsn_}});
  ASSERT_TRUE(BecomesServing(a));
  ASSERT_TRUE(BecomesServing(b));
  // Both migrated under the advisory lock: exactly one found the schema already applied.
  const std::string logs = a.process->ReadLog() + b.process->ReadLog();
  auto count = [&](const std::string& needle) {
    int n = 0;
    for (size_t pos = 0; (pos = logs.find(needle, pos)) != std::string::npos; ++pos) ++n;
    return n;
  };
  EXPECT_EQ(count("\"msg\":\"schema migrated\""), 2) << logs;
  EXPECT_EQ(count("\"applied\":0"), 1) << logs;
}

}  // namespace
}  // namespace padlock
