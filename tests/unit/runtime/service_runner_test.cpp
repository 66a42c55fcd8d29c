// ServiceRunner in process, on 127.0.0.1 port 0 only: health, readiness, metrics, drain.

#include "services/common/runtime/server.h"

#include <grpcpp/create_channel.h>
#include <grpcpp/generic/generic_stub.h>
#include <prometheus/counter.h>

#include <atomic>
#include <condition_variable>
#include <mutex>
#include <memory>
#include <thread>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "services/common/runtime/health_client.h"
#include "tests/harness/harness.h"
#include "tests/unit/runtime/runtime_test_util.h"

namespace padlock::runtime {
namespace {

using ::padlock::runtime::testing::HttpGet;
using ::padlock::runtime::testing::MetricValue;
using ::padlock::runtime::testing::ScrapeValue;
using ::padlock::testing::WaitFor;
using ::testing::HasSubstr;

ServerOptions LoopbackOptions() {
  ServerOptions options;
  options.service_name = "unit";
  options.listen_address = "127.0.0.1:0";
  options.metrics_host = "127.0.0.1";
  options.metrics_port = 0;
  options.grace_period = absl::Seconds(2);
  options.readiness_poll_interval = absl::Milliseconds(10);
  options.handle_signals = false;
  return options;
}

// Under TSan these run too: tests/tsan.supp suppresses reports inside Debian's uninstrumented
// gRPC, Abseil and protobuf (their synchronisation is invisible to TSan), by library, so a race
// whose frames are in Padlock code still fails the run.
class ServiceRunnerTest : public ::testing::Test {
 protected:
  void StartRunner() {
    runner_ = std::make_unique<ServiceRunner>(LoopbackOptions());
    runner_->AddReadinessCheck("toggle", [this]() -> absl::Status {
      if (ready_.load()) return absl::OkStatus();
      return absl::UnavailableError("toggle off");
    });
    runner_->AddDrainHook([this](absl::Time deadline) {
      drain_deadline_ = deadline;
      drain_hook_ran_.store(true);
    });
    ASSERT_TRUE(runner_->Start().ok());
    channel_ = grpc::CreateChannel(absl::StrCat("127.0.0.1:", runner_->grpc_port()),
                                   grpc::InsecureChannelCredentials());
  }

  HealthState Health(std::string_view service) {
    auto state = CheckHealth(channel_, service, absl::Seconds(2));
    return state.ok() ? *state : HealthState::kUnknown;
  }

