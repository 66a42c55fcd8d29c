// The runtime as a service binary sees it: runtime_slow_server (ServiceRunner + a SlowService) runs
// as a child process on free loopback ports; the tests talk gRPC and HTTP to it, signal it, and
// read its log.

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <grpcpp/create_channel.h>
#include <grpcpp/generic/generic_stub.h>

#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "services/common/runtime/health_client.h"
#include "slow_service.grpc.pb.h"
#include "tests/harness/harness.h"
#include "tests/unit/runtime/runtime_test_util.h"

namespace padlock::runtime {
namespace {

using ::padlock::runtime::testing::HttpGet;
using ::padlock::runtime::testing::MetricValue;
using ::padlock::runtime::testing::ParseJsonObject;
using ::padlock::runtime::testing::ScrapeValue;
using ::padlock::testing::FreeTcpPort;
using ::padlock::testing::Subprocess;
using ::padlock::testing::TempDir;
using ::padlock::testing::WaitFor;
using ::padlock::testing::runtime::SetReadyRequest;
using ::padlock::testing::runtime::SetReadyResponse;
using ::padlock::testing::runtime::SleepRequest;
using ::padlock::testing::runtime::SleepResponse;
using ::padlock::testing::runtime::SlowService;
using ::testing::HasSubstr;

constexpr char kSlowService[] = "padlock.testing.runtime.SlowService";
constexpr absl::Duration kStartTimeout = absl::Seconds(15);
constexpr absl::Duration kGrace = absl::Seconds(10);

std::map<std::string, std::string> Labels(std::string service, std::string method,
                                          std::string type) {
  return {{"grpc_service", std::move(service)},
          {"grpc_method", std::move(method)},
          {"grpc_type", std::move(type)}};
}

std::map<std::string, std::string> WithCode(std::map<std::string, std::string> labels,
                                            std::string code) {
  labels["grpc_code"] = std::move(code);
  return labels;
}

class SlowServerTest : public ::testing::Test {
 protected:
  // Starts the server with the default test environment plus `extra_env`.
  void StartServer(std::map<std::string, std::string> extra_env = {}) {
    grpc_port_ = FreeTcpPort();
    metrics_port_ = FreeTcpPort();
    log_path_ = absl::StrCat(dir_.path(), "/slow_server_", ++starts_, ".log");
    std::map<std::string, std::string> env = {
        {"PADLOCK_GRPC_ADDRESS", absl::StrCat("127.0.0.1:", grpc_port_)},
        {"PADLOCK_METRICS_HOST", "127.0.0.1"},
        {"PADLOCK_METRICS_PORT", std::to_string(metrics_port_)},
        {"PADLOCK_SHUTDOWN_GRACE", absl::StrCat(absl::ToInt64Seconds(kGrace), "s")},
        {"PADLOCK_READINESS_INTERVAL", "50ms"},
    };
    for (auto& [k, v] : extra_env) env[k] = v;
    Subprocess::Options options;
    options.argv = argv_prefix_;
    options.argv.push_back(SLOW_SERVER_PATH);
    options.env = env;
    options.log_path = log_path_;
    auto started = Subprocess::Start(std::move(options));
    ASSERT_TRUE(started.ok()) << started.status();
    server_ = std::make_unique<Subprocess>(std::move(*started));
    // A channel that tried too early backs off for seconds: connect once the port is open.
    WaitFor([&] { return !server_->running() || padlock::testing::TcpPortOpen(grpc_port_); },
            kStartTimeout);
    channel_ = grpc::CreateChannel(absl::StrCat("127.0.0.1:", grpc_port_),
                                   grpc::InsecureChannelCredentials());
    stub_ = SlowService::NewStub(channel_);
  }

  void StartServerAndWaitUntilReady(std::map<std::string, std::string> extra_env = {}) {
    StartServer(std::move(extra_env));
    ASSERT_TRUE(WaitFor([&] { return Health("") == HealthState::kServing; }, kStartTimeout))
        << server_->ReadLog();
  }

  // The health state, or kUnknown when the call failed.
  HealthState Health(std::string_view service) {
    auto state = CheckHealth(channel_, service, absl::Seconds(2));
    return state.ok() ? *state : HealthState::kUnknown;
  }

