// padlock-loadgen against the real stack (its default h2 transport, and one chat run over the
// gRPC client): short chat, group and backlog runs in which every sent envelope must be accepted
// and counted exactly once at its receiver (zero losses, zero duplicates, no refusals, no stream
// failures); a short claims run in which every claim must be answered with the target's bundle
// and a verifying signed prekey; and the /proc measurement must find the gateway by its port.
// Counts only: no timing assertions (figures belong in bench/).
//
// Every run is bounded by a send count (Options::count), never by a duration: the same work, and
// so the same verdict, on a fast machine and a slow one. A duration-bounded claims run once made
// a fast machine exhaust the key-directory's per-target claim burst.
#include <gtest/gtest-spi.h>
#include <gtest/gtest.h>

#include <memory>

#include "absl/strings/match.h"

#include "bench/loadgen/loadgen.h"
#include "bench/loadgen/proc_stats.h"
#include "tests/harness/stack.h"

namespace padlock::loadgen {
namespace {

class LoadgenE2e : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    absl::StatusOr<std::unique_ptr<testing::PadlockStack>> stack =
        testing::PadlockStack::Start({.gateways = 1});
    ASSERT_TRUE(stack.ok()) << stack.status();
    stack_ = std::move(*stack).release();
  }
  static void TearDownTestSuite() {
    delete stack_;
    stack_ = nullptr;
  }
  void SetUp() override { ASSERT_NE(stack_, nullptr) << "the stack did not start"; }

  // A short run of `count` sends against the test stack, measuring the gateway by pid.
  static Options Short(const std::string& scenario, int devices, uint64_t count) {
    Options o;
    o.scenario = scenario;
    o.target = stack_->gateway_target(0);
    o.devices = devices;
    o.count = count;
    o.drain_seconds = 60;
    o.ready_timeout_seconds = 120;
    o.quiet = true;
    o.watch = {WatchSpec{.name = "gateway", .pid = stack_->gateway_pid(0)}};
    return o;
  }

  static void ExpectEveryEnvelopeOnce(const Report& r, uint64_t copies_per_send) {
    EXPECT_GT(r.sent, 0u);
    EXPECT_EQ(r.accepted, r.sent) << r.first_failure;
    EXPECT_EQ(r.received, r.accepted * copies_per_send) << r.first_failure;
    EXPECT_EQ(r.losses, 0u);
    EXPECT_EQ(r.duplicates, 0u);
    EXPECT_EQ(r.redelivered, 0u);
    EXPECT_EQ(r.inbox_gaps, 0u);
    EXPECT_EQ(r.refused, 0u);
    EXPECT_EQ(r.mismatched, 0u);
    EXPECT_EQ(r.stream_errors, 0u);
    EXPECT_EQ(r.stream_failures, 0u) << r.first_failure;
    EXPECT_EQ(r.unparsable, 0u);
    EXPECT_EQ(r.repeated_acks, 0u);
    EXPECT_TRUE(r.Clean());
  }

  static testing::PadlockStack* stack_;
};

testing::PadlockStack* LoadgenE2e::stack_ = nullptr;

// Every claim of a claims run answered with a verified bundle: nothing refused or mismatched.
void ExpectEveryClaimAnswered(const Report& r) {
  EXPECT_GT(r.sent, 0u);
  EXPECT_EQ(r.accepted, r.sent) << r.first_failure;
  EXPECT_EQ(r.received, r.accepted);
  EXPECT_EQ(r.refused, 0u) << "claims refused: " << r.first_failure;
  EXPECT_EQ(r.mismatched, 0u) << r.first_failure;
  EXPECT_TRUE(r.Clean());
}

