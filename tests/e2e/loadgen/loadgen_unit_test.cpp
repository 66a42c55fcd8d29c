// The load generator's pure parts: the payload it counts by, the latency histogram, flag parsing,
// the resend-mode verdict and the fault monitor's recovery times.
#include <gtest/gtest.h>

#include "bench/loadgen/device_stream.h"
#include "bench/loadgen/latency_histogram.h"
#include "bench/loadgen/loadgen.h"

namespace padlock::loadgen {
namespace {

TEST(LoadgenPayload, RoundTripsSenderSequenceAndTimeAtTheRequestedSize) {
  std::string payload;
  EncodePayload(7, 123456789012ull, 987654321ull, 160, payload);
  ASSERT_EQ(payload.size(), 160u);
  uint32_t sender = 0;
  uint64_t sequence = 0, nanos = 0;
  ASSERT_TRUE(DecodePayload(payload, sender, sequence, nanos));
  EXPECT_EQ(sender, 7u);
  EXPECT_EQ(sequence, 123456789012ull);
  EXPECT_EQ(nanos, 987654321ull);
}

TEST(LoadgenPayload, RejectsForeignOrCorruptedPayloads) {
  std::string payload;
  EncodePayload(1, 2, 3, 160, payload);
  uint32_t sender = 0;
  uint64_t sequence = 0, nanos = 0;
  std::string corrupted = payload;
  corrupted[9] ^= 1;  // the sequence no longer matches its check word
  EXPECT_FALSE(DecodePayload(corrupted, sender, sequence, nanos));
  EXPECT_FALSE(DecodePayload(std::string(160, 'x'), sender, sequence, nanos));
  EXPECT_FALSE(DecodePayload(payload.substr(0, 10), sender, sequence, nanos));
}

TEST(LatencyHistogram, PercentilesLandWithinThreePercent) {
  LatencyHistogram h;
  for (uint64_t v = 1; v <= 100000; ++v) h.Record(v * 1000);  // 1 µs .. 100 ms, uniform
  EXPECT_EQ(h.count(), 100000u);
  EXPECT_NEAR(h.PercentileNanos(50), 50e6, 50e6 * 0.03);
  EXPECT_NEAR(h.PercentileNanos(99), 99e6, 99e6 * 0.03);
  EXPECT_NEAR(h.PercentileNanos(99.9), 99.9e6, 99.9e6 * 0.03);
  EXPECT_EQ(h.MaxNanos(), 100000000u);
  EXPECT_NEAR(h.MeanNanos(), 50.0005e6, 1);
}

TEST(LatencyHistogram, SmallValuesAreExactAndEmptyIsZero) {
  LatencyHistogram h;
  EXPECT_EQ(h.PercentileNanos(50), 0);
  h.Record(3);
  h.Record(5);
  EXPECT_EQ(h.PercentileNanos(0), 3);
  EXPECT_EQ(h.PercentileNanos(100), 5);
}

TEST(LoadgenFlags, ParsesScenarioNumbersAndWatchList) {
  std::vector<std::string> args = {"padlock-loadgen", "--scenario=open", "--devices=50",
                                   "--rate=2500", "--watch=gateway:7400,postgres:7432:tree",
                                   "--watch-pid=redis:42", "--count=700", "--quiet"};
  std::vector<char*> argv;
  for (std::string& a : args) argv.push_back(a.data());
  absl::StatusOr<Options> o = ParseFlags(static_cast<int>(argv.size()), argv.data());
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_EQ(o->scenario, "open");
  EXPECT_EQ(o->devices, 50);
  EXPECT_EQ(o->rate, 2500);
  EXPECT_EQ(o->count, 700u);
  EXPECT_TRUE(o->quiet);
  ASSERT_EQ(o->watch.size(), 3u);
  EXPECT_EQ(o->watch[1].name, "postgres");
  EXPECT_EQ(o->watch[1].port, 7432);
  EXPECT_TRUE(o->watch[1].tree);
  EXPECT_EQ(o->watch[2].pid, 42);
  EXPECT_EQ(o->command, "padlock-loadgen --scenario=open --devices=50 --rate=2500 "
                        "--watch=gateway:7400,postgres:7432:tree --watch-pid=redis:42 "
                        "--count=700 --quiet");
}

TEST(LoadgenFlags, RejectsUnknownFlagsAndBadValues) {
  for (std::string bad : {"--nope=1", "--devices=abc", "--watch=gateway", "--window=0",
                          "--prekeys=101", "--count=-5", "--transport=quic", "--h2-threads=0"}) {
    std::string name = "padlock-loadgen";
    std::vector<char*> argv = {name.data(), bad.data()};
    EXPECT_EQ(ParseFlags(2, argv.data()).status().code(), absl::StatusCode::kInvalidArgument)
        << bad;
  }
}

TEST(LoadgenFlags, TransportIsH2ByDefaultAndGrpcOnRequest) {
  std::string name = "padlock-loadgen", grpc = "--transport=grpc", threads = "--h2-threads=2";
  std::vector<char*> none = {name.data()};
  absl::StatusOr<Options> o = ParseFlags(1, none.data());
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_EQ(o->transport, "h2");
  EXPECT_EQ(o->h2_threads, 1);
  std::vector<char*> args = {name.data(), grpc.data(), threads.data()};
  o = ParseFlags(3, args.data());
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_EQ(o->transport, "grpc");
  EXPECT_EQ(o->h2_threads, 2);
}

TEST(LoadgenFlags, TlsNeedsTheGrpcTransport) {
  std::string name = "padlock-loadgen", tls = "--tls-ca=/tmp/ca.pem", h2 = "--transport=h2",
              grpc = "--transport=grpc";
  std::vector<char*> defaulted = {name.data(), tls.data()};
  EXPECT_EQ(ParseFlags(2, defaulted.data()).status().code(), absl::StatusCode::kInvalidArgument);
  std::vector<char*> explicit_h2 = {name.data(), tls.data(), h2.data()};
  EXPECT_EQ(ParseFlags(3, explicit_h2.data()).status().code(), absl::StatusCode::kInvalidArgument);
  std::vector<char*> with_grpc = {name.data(), tls.data(), grpc.data()};
  EXPECT_TRUE(ParseFlags(3, with_grpc.data()).ok());
}

TEST(LoadgenFlags, ReconnectAndResendIsOffByDefaultAndTakesADeadline) {
  std::string name = "padlock-loadgen", resend = "--reconnect-and-resend",
              deadline = "--resend-deadline=30";
  std::vector<char*> none = {name.data()};
  absl::StatusOr<Options> o = ParseFlags(1, none.data());
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_FALSE(o->reconnect_and_resend);
  EXPECT_EQ(o->resend_deadline_seconds, 120);
  std::vector<char*> args = {name.data(), resend.data(), deadline.data()};
  o = ParseFlags(3, args.data());
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_TRUE(o->reconnect_and_resend);
  EXPECT_EQ(o->resend_deadline_seconds, 30);
}

// In resend mode broken streams and retryable errors are the faults at work; what still fails a
// run is a loss, a duplicate, a final refusal or a message never accepted. Redeliveries do not.
TEST(LoadgenReport, ResendModeToleratesBrokenStreamsAndRedeliveriesButNotLossesOrUnaccepted) {
  Report r;
  r.reconnect_and_resend = true;
  r.stream_failures = 20;
  r.stream_errors = 3;
  r.redelivered = 7;
  EXPECT_TRUE(r.Clean());
  Report unaccepted = r;
  unaccepted.unaccepted = 1;
  EXPECT_FALSE(unaccepted.Clean());
  Report lost = r;
  lost.losses = 1;
  EXPECT_FALSE(lost.Clean());
  Report duplicated = r;
  duplicated.duplicates = 1;
  EXPECT_FALSE(duplicated.Clean());
  Report default_mode = r;
  default_mode.reconnect_and_resend = false;
  EXPECT_FALSE(default_mode.Clean());  // a broken stream fails a plain run
}

// Recovery counts only sends written after the fault began: an accept or a delivery of a send
// made before it says nothing about the recovered stack.
TEST(RunMonitor, RecoveryCountsOnlySendsMadeAfterTheFaultBegan) {
  RunMonitor monitor;
  monitor.NoteAccepted(/*attempt_nanos=*/1, /*now=*/2);  // before any fault: progress only
  EXPECT_EQ(monitor.accepted(), 1u);
  EXPECT_TRUE(monitor.Recoveries().empty());
  const uint64_t before = NowNanos();
  monitor.FaultBegins("gateway kill");
  const uint64_t after = NowNanos();  // the fault began in [before, after]
  monitor.NoteAccepted(/*attempt_nanos=*/1, after + 1'000'000);  // sent before the fault
  monitor.NoteReceived(1, /*attempt_nanos=*/1, after + 1'000'000);
  std::vector<FaultRecovery> r = monitor.Recoveries();
  ASSERT_EQ(r.size(), 1u);
  EXPECT_EQ(r[0].fault, "gateway kill");
  EXPECT_EQ(r[0].restored_after, -1);
  EXPECT_EQ(r[0].first_accepted_after, -1);
  EXPECT_EQ(r[0].first_delivered_after, -1);
  monitor.FaultRestored();
  constexpr uint64_t kSecond = 1'000'000'000;
  monitor.NoteAccepted(after + 2 * kSecond, after + 3 * kSecond);
  monitor.NoteAccepted(after + 2 * kSecond, after + 9 * kSecond);  // not the first
  monitor.NoteReceived(1, after + 2 * kSecond, after + 4 * kSecond);
  r = monitor.Recoveries();
  ASSERT_EQ(r.size(), 1u);
  EXPECT_GE(r[0].restored_after, 0);
  const double slack = static_cast<double>(after - before) / 1e9;
  EXPECT_GE(r[0].first_accepted_after, 3.0);
  EXPECT_LE(r[0].first_accepted_after, 3.0 + slack);
  EXPECT_GE(r[0].first_delivered_after, 4.0);
  EXPECT_LE(r[0].first_delivered_after, 4.0 + slack);
  EXPECT_EQ(monitor.accepted(), 4u);
  EXPECT_EQ(monitor.received(), 2u);
}

}  // namespace
}  // namespace padlock::loadgen