  grpc::Status SetReady(bool ready) {
    grpc::ClientContext context;
    context.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(5)));
    SetReadyRequest request;
    request.set_ready(ready);
    SetReadyResponse response;
    return stub_->SetReady(&context, request, &response);
  }

  double Scrape(std::string_view name, const std::map<std::string, std::string>& labels) {
    return ScrapeValue(metrics_port_, name, labels);
  }

  // Runs padlock-healthcheck; returns its exit status and puts its output line in `output`.
  int RunHealthcheck(std::vector<std::string> args, std::string* output) {
    const std::string log = absl::StrCat(dir_.path(), "/healthcheck_", ++tool_runs_, ".log");
    args.insert(args.begin(), HEALTHCHECK_PATH);
    Subprocess::Options options;
    options.argv = std::move(args);
    options.log_path = log;
    auto tool = Subprocess::Start(std::move(options));
    if (!tool.ok()) return -1;
    auto status = tool->Wait(absl::Seconds(10));
    *output = tool->ReadLog();
    if (!status.ok() || !WIFEXITED(*status)) return -1;
    return WEXITSTATUS(*status);
  }

  std::vector<std::string> argv_prefix_;  // e.g. {"prlimit", "--nofile=N:N", "--"}
  TempDir dir_;
  int starts_ = 0;
  int tool_runs_ = 0;
  int grpc_port_ = 0;
  int metrics_port_ = 0;
  std::string log_path_;
  std::unique_ptr<Subprocess> server_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<SlowService::Stub> stub_;
};

TEST_F(SlowServerTest, ReportsReadinessLivenessAndServiceNamesServing) {
  StartServerAndWaitUntilReady();
  EXPECT_EQ(Health(""), HealthState::kServing);
  EXPECT_EQ(Health("liveness"), HealthState::kServing);
  EXPECT_EQ(Health(kSlowService), HealthState::kServing);
  auto unknown = CheckHealth(channel_, "no.such.Service", absl::Seconds(2));
  EXPECT_EQ(unknown.status().code(), absl::StatusCode::kNotFound);
}

TEST_F(SlowServerTest, CountsHealthCheckAsHandledOk) {
  StartServerAndWaitUntilReady();
  const auto check = Labels("grpc.health.v1.Health", "Check", "unary");
  const double started_before = Scrape("grpc_server_started_total", check);
  const double ok_before = Scrape("grpc_server_handled_total", WithCode(check, "OK"));
  const double count_before = Scrape("grpc_server_handling_seconds_count", check);
  ASSERT_GE(ok_before, 1);  // the readiness wait above made at least one

  ASSERT_EQ(Health(""), HealthState::kServing);

  EXPECT_EQ(Scrape("grpc_server_started_total", check), started_before + 1);
  EXPECT_EQ(Scrape("grpc_server_handled_total", WithCode(check, "OK")), ok_before + 1);
  EXPECT_EQ(Scrape("grpc_server_handling_seconds_count", check), count_before + 1);
  EXPECT_EQ(Scrape("grpc_server_msg_received_total", check),
            Scrape("grpc_server_started_total", check));
}

TEST_F(SlowServerTest, CountsDeclaredButUnimplementedMethod) {
  StartServerAndWaitUntilReady();
  const auto method = Labels(kSlowService, "NotImplemented", "unary");
  EXPECT_EQ(Scrape("grpc_server_handled_total", WithCode(method, "UNIMPLEMENTED")), 0);

  grpc::ClientContext context;
  SleepRequest request;
  SleepResponse response;
  EXPECT_EQ(stub_->NotImplemented(&context, request, &response).error_code(),
            grpc::StatusCode::UNIMPLEMENTED);

  EXPECT_EQ(Scrape("grpc_server_started_total", method), 1);
  EXPECT_EQ(Scrape("grpc_server_handled_total", WithCode(method, "UNIMPLEMENTED")), 1);
}

