#pragma once
// One simulated device: what it sends (a ledger of its own messages, counted by the receivers),
// what it receives (latency, duplicate and gap checks, cumulative acks), and its Gateway.Connect
// stream behind a small transport interface (DeviceStream): the gRPC callback client
// (MakeGrpcDeviceStream, below) or the epoll + nghttp2 client of h2_transport.h. The ledger, ack
// and latency logic is the same for both. RunState is what all devices of one run share.
//
// Threading: transports call the Device from their own threads (gRPC's callback threads, the h2
// event loops). Each Device guards its stream state with its own mutex and its ledger with
// another; no code path holds two of a Device's locks at once (a receiver releases its own lock
// before it touches the sender's ledger or queues the sender's next send), and a Device never
// calls into its transport with a lock held, so a transport may call NextFrame under its own.

#include <grpcpp/grpcpp.h>

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "bench/loadgen/accounts.h"
#include "bench/loadgen/latency_histogram.h"
#include "padlock/v1/gateway.grpc.pb.h"

namespace padlock::loadgen {

class Device;

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
class DeviceStream {
 public:
  virtual ~DeviceStream() = default;
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
  void Connect(std::unique_ptr<DeviceStream> stream);
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

  // Marks `sequence` of this device's ledger received once; returns true when that completed
  // the message (every addressed device has it).
  bool RecordReceipt(uint64_t sequence, bool& duplicate);
  // Ledger totals after the drain: accepted messages not fully received.
  uint64_t CountLosses();

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
  enum class SentState : uint8_t { kPending, kAccepted, kRefused };
  struct SentMessage {
    uint16_t expected = 0;
    uint16_t received = 0;
    SentState state = SentState::kPending;
  };

  void Queue(PendingSend send);
  void HandleDeliver(const v1::Deliver& deliver);
  void HandleSendResult(const v1::SendResult& result);
  void Settle(bool ready);
  // A freed window slot (refused, or completed): send again when the loop is closed.
  void SlotFreed();

  RunState* const run_;
  const uint32_t index_;
  const DeviceAccount account_;
  uint64_t connect_started_nanos_ = 0;
  std::atomic<uint64_t> connected_at_nanos_{0};
  std::atomic<uint64_t> queue_empty_nanos_{0};
  std::atomic<uint64_t> last_receipt_nanos_{0};
  std::atomic<uint64_t> received_{0};
  bool settled_ = false;  // only touched by the reading transport thread
  bool ended_ = false;    // likewise: OnStreamEnd ran

  std::mutex mutex_;
  // Set once, by Connect; null before (what is queued then is written once the stream starts).
  std::unique_ptr<DeviceStream> stream_;
  std::deque<PendingSend> pending_;
  std::string ack_up_to_;
  std::string last_acked_;  // never ack the same id twice (the gateway answers a StreamError)
  int unacked_ = 0;
  bool ack_due_ = false;
  bool riding_acks_ = false;  // revision 2 granted: acks ride on sends
  uint64_t last_inbox_sequence_ = 0;
  uint64_t rng_state_;

  std::mutex ledger_mutex_;
  std::vector<SentMessage> ledger_;
};

// The gRPC callback-API transport (--transport=grpc): a ClientBidiReactor on `channel`, which
// must be the device's own (one TCP connection per device). Plaintext or TLS, as the channel is.
std::unique_ptr<DeviceStream> MakeGrpcDeviceStream(Device* device,
                                                   std::shared_ptr<grpc::Channel> channel);

}  // namespace padlock::loadgen
