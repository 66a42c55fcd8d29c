#pragma once
// One simulated device: what it sends (a ledger of its own messages, counted by the receivers),
// what it receives (latency, duplicate and gap checks, cumulative acks), and its Gateway.Connect
// stream behind a small transport interface (StreamTransport): the gRPC callback client
// (MakeGrpcStreamTransport, below) or the epoll + nghttp2 client of h2_transport.h. The ledger, ack
// and latency logic is the same for both. RunState is what all devices of one run share.
//
// Threading: transports call the Device from their own threads (gRPC's callback threads, the h2
// event loops). Each Device guards its stream state with its own mutex and its ledger with
// another; no code path holds two of a Device's locks at once (a receiver releases its own lock
// before it touches the sender's ledger or queues the sender's next send), and a Device never
// calls into its transport with a lock held, so a transport may call NextFrame under its own.
//
// Reconnect-and-resend mode (RunState::resend, --reconnect-and-resend), what a real client does:
// a device whose stream breaks (its gateway killed, UNAVAILABLE, a Closing frame) connects again
// after a backoff with jitter (logging in again first when its token was refused), and every send
// not yet answered `accepted` is sent again with the same message id (a refusal that says retry
// — UNAVAILABLE, RESOURCE_EXHAUSTED with its retry-after — too), until accepted or a deadline.
// Receivers then tell a redelivery (the same inbox entry again after a reconnect: its ack was lost
// with the connection; clients dedupe it by id) from a duplicate (a second inbox entry carrying
// a message already stored: a server failure). Device::Tick, called by the run's resender
// thread, does the reconnects and the timed retries.

#include <grpcpp/grpcpp.h>

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "bench/loadgen/accounts.h"
#include "bench/loadgen/latency_histogram.h"
#include "bench/loadgen/run_monitor.h"
#include "padlock/v1/gateway.grpc.pb.h"

namespace padlock::loadgen {

class Device;
class StreamTransport;

// Nanoseconds on the monotonic clock (the payload's send time).
uint64_t NowNanos();

// The generator's payload: magic, sender index, sequence, send time; the rest is filler.
inline constexpr size_t kPayloadHeader = 28;
void EncodePayload(uint32_t sender, uint64_t sequence, uint64_t send_nanos, size_t size,
                   std::string& out);
bool DecodePayload(const std::string& payload, uint32_t& sender, uint64_t& sequence,
                   uint64_t& send_nanos);

// When a sender's window slot frees up.
enum class Release { kOnReceipt, kOnAccepted };

struct RunState {
  Release release = Release::kOnReceipt;
  int ack_every = 16;
  // The stream revision asked for (metadata `padlock-stream-revision`); acks ride on sends only
  // when the server's `connected` grants 2 or more.
  uint32_t stream_revision = 2;
  size_t payload_bytes = 160;
  std::vector<std::unique_ptr<Device>> devices;
  // Group sends go to these device indices.
  std::vector<uint32_t> group_members;
  // Closed loop: a freed slot sends again while `sending` (chat picks a random other device).
  std::atomic<bool> closed_loop{false};
  std::atomic<bool> sending{false};
  std::atomic<bool> recording{false};
  std::atomic<bool> shutting_down{false};
  // Options::count: when > 0, at most this many sends are issued in all (TakeSend).
  uint64_t send_limit = 0;
  std::atomic<uint64_t> issued{0};
  // True when one more send may be issued (and counts it). Always true without a limit.
  bool TakeSend() {
    if (send_limit == 0) return true;
    return issued.fetch_add(1, std::memory_order_relaxed) < send_limit;
  }
  bool SendsExhausted() const {
    return send_limit != 0 && issued.load(std::memory_order_relaxed) >= send_limit;
  }

  // Reconnect-and-resend mode (see the top of this file). A message not accepted this long after
  // its first send is given up (counted unaccepted and lost).
  bool resend = false;
  uint64_t resend_deadline_nanos = 120'000'000'000ull;
  // For reconnects: a new stream for a device on the run's transport, and a fresh login (sets
  // the account's token; called from the resender thread, may block).
  std::function<std::unique_ptr<StreamTransport>(Device*)> new_stream;
  std::function<absl::Status(DeviceAccount&)> log_in;
  // Told of every accepted send and received envelope when set (Options::monitor).
  RunMonitor* monitor = nullptr;
  std::atomic<uint64_t> resent{0};            // sends written again (same message id)
  std::atomic<uint64_t> retried_refusals{0};  // refusals that said retry (and were retried)
  std::atomic<uint64_t> reconnects{0}, relogins{0};
  std::atomic<uint64_t> inbox_conflicts{0};   // one inbox sequence carrying two messages
  // Resend mode, between StartGapTracking and StopGapTracking: the longest time without any
  // accepted send and without any received envelope (a fault's outage as the clients saw it).
  std::atomic<bool> tracking_gaps{false};
  std::atomic<uint64_t> last_accept_nanos{0}, last_receipt_nanos{0};
  std::atomic<uint64_t> longest_accept_gap{0}, longest_receipt_gap{0};
  void StartGapTracking(uint64_t now) {
    last_accept_nanos = now;
    last_receipt_nanos = now;
    tracking_gaps = true;
  }
  // Ends the tracking at `now`, counting the silence up to it.
  void StopGapTracking(uint64_t now) {
    NoteGap(last_accept_nanos, longest_accept_gap, now);
    NoteGap(last_receipt_nanos, longest_receipt_gap, now);
    tracking_gaps = false;
  }
  void NoteGap(std::atomic<uint64_t>& last, std::atomic<uint64_t>& longest, uint64_t now) {
    if (!tracking_gaps.load(std::memory_order_relaxed)) return;
    const uint64_t previous = last.exchange(now);
    if (now <= previous) return;
    uint64_t gap = now - previous, seen = longest.load();
    while (gap > seen && !longest.compare_exchange_weak(seen, gap)) {
    }
  }