  std::atomic<bool> ready_{true};
  std::atomic<bool> drain_hook_ran_{false};
  absl::Time drain_deadline_;  // written by the drain hook, read after Wait returned
  std::unique_ptr<ServiceRunner> runner_;
  std::shared_ptr<grpc::Channel> channel_;
};

TEST_F(ServiceRunnerTest, BindsPortZeroAndReportsServing) {
  StartRunner();
  EXPECT_GT(runner_->grpc_port(), 0);
  EXPECT_GT(runner_->metrics_port(), 0);
  EXPECT_EQ(Health(""), HealthState::kServing);
  EXPECT_EQ(Health("liveness"), HealthState::kServing);
  EXPECT_EQ(CheckHealth(channel_, "nope", absl::Seconds(2)).status().code(),
            absl::StatusCode::kNotFound);
}

TEST_F(ServiceRunnerTest, FailingCheckFlipsReadinessAndBack) {
  StartRunner();
  ready_.store(false);
  ASSERT_TRUE(WaitFor([&] { return Health("") == HealthState::kNotServing; }, absl::Seconds(5)));
  EXPECT_EQ(Health("liveness"), HealthState::kServing);
  ready_.store(true);
  ASSERT_TRUE(WaitFor([&] { return Health("") == HealthState::kServing; }, absl::Seconds(5)));
}

// A dependency that accepts and never answers: the check blocks. Readiness must not wait for it
// to time out on its own (readiness lagged by seconds).
TEST_F(ServiceRunnerTest, CheckThatDoesNotAnswerFlipsReadinessAndBack) {
  std::mutex mu;
  std::condition_variable cv;
  bool frozen = false;
  ServerOptions options = LoopbackOptions();
  options.readiness_check_timeout = absl::Milliseconds(50);
  runner_ = std::make_unique<ServiceRunner>(options);
  runner_->AddReadinessCheck("frozen", [&]() -> absl::Status {
    std::unique_lock lock(mu);
    // Bounded, as a real check's deadline would be.
    cv.wait_for(lock, std::chrono::seconds(30), [&] { return !frozen; });
    return absl::OkStatus();
  });
  ASSERT_TRUE(runner_->Start().ok());
  channel_ = grpc::CreateChannel(absl::StrCat("127.0.0.1:", runner_->grpc_port()),
                                 grpc::InsecureChannelCredentials());
  ASSERT_EQ(Health(""), HealthState::kServing);
  {
    std::lock_guard lock(mu);
    frozen = true;
  }
  ASSERT_TRUE(WaitFor([&] { return Health("") == HealthState::kNotServing; }, absl::Seconds(5)));
  {
    std::lock_guard lock(mu);
    frozen = false;
  }
  cv.notify_all();
  ASSERT_TRUE(WaitFor([&] { return Health("") == HealthState::kServing; }, absl::Seconds(5)));
  runner_.reset();  // drains (joins the check's thread) while `mu` and `cv` still exist
}

TEST_F(ServiceRunnerTest, ReadinessIsEvaluatedBeforeStartReturns) {
  ready_.store(false);
  StartRunner();
  EXPECT_EQ(Health(""), HealthState::kNotServing);
  EXPECT_EQ(Health("liveness"), HealthState::kServing);
}

TEST_F(ServiceRunnerTest, ServesMetricsWithGrpcAndDomainSeries) {
  StartRunner();
  auto& family = prometheus::BuildCounter()
                     .Name("padlock_unit_things_total")
                     .Help("Things.")
                     .Register(runner_->metrics());
  family.Add({}).Increment(3);
  ASSERT_EQ(Health(""), HealthState::kServing);

  const absl::StatusOr<std::string> body = HttpGet(runner_->metrics_port(), "/metrics");
  ASSERT_TRUE(body.ok()) << body.status();
  EXPECT_EQ(MetricValue(*body, "padlock_unit_things_total", {}), 3);
  EXPECT_EQ(MetricValue(*body, "grpc_server_handled_total",
                        {{"grpc_service", "grpc.health.v1.Health"},
                         {"grpc_method", "Check"},
                         {"grpc_type", "unary"},
                         {"grpc_code", "OK"}}),
            1);
  // Known methods start at zero for every code, so that rate() works from the first scrape.
  EXPECT_EQ(MetricValue(*body, "grpc_server_handled_total",
                        {{"grpc_service", "grpc.health.v1.Health"},
                         {"grpc_method", "Watch"},
                         {"grpc_type", "server_stream"},
                         {"grpc_code", "UNAVAILABLE"}}),
            0);
  EXPECT_TRUE(MetricValue(*body, "process_open_fds", {}).has_value());
  EXPECT_EQ(MetricValue(*body, "padlock_readiness_check_ok", {{"check", "toggle"}}), 1);
}

TEST_F(ServiceRunnerTest, RequestShutdownDrainsAndStopsServing) {
  StartRunner();
  const int grpc_port = runner_->grpc_port();
  const int metrics_port = runner_->metrics_port();
  std::thread waiter([&] { runner_->Wait(); });
  const absl::Time requested = absl::Now();
  runner_->RequestShutdown();
  waiter.join();

  EXPECT_TRUE(drain_hook_ran_.load());
  EXPECT_GE(drain_deadline_, requested + absl::Seconds(2) - absl::Milliseconds(1));
  EXPECT_LE(drain_deadline_, absl::Now() + absl::Seconds(2));
  EXPECT_FALSE(padlock::testing::TcpPortOpen(grpc_port));
  EXPECT_FALSE(padlock::testing::TcpPortOpen(metrics_port));
  runner_->Wait();  // returns at once once drained
}

TEST_F(ServiceRunnerTest, StartTwiceIsFailedPrecondition) {
  StartRunner();
  EXPECT_EQ(runner_->Start().code(), absl::StatusCode::kFailedPrecondition);
}

TEST_F(ServiceRunnerTest, PortInUseIsUnavailable) {
  StartRunner();
  ServerOptions options = LoopbackOptions();
  options.listen_address = absl::StrCat("127.0.0.1:", runner_->grpc_port());
  ServiceRunner second(options);
  EXPECT_EQ(second.Start().code(), absl::StatusCode::kUnavailable);

  ServerOptions metrics_clash = LoopbackOptions();
  metrics_clash.metrics_port = runner_->metrics_port();
  ServiceRunner third(metrics_clash);
  const absl::Status status = third.Start();
  EXPECT_EQ(status.code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(std::string(status.message()), HasSubstr("metrics"));
}

TEST_F(ServiceRunnerTest, CountsUnknownMethodsWithoutTheirNames) {
  StartRunner();
  grpc::GenericStub generic(channel_);
  grpc::ClientContext context;
  context.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(5)));
  grpc::CompletionQueue cq;
  grpc::ByteBuffer request;
  grpc::ByteBuffer response;
  grpc::Status status;
  auto call = generic.PrepareUnaryCall(&context, "/attacker.Chosen/Name", request, &cq);
  call->StartCall();
  call->Finish(&response, &status, reinterpret_cast<void*>(1));
  void* tag = nullptr;
  bool ok = false;
  ASSERT_TRUE(cq.Next(&tag, &ok));
  cq.Shutdown();
  while (cq.Next(&tag, &ok)) {
  }
  EXPECT_EQ(status.error_code(), grpc::StatusCode::UNIMPLEMENTED);

  const absl::StatusOr<std::string> body = HttpGet(runner_->metrics_port(), "/metrics");
  ASSERT_TRUE(body.ok());
  EXPECT_THAT(*body, ::testing::Not(HasSubstr("attacker")));
  // gRPC dispatches an unregistered method as a bidi stream.
  EXPECT_EQ(MetricValue(*body, "grpc_server_handled_total",
                        {{"grpc_service", "unknown"},
                         {"grpc_method", "unknown"},
                         {"grpc_type", "bidi_stream"},
                         {"grpc_code", "UNIMPLEMENTED"}}),
            1);
}

}  // namespace
}  // namespace padlock::runtime