TEST_F(SlowServerTest, CountsUnknownMethodUnderUnknownLabels) {
  StartServerAndWaitUntilReady();
  grpc::GenericStub generic(channel_);
  grpc::ClientContext context;
  context.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(5)));
  grpc::CompletionQueue cq;
  grpc::ByteBuffer request;
  grpc::ByteBuffer response;
  grpc::Status status;
  auto call = generic.PrepareUnaryCall(&context, "/no.such.Service/Anything", request, &cq);
  call->StartCall();
  call->Finish(&response, &status, reinterpret_cast<void*>(1));
  void* tag = nullptr;
  bool ok = false;
  ASSERT_TRUE(cq.Next(&tag, &ok));
  EXPECT_EQ(status.error_code(), grpc::StatusCode::UNIMPLEMENTED);

  // gRPC dispatches an unregistered method as a streaming call; the name the client chose never
  // becomes a label value.
  const absl::StatusOr<std::string> metrics = HttpGet(metrics_port_, "/metrics");
  ASSERT_TRUE(metrics.ok()) << metrics.status();
  EXPECT_THAT(*metrics, ::testing::Not(HasSubstr("no.such.Service")));
  EXPECT_EQ(MetricValue(*metrics, "grpc_server_handled_total",
                        WithCode(Labels("unknown", "unknown", "bidi_stream"), "UNIMPLEMENTED")),
            1)
      << *metrics;
  cq.Shutdown();
  while (cq.Next(&tag, &ok)) {
  }
}

// grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo with list_services, encoded by
// hand (the reflection proto's headers are not packaged): the answer names SlowService.
TEST_F(SlowServerTest, ServesReflectionListingItsServices) {
  StartServerAndWaitUntilReady();
  grpc::GenericStub generic(channel_);
  grpc::ClientContext context;
  context.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(5)));
  grpc::CompletionQueue cq;
  auto call = generic.PrepareCall(
      &context, "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo", &cq);
  const auto step = [&cq]() {
    void* tag = nullptr;
    bool ok = false;
    return cq.Next(&tag, &ok) && ok;
  };
  call->StartCall(reinterpret_cast<void*>(1));
  ASSERT_TRUE(step());
  const std::string request("\x3a\x00", 2);  // field 7 (list_services) = ""
  grpc::Slice slice(request);
  call->Write(grpc::ByteBuffer(&slice, 1), reinterpret_cast<void*>(2));
  ASSERT_TRUE(step());
  call->WritesDone(reinterpret_cast<void*>(3));
  ASSERT_TRUE(step());
  grpc::ByteBuffer response;
  call->Read(&response, reinterpret_cast<void*>(4));
  ASSERT_TRUE(step());
  grpc::Status status;
  call->Finish(&status, reinterpret_cast<void*>(5));
  step();
  EXPECT_TRUE(status.ok()) << status.error_message();
  cq.Shutdown();
  void* tag = nullptr;
  bool ok = false;
  while (cq.Next(&tag, &ok)) {
  }
  std::vector<grpc::Slice> slices;
  ASSERT_TRUE(response.Dump(&slices).ok());
  std::string bytes;
  for (const auto& s : slices) bytes.append(reinterpret_cast<const char*>(s.begin()), s.size());
  EXPECT_THAT(bytes, HasSubstr(kSlowService));
  EXPECT_THAT(bytes, HasSubstr("grpc.health.v1.Health"));
}

TEST_F(SlowServerTest, ExposesProcessMetrics) {
  StartServerAndWaitUntilReady();
  const absl::StatusOr<std::string> metrics = HttpGet(metrics_port_, "/metrics");
  ASSERT_TRUE(metrics.ok()) << metrics.status();
  EXPECT_GT(MetricValue(*metrics, "process_resident_memory_bytes", {}).value_or(0), 1 << 20);
  EXPECT_GT(MetricValue(*metrics, "process_open_fds", {}).value_or(0), 3);
  EXPECT_GE(MetricValue(*metrics, "process_cpu_seconds_total", {}).value_or(-1), 0);
  const double start = MetricValue(*metrics, "process_start_time_seconds", {}).value_or(0);
  const double now = absl::ToDoubleSeconds(absl::Now() - absl::UnixEpoch());
  EXPECT_LE(start, now + 1);
  EXPECT_GT(start, now - 120);
  EXPECT_EQ(MetricValue(*metrics, "padlock_ready", {}), 1);
  EXPECT_EQ(MetricValue(*metrics, "padlock_build_info",
                        {{"service", "slow-server"}, {"version", "0.1.0"}}),
            1);
}