  std::atomic<uint64_t> sent{0}, accepted{0}, refused{0}, mismatched{0}, received{0};
  std::atomic<uint64_t> duplicates{0}, redelivered{0}, inbox_gaps{0}, stream_errors{0};
  std::atomic<uint64_t> stream_failures{0}, unparsable{0}, repeated_acks{0};
  std::atomic<int64_t> in_flight{0};
  std::atomic<int64_t> awaiting_result{0};  // sends without a send_result yet
  std::atomic<uint64_t> delivered_in_window{0};
  LatencyHistogram latency;

  // Streams that reached `connected` + `queue_empty`, and that finished (OnDone).
  std::mutex mutex;
  std::condition_variable changed;
  int ready = 0;
  int settled = 0;  // ready or failed before ready
  int done = 0;
  std::string first_failure;

  void NoteFailure(const std::string& what);
  void Signal(int& counter);
};

// Memory that Device::NextFrame builds frames in and reuses: a frame per kind, so that an ack
// between two sends does not free a send's nested messages only to allocate them again.
struct FrameScratch {
  v1::ClientFrame ack;
  v1::ClientFrame send;
};

// A device's Gateway.Connect stream, as a transport carries it. The transport pulls what to
// write from its Device (Device::NextFrame) and hands it what it reads (Device::OnFrame); the
// Device calls Wake whenever NextFrame may have something new. Start, Wake, Close and Cancel may
// be called from any thread; the Device owns the stream and outlives it.
class StreamTransport {
 public:
  virtual ~StreamTransport() = default;
  // Opens the stream with the device's bearer token; `connected` and the rest arrive via OnFrame.
  virtual void Start() = 0;
  // Device::NextFrame may return a frame now: write it (and whatever follows) soon.
  virtual void Wake() = 0;
  // Half-closes the stream once every frame NextFrame gives is written.
  virtual void Close() = 0;
  // Ends the stream now (after Close had its chance).
  virtual void Cancel() = 0;
};

class Device {
 public:
  Device(RunState* run, uint32_t index, DeviceAccount account);

  // Opens the device's stream on `stream` (made for this device) and starts reading.
  void Connect(std::unique_ptr<StreamTransport> stream);
  // Queues one 1:1 send to device `recipient` (chat, open, backlog); `send_nanos` is the time
  // the send counts from.
  void SendTo(uint32_t recipient, uint64_t send_nanos);
  // Queues one group send to run->group_members.
  void SendGroup(uint64_t send_nanos);
  // Sends whatever acks are pending (the periodic flush).
  void FlushAck();
  // Acks what is left, then half-closes the stream.
  void Close();
  // Cancels the stream (after Close had its chance).
  void Cancel();

  // For the transport. Builds the next frame to write (acks first) in `scratch` and returns it,
  // or returns null when there is none. `scratch` may hold earlier frames of any device of this
  // run: its memory is reused.
  const v1::ClientFrame* NextFrame(FrameScratch& scratch);
  // For the transport: one frame read from the stream, in order, on one thread at a time.
  void OnFrame(const v1::ServerFrame& frame);
  // For the transport, once, after the last OnFrame: the stream ended with this gRPC status.
  void OnStreamEnd(int code, const std::string& message);

  // Reconnect-and-resend mode, every few ms from the run's resender thread (never from a
  // transport thread): once the backoff after a broken stream has passed, logs in again if the
  // token was refused, opens a new stream and queues on it, with their message ids, every send
  // not accepted yet; on a live stream, resends the refused-with-retry sends whose wait is over.
  // Sends past RunState::resend_deadline_nanos are given up instead.
  void Tick(uint64_t now);

  // Marks `sequence` of this device's ledger received once; returns true when that completed
  // the message (every addressed device has it). `attempt_nanos`: when it was last (re)sent.
  bool RecordReceipt(uint64_t sequence, bool& duplicate, uint64_t& attempt_nanos);
  // Ledger totals after the drain: accepted messages not fully received (in resend mode: every
  // message not refused for good that is not fully received, accepted or not).
  uint64_t CountLosses();
  // Resend mode: messages never accepted (still waiting, or given up at the deadline).
  uint64_t CountUnaccepted();

