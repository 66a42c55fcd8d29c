// Trust between services, against the real binaries on a stack with generated certificates
// (tests/harness/stack.h): every internal port refuses callers without a client certificate of
// the internal CA (none, or one from another CA), each service accepts only the callers that
// should call it, clients check that the server is the service they meant, and the admin surface
// answers only operator certificates, on its own port — through gRPC directly and through
// padlock-admin.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <grpcpp/grpcpp.h>

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "padlock/v1/key_directory.grpc.pb.h"
#include "padlock/v1/message_queue.grpc.pb.h"
#include "padlock/v1/notifier.grpc.pb.h"
#include "padlock/v1/presence.grpc.pb.h"
#include "services/common/runtime/health_client.h"
#include "services/common/runtime/internal_tls.h"
#include "tests/harness/harness.h"
#include "tests/harness/stack.h"
#include "tests/unit/runtime/runtime_test_util.h"

namespace padlock {
namespace {

namespace pb = ::padlock::v1;
using ::padlock::testing::PadlockStack;
using ::padlock::testing::Subprocess;
using ::padlock::testing::TempDir;
using ::testing::HasSubstr;

constexpr auto kDeadline = std::chrono::seconds(10);

void SetDeadline(grpc::ClientContext& context) {
  context.set_deadline(std::chrono::system_clock::now() + kDeadline);
}

// One domain rpc per internal service; each is harmless and answers OK (or NOT_FOUND) to a
// caller that may call it.
grpc::Status CallMessageQueue(const std::shared_ptr<grpc::Channel>& channel) {
  pb::GetInboxInfoRequest request;
  request.mutable_device()->set_user_id("alice");
  request.mutable_device()->set_device_id(1);
  pb::GetInboxInfoResponse response;
  grpc::ClientContext context;
  SetDeadline(context);
  return pb::MessageQueue::NewStub(channel)->GetInboxInfo(&context, request, &response);
}

grpc::Status CallPresence(const std::shared_ptr<grpc::Channel>& channel) {
  pb::LocateRequest request;
  pb::DeviceAddress* device = request.add_devices();
  device->set_user_id("alice");
  device->set_device_id(1);
  pb::LocateResponse response;
  grpc::ClientContext context;
  SetDeadline(context);
  return pb::Presence::NewStub(channel)->Locate(&context, request, &response);
}

grpc::Status CallKeyDirectory(const std::shared_ptr<grpc::Channel>& channel) {
  pb::GetDeviceListRequest request;
  request.set_user_id("nobody-here");
  pb::GetDeviceListResponse response;
  grpc::ClientContext context;
  SetDeadline(context);
  return pb::KeyDirectory::NewStub(channel)->GetDeviceList(&context, request, &response);
}

// An empty batch: queues nothing, answers OK to the message-queue.
grpc::Status CallNotifier(const std::shared_ptr<grpc::Channel>& channel) {
  pb::NotifyRequest request;
  pb::NotifyResponse response;
  grpc::ClientContext context;
  SetDeadline(context);
  return pb::Notifier::NewStub(channel)->Notify(&context, request, &response);
}

grpc::Status CallAdmin(const std::shared_ptr<grpc::Channel>& channel) {
  pb::CreateInviteRequest request;
  request.set_ttl_seconds(60);
  pb::CreateInviteResponse response;
  grpc::ClientContext context;
  SetDeadline(context);
  return pb::KeyDirectoryAdmin::NewStub(channel)->CreateInvite(&context, request, &response);
}

// A channel presenting `tls` (nullptr: no client certificate) to `server_name` at `target`.
std::shared_ptr<grpc::Channel> ChannelWith(const std::string& target, const std::string& ca_pem,
                                           const runtime::InternalTls* tls,
                                           const std::string& server_name) {
  grpc::SslCredentialsOptions options;
  options.pem_root_certs = ca_pem;
  if (tls != nullptr) {
    options.pem_private_key = tls->key_pem;
    options.pem_cert_chain = tls->cert_pem;
  }
  grpc::ChannelArguments args;
  args.SetSslTargetNameOverride(server_name);
  return grpc::CreateCustomChannel(target, grpc::SslCredentials(options), args);
}

runtime::InternalTls Load(const std::string& dir) {
  auto tls = runtime::InternalTlsFromDirectory(dir);
  EXPECT_TRUE(tls.ok()) << tls.status();
  return tls.ok() ? *tls : runtime::InternalTls{};
}

bool Allowed(const grpc::Status& status) {
  return status.ok() || status.error_code() == grpc::StatusCode::NOT_FOUND;
}

class InternalTrustTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    // With the notifier, whose caller policy is checked too.
    auto stack = PadlockStack::Start({.notifier = true});
    ASSERT_TRUE(stack.ok()) << stack.status();
    stack_ = stack->release();
  }
  static void TearDownTestSuite() {
    delete stack_;
    stack_ = nullptr;
  }
  void SetUp() override { ASSERT_NE(stack_, nullptr); }