TEST_F(LoadgenE2e, ChatRunCountsEverySentEnvelopeOnceAtItsReceiver) {
  Options o = Short("chat", 20, 2000);
  o.window = 4;
  absl::StatusOr<Report> r = loadgen::Run(o);
  ASSERT_TRUE(r.ok()) << r.status() << "\n" << stack_->Logs();
  ExpectEveryEnvelopeOnce(*r, 1);
  EXPECT_EQ(r->sent, 2000u);
  EXPECT_EQ(r->transport, "h2");  // the default
  EXPECT_GT(r->delivered_in_window, 0u);
  EXPECT_GT(r->latency_ms_p50, 0);
  ASSERT_EQ(r->processes.size(), 1u);
  EXPECT_EQ(r->processes[0].pid, stack_->gateway_pid(0));
}

// The same over the gRPC callback client (--transport=grpc, what TLS runs use): both transports
// feed the same device logic, and both must count every envelope once.
TEST_F(LoadgenE2e, ChatRunOverTheGrpcTransportCountsEverySentEnvelopeOnce) {
  Options o = Short("chat", 20, 1000);
  o.window = 4;
  o.transport = "grpc";
  absl::StatusOr<Report> r = loadgen::Run(o);
  ASSERT_TRUE(r.ok()) << r.status() << "\n" << stack_->Logs();
  ExpectEveryEnvelopeOnce(*r, 1);
  EXPECT_EQ(r->sent, 1000u);
  EXPECT_EQ(r->transport, "grpc");
}

// Reconnect-and-resend mode (what tests/chaos runs) on a healthy stack: the same counts, and
// nothing resent, reconnected or redelivered, since nothing broke.
TEST_F(LoadgenE2e, ResendModeOnAHealthyStackCountsEveryEnvelopeOnceAndResendsNothing) {
  Options o = Short("chat", 20, 1000);
  o.window = 4;
  o.reconnect_and_resend = true;
  absl::StatusOr<Report> r = loadgen::Run(o);
  ASSERT_TRUE(r.ok()) << r.status() << "\n" << stack_->Logs();
  ExpectEveryEnvelopeOnce(*r, 1);
  EXPECT_EQ(r->sent, 1000u);
  EXPECT_TRUE(r->reconnect_and_resend);
  EXPECT_EQ(r->resent, 0u);
  EXPECT_EQ(r->retried_refusals, 0u);
  EXPECT_EQ(r->reconnects, 0u);
  EXPECT_EQ(r->unaccepted, 0u);
  EXPECT_TRUE(r->recoveries.empty());
}

TEST_F(LoadgenE2e, OpenLoopRunCountsEverySentEnvelopeOnce) {
  Options o = Short("open", 10, 400);
  o.rate = 200;
  absl::StatusOr<Report> r = loadgen::Run(o);
  ASSERT_TRUE(r.ok()) << r.status() << "\n" << stack_->Logs();
  ExpectEveryEnvelopeOnce(*r, 1);
  EXPECT_EQ(r->sent, 400u);
}

TEST_F(LoadgenE2e, SparseRunMeasuresTheIdlePhaseThenCountsEverySentEnvelopeOnce) {
  Options o = Short("sparse", 10, 300);
  o.rate = 300;
  o.idle_hold_seconds = 0.5;
  absl::StatusOr<Report> r = loadgen::Run(o);
  ASSERT_TRUE(r.ok()) << r.status() << "\n" << stack_->Logs();
  ExpectEveryEnvelopeOnce(*r, 1);
  EXPECT_EQ(r->sent, 300u);
  EXPECT_GE(r->idle_seconds, 0.5);
  ASSERT_EQ(r->idle_processes.size(), 1u);  // the gateway, measured apart from the open loop
  EXPECT_EQ(r->idle_processes[0].pid, stack_->gateway_pid(0));
  EXPECT_EQ(r->idle_stack_cpu_percent, r->idle_processes[0].cpu_percent);
  ASSERT_EQ(r->processes.size(), 1u);
}

TEST_F(LoadgenE2e, GroupRunDeliversEverySharedPayloadToEveryMemberOnce) {
  Options o = Short("group", 9, 200);  // 1 sender, 8 members
  o.window = 2;
  absl::StatusOr<Report> r = loadgen::Run(o);
  ASSERT_TRUE(r.ok()) << r.status() << "\n" << stack_->Logs();
  ExpectEveryEnvelopeOnce(*r, 8);
  EXPECT_EQ(r->sent, 200u);
}