TEST_F(SlowServerTest, FailingReadinessCheckFlipsReadinessButNotLiveness) {
  StartServerAndWaitUntilReady();
  ASSERT_TRUE(SetReady(false).ok());
  ASSERT_TRUE(WaitFor([&] { return Health("") == HealthState::kNotServing; }, absl::Seconds(5)));
  EXPECT_EQ(Health(kSlowService), HealthState::kNotServing);
  EXPECT_EQ(Health("liveness"), HealthState::kServing);
  EXPECT_EQ(Scrape("padlock_readiness_check_ok", {{"check", "test-toggle"}}), 0);
  EXPECT_THAT(server_->ReadLog(), HasSubstr("\"check\":\"test-toggle\""));

  ASSERT_TRUE(SetReady(true).ok());
  ASSERT_TRUE(WaitFor([&] { return Health("") == HealthState::kServing; }, absl::Seconds(5)));
  EXPECT_EQ(Health(kSlowService), HealthState::kServing);
}

TEST_F(SlowServerTest, SigtermDuringSlowCallFinishesTheCallAndExitsZero) {
  StartServerAndWaitUntilReady();
  const auto sleep = Labels(kSlowService, "Sleep", "unary");
  grpc::Status call_status;
  SleepResponse response;
  std::thread caller([&] {
    grpc::ClientContext context;
    context.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(30)));
    SleepRequest request;
    request.set_millis(2000);
    call_status = stub_->Sleep(&context, request, &response);
  });
  // The call has reached the server before the signal.
  ASSERT_TRUE(WaitFor([&] { return Scrape("grpc_server_started_total", sleep) == 1; },
                      absl::Seconds(5)));

  const absl::Time signalled = absl::Now();
  ASSERT_EQ(::kill(server_->pid(), SIGTERM), 0);
  const absl::StatusOr<int> exit = server_->Wait(kGrace);
  const absl::Duration took = absl::Now() - signalled;
  caller.join();

  ASSERT_TRUE(exit.ok()) << "still running " << took << " after SIGTERM: " << exit.status();
  EXPECT_TRUE(WIFEXITED(*exit) && WEXITSTATUS(*exit) == 0) << "wait status " << *exit;
  EXPECT_LT(took, kGrace);
  EXPECT_TRUE(call_status.ok()) << call_status.error_code() << " " << call_status.error_message();
  EXPECT_EQ(response.millis(), 2000u);
  const std::string log = server_->ReadLog();
  EXPECT_THAT(log, HasSubstr("\"reason\":\"SIGTERM\""));
  EXPECT_THAT(log, HasSubstr("drain hook ran"));
  EXPECT_THAT(log, HasSubstr("\"msg\":\"stopped\""));
}

TEST_F(SlowServerTest, SigtermCancelsCallsStillRunningAtTheDeadline) {
  StartServerAndWaitUntilReady({{"PADLOCK_SHUTDOWN_GRACE", "1s"}});
  const auto sleep = Labels(kSlowService, "Sleep", "unary");
  grpc::Status call_status;
  std::thread caller([&] {
    grpc::ClientContext context;
    context.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(60)));
    SleepRequest request;
    request.set_millis(60000);
    SleepResponse response;
    call_status = stub_->Sleep(&context, request, &response);
  });
  ASSERT_TRUE(WaitFor([&] { return Scrape("grpc_server_started_total", sleep) == 1; },
                      absl::Seconds(5)));

  const absl::Time signalled = absl::Now();
  ASSERT_EQ(::kill(server_->pid(), SIGTERM), 0);
  // 1 s of grace plus however long a loaded machine takes to wind down; far below the 60 s call.
  const absl::StatusOr<int> exit = server_->Wait(absl::Seconds(20));
  const absl::Duration took = absl::Now() - signalled;
  caller.join();

  ASSERT_TRUE(exit.ok()) << "still running " << took << " after SIGTERM: " << exit.status();
  EXPECT_TRUE(WIFEXITED(*exit) && WEXITSTATUS(*exit) == 0) << "wait status " << *exit;
  EXPECT_GE(took, absl::Milliseconds(900));  // the call was given its grace period
  EXPECT_FALSE(call_status.ok());
  EXPECT_THAT(call_status.error_code(),
              ::testing::AnyOf(grpc::StatusCode::CANCELLED, grpc::StatusCode::UNAVAILABLE));
}