  struct Target {
    std::string name;  // the server's certificate name
    std::string address;
    std::function<grpc::Status(const std::shared_ptr<grpc::Channel>&)> call;
  };
  static std::vector<Target> Targets() {
    return {{"message-queue", stack_->message_queue_target(), CallMessageQueue},
            {"presence", stack_->presence_target(), CallPresence},
            {"key-directory", stack_->key_directory_target(), CallKeyDirectory},
            {"key-directory", stack_->key_directory_admin_target(), CallAdmin}};
  }
  static std::shared_ptr<grpc::Channel> As(const std::string& identity, const Target& target) {
    return stack_->InternalChannel(target.address, identity, target.name);
  }
  static std::string CaPem() { return Load(stack_->pki_dir() + "/operator").ca_pem; }

  // Runs padlock-admin with `args` and `env`; returns the exit code, output in `output`.
  static int Admin(std::vector<std::string> args, std::map<std::string, std::string> env,
                   std::string* output) {
    TempDir dir;
    std::vector<std::string> argv{PADLOCK_ADMIN_BIN,
                                  "--target=" + stack_->key_directory_admin_target()};
    argv.insert(argv.end(), args.begin(), args.end());
    // The test's own environment must not decide the outcome.
    env.emplace("PADLOCK_ADMIN_TLS_DIR", "");
    env.emplace("PADLOCK_INTERNAL_INSECURE", "");
    auto process = Subprocess::Start({.argv = argv, .env = env, .log_path = dir.path() + "/log"});
    EXPECT_TRUE(process.ok()) << process.status();
    if (!process.ok()) return -1;
    auto status = process->Wait(absl::Seconds(30));
    EXPECT_TRUE(status.ok());
    *output = process->ReadLog();
    return status.ok() && WIFEXITED(*status) ? WEXITSTATUS(*status) : -1;
  }

  static inline PadlockStack* stack_ = nullptr;
};

TEST_F(InternalTrustTest, TheRightCallersAreServed) {
  // Gateways call everything but the admin surface; the message-queue reads device lists.
  for (const Target& t : Targets()) {
    SCOPED_TRACE(t.address);
    if (t.address == stack_->key_directory_admin_target()) continue;
    grpc::Status status = t.call(As("gateway", t));
    EXPECT_TRUE(Allowed(status)) << status.error_code() << " " << status.error_message();
  }
  const Target key_directory = Targets()[2];
  grpc::Status status = key_directory.call(As("message-queue", key_directory));
  EXPECT_TRUE(Allowed(status)) << status.error_code() << " " << status.error_message();
}

TEST_F(InternalTrustTest, CallsWithoutAClientCertificateAreRefused) {
  const std::string ca = CaPem();
  for (const Target& t : Targets()) {
    SCOPED_TRACE(t.address);
    // TLS without a client certificate: the handshake fails, no call reaches the service.
    grpc::Status status = t.call(ChannelWith(t.address, ca, nullptr, t.name));
    EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAVAILABLE) << status.error_message();
    // Plaintext: not even a TLS client.
    status = t.call(grpc::CreateChannel(t.address, grpc::InsecureChannelCredentials()));
    EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAVAILABLE) << status.error_message();
  }
}

TEST_F(InternalTrustTest, CertificatesFromAnotherCaAreRefused) {
  // Another CA issuing the very same names ("gateway", "operator").
  TempDir other;
  auto script = Subprocess::Start(
      {.argv = {"bash", PADLOCK_SOURCE_DIR "/scripts/lib/internal-certs.sh", other.path() + "/pki",
                "gateway", "operator"},
       .log_path = other.path() + "/certs.log"});
  ASSERT_TRUE(script.ok());
  auto exit = script->Wait(absl::Seconds(60));
  ASSERT_TRUE(exit.ok() && WIFEXITED(*exit) && WEXITSTATUS(*exit) == 0) << script->ReadLog();
  const runtime::InternalTls forged_gateway = Load(other.path() + "/pki/gateway");
  const runtime::InternalTls forged_operator = Load(other.path() + "/pki/operator");
  // The client trusts the real CA, so only the server's verdict on the client is tested.
  const std::string ca = CaPem();
  for (const Target& t : Targets()) {
    SCOPED_TRACE(t.address);
    for (const runtime::InternalTls* forged : {&forged_gateway, &forged_operator}) {
      grpc::Status status = t.call(ChannelWith(t.address, ca, forged, t.name));
      EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAVAILABLE) << status.error_message();
    }
  }
}

