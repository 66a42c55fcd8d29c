#pragma once
// padlock-loadgen: the end-to-end load generator (DESIGN.md §8). One process drives N
// devices through the real public gateway: each registered with real libsignal keys, logged in,
// and holding one Gateway.Connect stream on its own TCP connection. Scenarios:
//
//   chat        closed loop: every device keeps `window` envelopes in flight, each to a random
//               other device; an envelope stops being in flight when its recipient receives it.
//   open        open loop: `rate` envelopes per second in total, round-robin over the senders,
//               each to a random other device; latency counts from the scheduled send time (no
//               coordinated omission).
//   group       `group_senders` devices each keep `window` group sends in flight, every send one
//               shared payload (SENDER_KEY_MESSAGE) addressed to all other devices (256 by
//               default); in flight until every member received it.
//   backlog     one sender queues `backlog_messages` envelopes to one device that is offline
//               (logged in, not connected), then that device connects: time to drain.
//   idle-conns  `devices` authenticated, idle streams; the gateway's RSS per connection.
//   sparse      how people really message: `devices` connected streams, first idle for
//               `idle_hold` seconds (the stack's CPU to keep them alive: Report::idle_*), then
//               an open loop of `rate` envelopes per second in total (each device sends every
//               devices / rate seconds), whose CPU per envelope includes that keep-alive cost.
//   claims      `window` claimers, each a closed loop of Gateway.ClaimBundles calls: claim k is
//               by device (t + 1 + k / N) mod N of the bundle of device t = k mod N (N devices,
//               each of which uploaded `prekeys` one-time prekeys), so targets and requesters
//               are spread evenly: no device is claimed, or claims, more than ceil(k / N) times. A claim counts when it is answered with that device's
//               bundle (address, registration id, identity key) whose signed prekey verifies
//               under the identity key; anything else is an error (refused or mismatched).
//               "Delivered" is claims answered; latency is call → answer.
//
// Every envelope carries a 160-byte opaque payload: a magic, the sender index, the sender's
// sequence number and the send time. Receivers count every envelope against the sender's ledger,
// so the report states losses (accepted but never received after the drain), duplicates
// (received more often than addressed, or redelivered inbox sequence numbers) and latency (send
// → receive, one process, one monotonic clock). Receivers ack cumulatively: at the end of a
// Deliver frame once `ack_every` envelopes are unacknowledged, and whatever is left every
// `ack_flush_ms` (a client acks what it has stored; acking each envelope of a quiet device alone
// would add a client frame per envelope). With stream revision 2 (the default) whatever is
// unacknowledged also rides on the device's next send (`ClientFrame.acks`), so a lone ack frame
// is left for devices that sent nothing for `ack_flush_ms`, and send outcomes arrive batched.
//
// Reconnect-and-resend mode (--reconnect-and-resend; chat, open, group and claims), what a real
// client does and what the fault suite (tests/chaos) runs: a device whose stream breaks
// reconnects with backoff and jitter (logging in again when its token is refused) and sends
// every send not yet accepted again with the same message id until accepted or
// `resend_deadline_seconds`; refusals that say retry (UNAVAILABLE, RESOURCE_EXHAUSTED with its
// retry-after, DEADLINE_EXCEEDED, ABORTED) are retried likewise, claims too. Counting follows
// what a client sees: a second inbox entry carrying an already stored message is a duplicate (a
// server failure); the same inbox entry delivered again after a reconnect (its ack was lost
// with the connection) is a redelivery, counted apart and not a failure; every message sent must
// end accepted and received, else it is lost. The report gives the longest times without an
// accepted send and without a delivery, and, when a RunMonitor marked faults, per fault the time
// to the first accepted send and the first delivery sent after it (bench/loadgen/run_monitor.h).
//
// Resource figures come from /proc: CPU seconds in the measured window of every watched process
// (the four services, redis-server, the postgres process tree), per delivered envelope, their
// peak RSS, and the generator's own CPU.

#include <sys/types.h>

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "bench/loadgen/proc_stats.h"
#include "bench/loadgen/run_monitor.h"