TEST_F(SlowServerTest, SecondSigtermExitsAtOnce) {
  StartServerAndWaitUntilReady();
  const auto sleep = Labels(kSlowService, "Sleep", "unary");
  std::thread caller([&] {
    grpc::ClientContext context;
    context.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(30)));
    SleepRequest request;
    request.set_millis(20000);
    SleepResponse response;
    stub_->Sleep(&context, request, &response);  // ends with the process, whatever the status
  });
  ASSERT_TRUE(WaitFor([&] { return Scrape("grpc_server_started_total", sleep) == 1; },
                      absl::Seconds(5)));
  ASSERT_EQ(::kill(server_->pid(), SIGTERM), 0);
  ASSERT_TRUE(WaitFor([&] { return server_->ReadLog().find("\"draining\"") != std::string::npos; },
                      absl::Seconds(5)));
  ASSERT_EQ(::kill(server_->pid(), SIGTERM), 0);
  // Below the 20 s call; the exit status (128 + SIGTERM, not 0) tells it did not drain.
  const absl::StatusOr<int> exit = server_->Wait(absl::Seconds(15));
  caller.join();
  ASSERT_TRUE(exit.ok()) << exit.status();
  ASSERT_TRUE(WIFEXITED(*exit)) << "wait status " << *exit;
  EXPECT_EQ(WEXITSTATUS(*exit), 128 + SIGTERM);
}

TEST_F(SlowServerTest, StuckHandlerCannotHoldShutdownBeyondTheWatchdog) {
  StartServerAndWaitUntilReady(
      {{"PADLOCK_SHUTDOWN_GRACE", "1s"}, {"PADLOCK_TEST_IGNORE_CANCEL", "true"}});
  const auto sleep = Labels(kSlowService, "Sleep", "unary");
  grpc::Status call_status;
  std::thread caller([&] {
    grpc::ClientContext context;
    context.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(60)));
    SleepRequest request;
    request.set_millis(60000);
    SleepResponse response;
    call_status = stub_->Sleep(&context, request, &response);
  });
  ASSERT_TRUE(WaitFor([&] { return Scrape("grpc_server_started_total", sleep) == 1; },
                      absl::Seconds(5)));
  const absl::Time signalled = absl::Now();
  ASSERT_EQ(::kill(server_->pid(), SIGTERM), 0);
  // 1 s grace + the 5 s hard-exit margin, well before the handler's 60 s (the rest is slack
  // for a loaded machine).
  const absl::StatusOr<int> exit = server_->Wait(absl::Seconds(30));
  const absl::Duration took = absl::Now() - signalled;
  caller.join();
  ASSERT_TRUE(exit.ok()) << exit.status();
  ASSERT_TRUE(WIFEXITED(*exit)) << "wait status " << *exit;
  EXPECT_EQ(WEXITSTATUS(*exit), 1);
  EXPECT_GE(took, absl::Seconds(5));
  EXPECT_FALSE(call_status.ok());
  EXPECT_THAT(server_->ReadLog(), HasSubstr("shutdown did not finish after the grace period"));
}

TEST_F(SlowServerTest, BadPortExitsWithStatusTwoNamingTheVariable) {
  StartServer({{"PADLOCK_GRPC_ADDRESS", ""}, {"PADLOCK_GRPC_PORT", "abc"}});
  const absl::StatusOr<int> exit = server_->Wait(absl::Seconds(10));
  ASSERT_TRUE(exit.ok()) << exit.status();
  ASSERT_TRUE(WIFEXITED(*exit));
  EXPECT_EQ(WEXITSTATUS(*exit), 2);

  const std::string log = server_->ReadLog();
  const std::vector<std::string> lines = absl::StrSplit(log, '\n', absl::SkipEmpty());
  bool found = false;
  for (const std::string& line : lines) {
    const auto fields = ParseJsonObject(line);
    ASSERT_TRUE(fields.has_value()) << "not a JSON object: " << line;
    if (fields->count("variable") == 0) continue;
    found = true;
    EXPECT_EQ(fields->at("level"), "error");
    EXPECT_EQ(fields->at("service"), "slow-server");
    EXPECT_EQ(fields->at("msg"), "invalid configuration");
    EXPECT_EQ(fields->at("variable"), "PADLOCK_GRPC_PORT");
    EXPECT_EQ(fields->at("error"), "not a port number: 'abc'");
  }
  EXPECT_TRUE(found) << log;
}