TEST_F(LoadgenE2e, BacklogIsDrainedCompletelyAfterConnect) {
  Options o = Short("backlog", 2, 0);
  o.backlog_messages = 500;
  o.window = 16;
  absl::StatusOr<Report> r = loadgen::Run(o);
  ASSERT_TRUE(r.ok()) << r.status() << "\n" << stack_->Logs();
  ExpectEveryEnvelopeOnce(*r, 1);
  EXPECT_EQ(r->backlog_messages, 500u);
  EXPECT_EQ(r->received, 500u);
}

TEST_F(LoadgenE2e, ClaimsRunAnswersEveryClaimWithAVerifiedBundle) {
  // 400 claims over 40 devices, spread evenly: each device is claimed 10 times and claims 10
  // times, far inside the key-directory's per-target (60) and per-requester (120) bursts however
  // fast the machine answers, and inside the 20 one-time prekeys each uploaded.
  Options o = Short("claims", 40, 400);
  o.window = 2;
  o.prekeys = 20;
  absl::StatusOr<Report> r = loadgen::Run(o);
  ASSERT_TRUE(r.ok()) << r.status() << "\n" << stack_->Logs();
  ExpectEveryClaimAnswered(*r);
  EXPECT_EQ(r->sent, 400u);
  EXPECT_EQ(r->delivered_in_window, 400u);
  EXPECT_EQ(r->claims_without_prekey, 0u);
}

// The check above still bites: a run that the key-directory must refuse in part (300 claims over
// 2 devices: 150 per target against a burst of 60 refilled at 1/s) is counted as refused, and the
// same check fails on it.
TEST_F(LoadgenE2e, ClaimsRunCountsRefusalsAndTheCheckFailsOnThem) {
  Options o = Short("claims", 2, 300);
  o.window = 2;
  o.prekeys = 1;
  absl::StatusOr<Report> r = loadgen::Run(o);
  ASSERT_TRUE(r.ok()) << r.status() << "\n" << stack_->Logs();
  EXPECT_EQ(r->sent, 300u);
  EXPECT_GT(r->refused, 0u);
  EXPECT_EQ(r->accepted + r->refused, r->sent) << r->first_failure;
  EXPECT_EQ(r->mismatched, 0u) << r->first_failure;
  EXPECT_NE(r->first_failure.find("rate-limited"), std::string::npos) << r->first_failure;
  // The check run on this report, its failures caught instead of reported: it must fail, and
  // name the refusal.
  ::testing::TestPartResultArray failures;
  {
    ::testing::ScopedFakeTestPartResultReporter catcher(
        ::testing::ScopedFakeTestPartResultReporter::INTERCEPT_ONLY_CURRENT_THREAD, &failures);
    ExpectEveryClaimAnswered(*r);
  }
  bool names_refusal = false;
  for (int i = 0; i < failures.size(); ++i) {
    names_refusal |= absl::StrContains(failures.GetTestPartResult(i).message(), "claims refused");
  }
  EXPECT_GE(failures.size(), 1);
  EXPECT_TRUE(names_refusal);
}

TEST_F(LoadgenE2e, FindsTheGatewayByItsListeningPort) {
  absl::StatusOr<pid_t> pid = FindListeningPid(stack_->gateway_port(0));
  ASSERT_TRUE(pid.ok()) << pid.status();
  EXPECT_EQ(*pid, stack_->gateway_pid(0));
  absl::StatusOr<ProcessUsage> usage = ReadUsage(*pid, /*tree=*/false);
  ASSERT_TRUE(usage.ok()) << usage.status();
  EXPECT_GT(usage->rss_kib, 0u);
  EXPECT_GE(usage->hwm_kib, usage->rss_kib);
}

}  // namespace
}  // namespace padlock::loadgen
