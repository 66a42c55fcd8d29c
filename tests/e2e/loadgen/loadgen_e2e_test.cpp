// padlock-loadgen against the real stack: short chat, group and backlog runs in which every
// sent envelope must be accepted and counted exactly once at its receiver (zero losses, zero
// duplicates, no refusals, no stream failures); a short claims run in which every claim must be
// answered with the target's bundle and a verifying signed prekey; and the /proc measurement must
// find the gateway by its port. Counts only: no timing assertions (figures belong in bench/).
#include <gtest/gtest.h>

#include <memory>

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

  // A short run against the test stack, measuring the gateway by pid.
  static Options Short(const std::string& scenario, int devices) {
    Options o;
    o.scenario = scenario;
    o.target = stack_->gateway_target(0);
    o.devices = devices;
    o.warmup_seconds = 0.5;
    o.duration_seconds = 2;
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

TEST_F(LoadgenE2e, ChatRunCountsEverySentEnvelopeOnceAtItsReceiver) {
  Options o = Short("chat", 20);
  o.window = 4;
  absl::StatusOr<Report> r = loadgen::Run(o);
  ASSERT_TRUE(r.ok()) << r.status() << "\n" << stack_->Logs();
  ExpectEveryEnvelopeOnce(*r, 1);
  EXPECT_GT(r->delivered_in_window, 0u);
  EXPECT_GT(r->latency_ms_p50, 0);
  ASSERT_EQ(r->processes.size(), 1u);
  EXPECT_EQ(r->processes[0].pid, stack_->gateway_pid(0));
}

TEST_F(LoadgenE2e, OpenLoopRunCountsEverySentEnvelopeOnce) {
  Options o = Short("open", 10);
  o.rate = 200;
  absl::StatusOr<Report> r = loadgen::Run(o);
  ASSERT_TRUE(r.ok()) << r.status() << "\n" << stack_->Logs();
  ExpectEveryEnvelopeOnce(*r, 1);
  // 2.5 s at 200/s, whatever the pacer's rounding: at least the measured part was offered.
  EXPECT_GE(r->sent, 400u);
}

TEST_F(LoadgenE2e, GroupRunDeliversEverySharedPayloadToEveryMemberOnce) {
  Options o = Short("group", 9);  // 1 sender, 8 members
  o.window = 2;
  absl::StatusOr<Report> r = loadgen::Run(o);
  ASSERT_TRUE(r.ok()) << r.status() << "\n" << stack_->Logs();
  ExpectEveryEnvelopeOnce(*r, 8);
}

TEST_F(LoadgenE2e, BacklogIsDrainedCompletelyAfterConnect) {
  Options o = Short("backlog", 2);
  o.backlog_messages = 500;
  o.window = 16;
  absl::StatusOr<Report> r = loadgen::Run(o);
  ASSERT_TRUE(r.ok()) << r.status() << "\n" << stack_->Logs();
  ExpectEveryEnvelopeOnce(*r, 1);
  EXPECT_EQ(r->backlog_messages, 500u);
  EXPECT_EQ(r->received, 500u);
}

TEST_F(LoadgenE2e, ClaimsRunAnswersEveryClaimWithAVerifiedBundle) {
  // 40 targets with 20 one-time prekeys each: a short run stays well inside the key-directory's
  // per-target and per-requester claim bursts, so every claim must be answered.
  Options o = Short("claims", 40);
  o.window = 2;
  o.prekeys = 20;
  o.warmup_seconds = 0.2;
  o.duration_seconds = 1;
  absl::StatusOr<Report> r = loadgen::Run(o);
  ASSERT_TRUE(r.ok()) << r.status() << "\n" << stack_->Logs();
  EXPECT_GT(r->sent, 0u);
  EXPECT_EQ(r->accepted, r->sent) << r->first_failure;
  EXPECT_EQ(r->received, r->accepted);
  EXPECT_EQ(r->refused, 0u) << r->first_failure;
  EXPECT_EQ(r->mismatched, 0u) << r->first_failure;
  EXPECT_GT(r->delivered_in_window, 0u);
  EXPECT_LE(r->claims_without_prekey, r->accepted);
  EXPECT_TRUE(r->Clean());
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