  const DeviceAccount& account() const { return account_; }
  // The stream revision to ask for (the `padlock-stream-revision` metadata when ≥ 2).
  uint32_t stream_revision() const { return run_->stream_revision; }
  uint32_t index() const { return index_; }
  bool connected() const { return connected_at_nanos_.load() != 0; }
  uint64_t connect_started_nanos() const { return connect_started_nanos_; }
  uint64_t received() const { return received_.load(); }
  uint64_t last_receipt_nanos() const { return last_receipt_nanos_.load(); }
  uint64_t queue_empty_nanos() const { return queue_empty_nanos_.load(); }

 private:
  struct PendingSend {
    bool group = false;
    uint32_t recipient = 0;
    uint64_t sequence = 0;
    uint64_t send_nanos = 0;
  };
  // kGivenUp: resend mode, not accepted by the deadline.
  enum class SentState : uint8_t { kPending, kAccepted, kRefused, kGivenUp };
  struct SentMessage {
    uint16_t expected = 0;
    uint16_t received = 0;
    SentState state = SentState::kPending;
    bool group = false;
    uint16_t retries = 0;         // resend mode: retryable refusals so far
    uint32_t recipient = 0;       // what to send again (resend mode)
    uint64_t send_nanos = 0;      // the payload's send time (kept on every resend)
    uint64_t first_attempt_nanos = 0;
    uint64_t attempt_nanos = 0;   // the latest (re)send was queued
    uint64_t retry_at_nanos = 0;  // a retryable refusal's wait ends (0: none)
  };

  void Queue(PendingSend send);
  // Resend mode: the stream broke; Tick reconnects after the backoff.
  void Reconnect(uint64_t now, bool log_in);
  // With ledger_mutex_ held: gives `m` up when its deadline passed (true; the caller frees its
  // slot after the lock), else stamps it as (re)sent now and appends it to `out`.
  bool ResendLocked(uint64_t sequence, uint64_t now, std::vector<PendingSend>& out);
  void HandleDeliver(const v1::Deliver& deliver);
  void HandleSendResult(const v1::SendResult& result);
  void Settle(bool ready);
  // A freed window slot (refused, or completed): send again when the loop is closed.
  void SlotFreed();

  RunState* const run_;
  const uint32_t index_;
  // Only the token changes after construction (Reconnect, while no stream of this device is
  // open); other devices read the rest.
  DeviceAccount account_;
  // Message ids are derived from this and the ledger sequence: a resend carries the same id.
  uint64_t id_seed_ = 0;
  uint64_t connect_started_nanos_ = 0;
  std::atomic<uint64_t> connected_at_nanos_{0};
  std::atomic<uint64_t> queue_empty_nanos_{0};
  std::atomic<uint64_t> last_receipt_nanos_{0};
  std::atomic<uint64_t> received_{0};
  bool settled_ = false;  // only touched by the reading transport thread
  bool ended_ = false;    // likewise: OnStreamEnd ran (reset by Reconnect before a new stream)
  // Resend mode, transport thread only: inbox sequence → (sender, ledger sequence) of every
  // envelope received, to tell a redelivery from a duplicate.
  std::unordered_map<uint64_t, std::pair<uint32_t, uint64_t>> inbox_seen_;

  std::mutex mutex_;
  // Set once, by Connect; null before (what is queued then is written once the stream starts).
  std::unique_ptr<StreamTransport> stream_;
  std::deque<PendingSend> pending_;
  std::string ack_up_to_;
  std::string last_acked_;  // never ack the same id twice (the gateway answers a StreamError)
  int unacked_ = 0;
  bool ack_due_ = false;
  bool riding_acks_ = false;  // revision 2 granted: acks ride on sends
  // Resend mode: a stream is open or opening (false after it broke, until Reconnect).
  bool live_ = true;
  bool close_requested_ = false;  // Close() ran: no more reconnects
  uint64_t reconnect_at_ = 0;     // the stream broke: reconnect at (0: not due)
  uint64_t backoff_nanos_ = 0;    // the next reconnect's backoff (doubles, reset on connected)
  bool needs_login_ = false;      // the last stream ended UNAUTHENTICATED
  std::vector<std::unique_ptr<StreamTransport>> retired_;  // broken streams, kept until the end
  uint64_t last_inbox_sequence_ = 0;
  uint64_t rng_state_;

  std::mutex ledger_mutex_;
  std::vector<SentMessage> ledger_;
  std::vector<uint64_t> retry_;  // under ledger_mutex_: sequences refused with a retry
};

// The gRPC callback-API transport (--transport=grpc): a ClientBidiReactor on `channel`, which
// must be the device's own (one TCP connection per device). Plaintext or TLS, as the channel is.
std::unique_ptr<StreamTransport> MakeGrpcStreamTransport(
    Device* device, std::shared_ptr<grpc::Channel> channel);

}  // namespace padlock::loadgen