TEST_F(SlowServerTest, HealthcheckToolExitCodes) {
  StartServerAndWaitUntilReady();
  const std::string addr = absl::StrCat("--addr=127.0.0.1:", grpc_port_);
  std::string out;
  EXPECT_EQ(RunHealthcheck({addr}, &out), 0) << out;
  EXPECT_THAT(out, HasSubstr("SERVING"));
  EXPECT_EQ(RunHealthcheck({addr, "--service=liveness", "--timeout=3s"}, &out), 0) << out;
  EXPECT_EQ(RunHealthcheck({addr, "--service=no.such.Service"}, &out), 1) << out;

  ASSERT_TRUE(SetReady(false).ok());
  ASSERT_TRUE(WaitFor([&] { return Health("") == HealthState::kNotServing; }, absl::Seconds(5)));
  EXPECT_EQ(RunHealthcheck({addr}, &out), 1) << out;
  EXPECT_THAT(out, HasSubstr("NOT_SERVING"));
  EXPECT_EQ(RunHealthcheck({addr, "--service=liveness"}, &out), 0) << out;

  const int closed_port = FreeTcpPort();
  EXPECT_EQ(RunHealthcheck({absl::StrCat("--addr=127.0.0.1:", closed_port)}, &out), 2) << out;
  EXPECT_THAT(out, HasSubstr("UNREACHABLE"));
  EXPECT_EQ(RunHealthcheck({"--addr=nonsense"}, &out), 2) << out;
  EXPECT_EQ(RunHealthcheck({}, &out), 2) << out;
}

// ---- Connection admission (ConnectionAcceptor) -------------------------------------------------

// TCP connections from `source` (another loopback address, so that the test's gRPC client on
// 127.0.0.1 is a different address) that never send a byte: half-open clients.
// Non-blocking connects, so a full listen queue cannot stall the test.
class HalfOpenClients {
 public:
  ~HalfOpenClients() { CloseAll(); }
  // Returns how many sockets were created (connects complete in the kernel, asynchronously).
  int Open(int port, int count, const char* source = "127.0.0.2") {
    int opened = 0;
    for (int i = 0; i < count; ++i) {
      const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
      if (fd < 0) break;
      sockaddr_in from{};
      from.sin_family = AF_INET;
      ::inet_pton(AF_INET, source, &from.sin_addr);
      sockaddr_in to{};
      to.sin_family = AF_INET;
      to.sin_port = htons(static_cast<uint16_t>(port));
      ::inet_pton(AF_INET, "127.0.0.1", &to.sin_addr);
      if (::bind(fd, reinterpret_cast<sockaddr*>(&from), sizeof(from)) != 0 ||
          (::connect(fd, reinterpret_cast<sockaddr*>(&to), sizeof(to)) != 0 &&
           errno != EINPROGRESS)) {
        ::close(fd);
        break;
      }
      fds_.push_back(fd);
      ++opened;
    }
    return opened;
  }
  // How many the server has closed (EOF or reset seen).
  int ClosedByServer() {
    std::vector<pollfd> polls;
    for (int fd : fds_) polls.push_back({fd, POLLIN | POLLRDHUP, 0});
    ::poll(polls.data(), polls.size(), 0);
    int closed = 0;
    for (const pollfd& p : polls) {
      if ((p.revents & (POLLRDHUP | POLLHUP | POLLERR)) != 0) ++closed;
    }
    return closed;
  }
  void CloseAll() {
    for (int fd : fds_) ::close(fd);
    fds_.clear();
  }
  int size() const { return static_cast<int>(fds_.size()); }