namespace padlock::loadgen {

struct WatchSpec {
  std::string name = {};
  int port = 0;    // find the process listening here...
  pid_t pid = 0;   // ...or take this pid
  bool tree = false;
};

struct Options {
  std::string scenario = "chat";  // chat | open | group | backlog | idle-conns | claims | sparse
  std::string target = "127.0.0.1:7400";
  // TLS to the gateway: PEM root certificates file (empty: plaintext), and the name to verify.
  std::string tls_ca_file = {};
  std::string tls_server_name = {};
  // The device streams' transport: "h2" (epoll + nghttp2, h2_transport.h; plaintext only) or
  // "grpc" (the gRPC C++ callback client; needed for TLS). Unary calls always use gRPC stubs.
  std::string transport = "h2";
  int h2_threads = 1;  // h2: event-loop threads
  int devices = 1000;
  int window = 1;
  double rate = 10000;  // open: envelopes per second in total
  double warmup_seconds = 5;
  double duration_seconds = 10;
  // chat, open, group, claims: when > 0, the run issues exactly this many sends (claims) in all
  // and then stops, instead of running for warm-up + duration (both ignored; the measured window
  // is the whole run). The same work at any machine speed: what tests use, so that no verdict
  // depends on how fast the machine is (a fast run exhausting a rate-limit bucket, say).
  uint64_t count = 0;
  // After the window: how long to wait for envelopes still in flight before counting losses.
  double drain_seconds = 15;
  int ack_every = 16;
  // Lone acks of what is left every this many ms; < 0: 50 with stream revision 1, 250 with 2
  // (where acks ride on sends, and a lone ack is for a device that sent nothing meanwhile).
  int ack_flush_ms = -1;
  // The device stream revision asked for (1: send_result frames and ack frames only; 2: batched
  // outcomes, acks riding on sends).
  int stream_revision = 2;
  int payload_bytes = 160;
  int backlog_messages = 100000;
  int group_senders = 1;
  // claims: one-time prekeys each device uploads before the run (≤ 100).
  int prekeys = 50;
  // Set-up: registration/login threads, streams being opened at once, how long to wait.
  int setup_threads = 8;
  int connect_parallel = 256;
  double ready_timeout_seconds = 180;
  // idle-conns: how long to hold the streams after they are up (RSS is read at the end);
  // sparse: how long the idle phase measures.
  double idle_hold_seconds = 5;
  // User ids are <prefix><index>; empty: "lg" + 8 random base-36 characters + "-".
  std::string user_prefix = {};
  // Processes to measure. Empty: the local stack's ports (gateway 7400, presence 7410,
  // message-queue 7420, key-directory 7430, redis 7379 and postgres 7432 as trees).
  std::vector<WatchSpec> watch = {};
  // Written as JSON when not empty.
  std::string json_path = {};
  // Echoed into the report (the exact command line).
  std::string command = {};
  bool quiet = false;  // no progress lines on stderr
  // Reconnect after broken streams and resend unanswered sends with the same message id (see
  // the top of this file); a message not accepted this long after its first send is given up.
  bool reconnect_and_resend = false;
  double resend_deadline_seconds = 120;
  // In-process callers only (no flag): progress and fault marks (tests/chaos). Not owned.
  RunMonitor* monitor = nullptr;
};

// Parses --flag=value arguments (see main.cpp's usage text). InvalidArgument on an unknown flag
// or a bad value.
absl::StatusOr<Options> ParseFlags(int argc, char** argv);
std::string Usage();

struct ProcessReport {
  std::string name = {};
  pid_t pid = 0;
  int processes = 0;
  double cpu_seconds = 0;        // in the measured window
  double cpu_us_per_envelope = 0;
  double cpu_percent = 0;        // of one core, in the window
  uint64_t hwm_kib = 0;          // peak RSS (sum over a tree)
  uint64_t rss_kib = 0;          // RSS at the end of the window
};

struct Report {
  std::string scenario = {};
  std::string target = {};
  bool tls = false;
  std::string transport = {};
  int devices = 0;
  int window = 0;
  double offered_rate = 0;  // open
  double setup_seconds = 0;     // register + log in + connect
  double warmup_seconds = 0;
  double measured_seconds = 0;
  // Counts over the whole run (warm-up and drain included).
  uint64_t sent = 0;
  uint64_t accepted = 0;
  uint64_t refused = 0;
  uint64_t mismatched = 0;
  uint64_t received = 0;
  uint64_t losses = 0;
  uint64_t duplicates = 0;
  uint64_t redelivered = 0;     // an inbox sequence number seen twice (part of duplicates)
  uint64_t inbox_gaps = 0;      // jumps in a device's inbox sequence
  uint64_t stream_errors = 0;   // StreamError frames
  uint64_t stream_failures = 0; // streams that ended before the generator closed them
  uint64_t unparsable = 0;      // envelopes whose payload is not the generator's
  uint64_t repeated_acks = 0;   // acks the generator caught itself repeating (a generator bug)
  std::string first_failure = {};
  // In the measured window.
  uint64_t delivered_in_window = 0;
  double delivered_per_second = 0;
  double latency_ms_p50 = 0, latency_ms_p90 = 0, latency_ms_p99 = 0, latency_ms_p999 = 0;
  double latency_ms_mean = 0, latency_ms_max = 0;
  std::vector<ProcessReport> processes = {};
  // Sum over `processes` (the services, Redis and PostgreSQL) per delivered envelope.
  double services_cpu_us_per_envelope = 0;
  ProcessReport generator = {};
  // sparse: the idle phase (every stream connected, nothing sent): its length, each watched
  // process's CPU in it, and their sum in % of one core.
  double idle_seconds = 0;
  std::vector<ProcessReport> idle_processes = {};
  double idle_stack_cpu_percent = 0;
  // idle-conns
  uint64_t gateway_rss_before_kib = 0;
  uint64_t gateway_rss_after_kib = 0;
  double gateway_kib_per_connection = 0;
  // backlog
  uint64_t backlog_messages = 0;
  double backlog_queue_seconds = 0;  // sending the backlog
  double backlog_drain_seconds = 0;  // Connect started → last backlog envelope received
  double backlog_drain_per_second = 0;
  // claims: answered claims whose bundle held no one-time prekey (the device ran out; not an
  // error, X3DH works without one).
  uint64_t claims_without_prekey = 0;
  // Reconnect-and-resend mode.
  bool reconnect_and_resend = false;
  uint64_t resent = 0;            // sends (claims) written again, same message id
  uint64_t retried_refusals = 0;  // refusals that said retry
  uint64_t reconnects = 0;        // streams opened again after a break
  uint64_t relogins = 0;          // logins again after a refused token
  uint64_t unaccepted = 0;        // messages never accepted (given up at the deadline, or waiting)
  uint64_t inbox_conflicts = 0;   // one inbox sequence carrying two messages (part of duplicates)
  // From the start of the load to the end of the drain: the longest time without any accepted
  // send, and without any envelope received (redeliveries and duplicates aside).
  double longest_accept_gap_seconds = 0;
  double longest_delivery_gap_seconds = 0;
  // Per fault marked on Options::monitor.
  std::vector<FaultRecovery> recoveries = {};
  std::string command = {};
  std::vector<std::string> notes = {};

  // True when nothing was lost, duplicated, refused or failed. In reconnect-and-resend mode
  // broken streams and retryable errors are what the faults cause: there every message must end
  // accepted and received once, and nothing may be refused for good.
  bool Clean() const {
    const bool counts = losses == 0 && duplicates == 0 && refused == 0 && mismatched == 0 &&
                        unparsable == 0 && repeated_acks == 0;
    if (reconnect_and_resend) return counts && unaccepted == 0;
    return counts && stream_errors == 0 && stream_failures == 0;
  }
};

// Runs one scenario end to end (set-up, load, drain, teardown). Errors: set-up failures
// (registration, login, streams not ready in time) with their status; load problems are reported
// in the Report, not as errors.
absl::StatusOr<Report> Run(const Options& options);

std::string FormatTable(const Report& report);
std::string FormatJson(const Report& report);

}  // namespace padlock::loadgen