TEST_F(InternalTrustTest, ServicesThatShouldNotCallAreRefused) {
  const std::vector<Target> targets = Targets();
  const Target& message_queue = targets[0];
  const Target& presence = targets[1];
  const Target& key_directory = targets[2];
  struct Case {
    std::string caller;
    const Target* target;
  };
  const std::vector<Case> refused = {
      {"presence", &message_queue},      {"key-directory", &message_queue},
      {"operator", &message_queue},      {"message-queue", &presence},
      {"key-directory", &presence},      {"operator", &presence},
      {"presence", &key_directory},      {"key-directory", &key_directory},
      // Operators use the admin port; the relay surface is not theirs.
      {"operator", &key_directory}};
  for (const Case& c : refused) {
    SCOPED_TRACE(c.caller + " -> " + c.target->address);
    grpc::Status status = c.target->call(As(c.caller, *c.target));
    EXPECT_EQ(status.error_code(), grpc::StatusCode::PERMISSION_DENIED) << status.error_message();
    EXPECT_THAT(status.error_message(), HasSubstr("may not call"));
  }
  // Counted for the operator, without user data.
  EXPECT_GE(runtime::testing::ScrapeValue(stack_->message_queue_metrics_port(),
                                          "padlock_internal_calls_refused_total",
                                          {{"port", "grpc"},
                                           {"grpc_service", "padlock.v1.MessageQueue"},
                                           {"caller", "service/presence"}}),
            1.0);
}

TEST_F(InternalTrustTest, OnlyTheMessageQueueMayCallTheNotifier) {
  const Target notifier{"notifier", stack_->notifier_target(), CallNotifier};
  grpc::Status status = notifier.call(As("message-queue", notifier));
  EXPECT_TRUE(status.ok()) << status.error_code() << " " << status.error_message();
  for (const char* caller : {"gateway", "presence", "key-directory", "operator"}) {
    SCOPED_TRACE(caller);
    status = notifier.call(As(caller, notifier));
    EXPECT_EQ(status.error_code(), grpc::StatusCode::PERMISSION_DENIED) << status.error_message();
  }
  // No client certificate: refused in the handshake.
  status = notifier.call(ChannelWith(notifier.address, CaPem(), nullptr, notifier.name));
  EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAVAILABLE) << status.error_message();
}

TEST_F(InternalTrustTest, ClientsRefuseAServerThatIsNotTheServiceTheyMeant) {
  // The gateway's certificate and CA, dialling presence while expecting the message-queue: the
  // presence certificate does not name message-queue, so the client ends the handshake.
  const Target presence = Targets()[1];
  grpc::Status status =
      CallMessageQueue(stack_->InternalChannel(presence.address, "gateway", "message-queue"));
  EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAVAILABLE) << status.error_message();
}

TEST_F(InternalTrustTest, AdminPortAnswersOnlyOperatorCertificates) {
  const Target admin = Targets()[3];
  for (const char* service : {"gateway", "message-queue", "presence", "key-directory"}) {
    SCOPED_TRACE(service);
    grpc::Status status = admin.call(As(service, admin));
    EXPECT_EQ(status.error_code(), grpc::StatusCode::PERMISSION_DENIED) << status.error_message();
  }
  grpc::Status status = admin.call(As("operator", admin));
  EXPECT_TRUE(status.ok()) << status.error_code() << " " << status.error_message();
  // The admin service is not served to anybody on the service port, operators included.
  const Target key_directory = Targets()[2];
  for (const char* caller : {"operator", "gateway"}) {
    status = CallAdmin(As(caller, key_directory));
    EXPECT_EQ(status.error_code(), grpc::StatusCode::PERMISSION_DENIED) << caller;
  }
  // Health on the admin port for probes, with any certificate of the CA.
  auto health = runtime::CheckHealth(As("key-directory", admin), "liveness", absl::Seconds(5));
  ASSERT_TRUE(health.ok()) << health.status();
  EXPECT_EQ(*health, runtime::HealthState::kServing);
}

TEST_F(InternalTrustTest, PadlockAdminUsesTheOperatorCertificate) {
  std::string output;
  EXPECT_EQ(Admin({"invite", "--ttl=1h"},
                  {{"PADLOCK_ADMIN_TLS_DIR", stack_->pki_dir() + "/operator"}}, &output),
            0)
      << output;
  EXPECT_EQ(Admin({"--tls-dir=" + stack_->pki_dir() + "/gateway", "invite"}, {}, &output), 1);
  EXPECT_THAT(output, HasSubstr("PERMISSION_DENIED"));
  // No certificate: a usage error, not a plaintext attempt.
  EXPECT_EQ(Admin({"invite"}, {}, &output), 2);
  EXPECT_THAT(output, HasSubstr("no operator certificate"));
}

}  // namespace
}  // namespace padlock