 private:
  std::vector<int> fds_;
};

class AdmissionTest : public SlowServerTest {
 protected:
  // A call on a fresh channel (a new connection), as a client arriving now would make.
  grpc::Status FreshCall(absl::Duration deadline = absl::Seconds(5)) {
    auto channel = grpc::CreateCustomChannel(absl::StrCat("127.0.0.1:", grpc_port_),
                                             grpc::InsecureChannelCredentials(), FreshArgs());
    auto stub = SlowService::NewStub(channel);
    grpc::ClientContext context;
    context.set_deadline(absl::ToChronoTime(absl::Now() + deadline));
    SleepRequest request;
    SleepResponse response;
    return stub->Sleep(&context, request, &response);
  }
  static grpc::ChannelArguments FreshArgs() {
    grpc::ChannelArguments args;
    args.SetInt("grpc.padlock_fresh", ++fresh_);  // never share a subchannel
    args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 100);
    args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 200);
    return args;
  }
  static inline int fresh_ = 0;
};

// One address holding many connections that never speak HTTP/2. Its connections
// beyond the per-address cap are closed at once, those within it by the handshake deadline; a
// client from another address is served during and after; the gateway accepts after they
// close; metrics count it all.
TEST_F(AdmissionTest, HalfOpenFloodFromOneAddressIsCappedAndTimedOut) {
  StartServerAndWaitUntilReady({{"PADLOCK_TEST_ADMISSION", "true"},
                                {"PADLOCK_MAX_CONNECTIONS", "5000"},
                                {"PADLOCK_MAX_CONNECTIONS_PER_ADDRESS", "200"},
                                {"PADLOCK_HANDSHAKE_TIMEOUT", "2s"}});
  HalfOpenClients flood;
  ASSERT_EQ(flood.Open(grpc_port_, 1000), 1000);
  ASSERT_TRUE(WaitFor(
      [&] {
        return Scrape("padlock_connections_refused_total", {{"reason", "per_address"}}) >= 800;
      },
      absl::Seconds(20)))
      << server_->ReadLog();
  EXPECT_LE(Scrape("padlock_connections_open", {}), 200 + 2);  // + this test's channels
  // During: another address is served.
  EXPECT_TRUE(FreshCall().ok());
  // The handshake deadline closes the 200 that were admitted and never spoke.
  ASSERT_TRUE(WaitFor([&] { return flood.ClosedByServer() == 1000; }, absl::Seconds(30)))
      << flood.ClosedByServer() << " of 1000 closed";
  ASSERT_TRUE(WaitFor([&] { return Scrape("padlock_connections_open", {}) <= 2; },
                      absl::Seconds(10)));
  flood.CloseAll();
  // After: new connections are accepted, from the flooding address's neighbours as from others.
  EXPECT_TRUE(FreshCall().ok());
  EXPECT_GE(Scrape("padlock_connections_accepted_total", {}), 200);
  EXPECT_EQ(Health("liveness"), HealthState::kServing);
}

TEST_F(AdmissionTest, GlobalCapRefusesBeyondItAndRecovers) {
  StartServerAndWaitUntilReady({{"PADLOCK_TEST_ADMISSION", "true"},
                                {"PADLOCK_MAX_CONNECTIONS", "50"},
                                {"PADLOCK_MAX_CONNECTIONS_PER_ADDRESS", "0"},
                                {"PADLOCK_HANDSHAKE_TIMEOUT", "60s"}});
  HalfOpenClients flood;
  ASSERT_EQ(flood.Open(grpc_port_, 100), 100);
  ASSERT_TRUE(WaitFor(
      [&] {
        return Scrape("padlock_connections_refused_total", {{"reason", "max_connections"}}) >=
               50;
      },
      absl::Seconds(20)));
  EXPECT_EQ(Scrape("padlock_connections_max", {}), 50);
  flood.CloseAll();
  // The sweep notices the closed connections; new ones are admitted again.
  ASSERT_TRUE(WaitFor([&] { return FreshCall(absl::Seconds(1)).ok(); }, absl::Seconds(20)));
}

// gRPC 1.51's own accept loop stops for good on EMFILE. Here the server runs with 128
// descriptors and room for more connections than that: a flood exhausts the descriptors, the
// acceptor refuses what waits (instead of leaving it in the queue), liveness goes NOT_SERVING,
// and once the flood closes, the same process accepts and serves again by itself.
TEST_F(AdmissionTest, AcceptLoopResumesAfterRunningOutOfDescriptors) {
  argv_prefix_ = {"prlimit", "--nofile=128:128", "--"};
  StartServerAndWaitUntilReady({{"PADLOCK_TEST_ADMISSION", "true"},
                                {"PADLOCK_MAX_CONNECTIONS", "100000"},
                                {"PADLOCK_MAX_CONNECTIONS_PER_ADDRESS", "0"},
                                {"PADLOCK_FD_HEADROOM", "0"},
                                {"PADLOCK_HANDSHAKE_TIMEOUT", "60s"},
                                {"PADLOCK_ACCEPT_STUCK_AFTER", "300ms"}});
  const int accepted_before = static_cast<int>(Scrape("padlock_connections_accepted_total", {}));
  HalfOpenClients flood;
  ASSERT_EQ(flood.Open(grpc_port_, 300), 300);
  // Out of descriptors: logged once, the waiting connections are closed rather than left to hang.
  ASSERT_TRUE(WaitFor(
      [&] {
        return server_->ReadLog().find("accept failed: out of descriptors") != std::string::npos;
      },
      absl::Seconds(20)))
      << server_->ReadLog();
  ASSERT_TRUE(WaitFor([&] { return flood.ClosedByServer() > 0; }, absl::Seconds(20)));
  ASSERT_TRUE(WaitFor(
      [&] {
        return server_->ReadLog().find("cannot accept connections; reporting liveness "
                                       "NOT_SERVING") != std::string::npos;
      },
      absl::Seconds(20)))
      << server_->ReadLog();

  flood.CloseAll();
  ASSERT_TRUE(WaitFor([&] { return FreshCall(absl::Seconds(1)).ok(); }, absl::Seconds(30)))
      << server_->ReadLog();
  EXPECT_TRUE(WaitFor([&] { return Health("liveness") == HealthState::kServing; },
                      absl::Seconds(10)));
  EXPECT_GE(Scrape("padlock_accept_errors_total", {{"error", "EMFILE"}}), 1);
  EXPECT_GE(Scrape("padlock_connections_refused_total", {{"reason", "fd_exhausted"}}), 1);
  EXPECT_GT(Scrape("padlock_connections_accepted_total", {}), accepted_before + 1);
  EXPECT_TRUE(server_->running());
}

// gRPC answers a unary request that does not parse with UNIMPLEMENTED and no message; the
// runtime turns that into INVALID_ARGUMENT with a reason (every service, admission or not).
TEST_F(SlowServerTest, GarbageUnaryRequestIsInvalidArgumentWithAReason) {
  StartServerAndWaitUntilReady();
  grpc::GenericStub generic(channel_);
  grpc::ClientContext context;
  context.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(5)));
  grpc::CompletionQueue cq;
  const std::string garbage = "\xff\xff\xff\xff\x0f garbage";
  grpc::Slice slice(garbage);
  grpc::ByteBuffer request(&slice, 1);
  grpc::ByteBuffer response;
  grpc::Status status;
  auto call = generic.PrepareUnaryCall(&context, absl::StrCat("/", kSlowService, "/Sleep"),
                                       request, &cq);
  call->StartCall();
  call->Finish(&response, &status, reinterpret_cast<void*>(1));
  void* tag = nullptr;
  bool ok = false;
  ASSERT_TRUE(cq.Next(&tag, &ok));
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(), HasSubstr("malformed request"));
  EXPECT_THAT(status.error_message(), HasSubstr("SlowService/Sleep"));
  EXPECT_EQ(Scrape("grpc_server_handled_total",
                   WithCode(Labels(kSlowService, "Sleep", "unary"), "INVALID_ARGUMENT")),
            1);
  cq.Shutdown();
  while (cq.Next(&tag, &ok)) {
  }
}

}  // namespace
}  // namespace padlock::runtime
