#include "bench/loadgen/device_stream.h"

#include <time.h>

#include <cstring>
#include <random>

#include "absl/strings/str_cat.h"

namespace padlock::loadgen {
namespace {

constexpr char kMagic[4] = {'P', 'L', 'G', '1'};

void PutU32(char* p, uint32_t v) { std::memcpy(p, &v, sizeof v); }
void PutU64(char* p, uint64_t v) { std::memcpy(p, &v, sizeof v); }
uint32_t GetU32(const char* p) {
  uint32_t v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
uint64_t GetU64(const char* p) {
  uint64_t v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

uint64_t SplitMix64(uint64_t& state) {
  uint64_t z = (state += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

}  // namespace

uint64_t NowNanos() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1'000'000'000ull + static_cast<uint64_t>(ts.tv_nsec);
}

void EncodePayload(uint32_t sender, uint64_t sequence, uint64_t send_nanos, size_t size,
                   std::string& out) {
  out.resize(std::max(size, kPayloadHeader));
  char* p = out.data();
  std::memcpy(p, kMagic, 4);
  PutU32(p + 4, sender);
  PutU64(p + 8, sequence);
  PutU64(p + 16, send_nanos);
  PutU32(p + 24, static_cast<uint32_t>(sequence * 2654435761u));  // a check word
  // Filler stays whatever the reused buffer held: the bytes are opaque to every service.
}

bool DecodePayload(const std::string& payload, uint32_t& sender, uint64_t& sequence,
                   uint64_t& send_nanos) {
  if (payload.size() < kPayloadHeader || std::memcmp(payload.data(), kMagic, 4) != 0) return false;
  sender = GetU32(payload.data() + 4);
  sequence = GetU64(payload.data() + 8);
  send_nanos = GetU64(payload.data() + 16);
  return GetU32(payload.data() + 24) == static_cast<uint32_t>(sequence * 2654435761u);
}

void RunState::NoteFailure(const std::string& what) {
  std::lock_guard<std::mutex> lock(mutex);
  if (first_failure.empty()) first_failure = what;
}

void RunState::Signal(int& counter) {
  {
    std::lock_guard<std::mutex> lock(mutex);
    ++counter;
  }
  changed.notify_all();
}

Device::Device(RunState* run, uint32_t index, DeviceAccount account)
    : run_(run), index_(index), account_(std::move(account)) {
  std::random_device seed;
  rng_state_ = (static_cast<uint64_t>(seed()) << 32) ^ seed() ^ index;
}

void Device::Connect(std::unique_ptr<DeviceStream> stream) {
  connect_started_nanos_ = NowNanos();
  DeviceStream* started;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stream_ = std::move(stream);
    started = stream_.get();
  }
  started->Start();
}

void Device::SendTo(uint32_t recipient, uint64_t send_nanos) {
  Queue(PendingSend{.group = false, .recipient = recipient, .send_nanos = send_nanos});
}

void Device::SendGroup(uint64_t send_nanos) {
  Queue(PendingSend{.group = true, .send_nanos = send_nanos});
}

void Device::Queue(PendingSend send) {
  {
    std::lock_guard<std::mutex> lock(ledger_mutex_);
    ledger_.push_back(SentMessage{
        .expected = static_cast<uint16_t>(send.group ? run_->group_members.size() : 1)});
    send.sequence = ledger_.size();  // 1-based; also the request_id
  }
  run_->in_flight.fetch_add(1, std::memory_order_relaxed);
  run_->awaiting_result.fetch_add(1, std::memory_order_relaxed);
  run_->sent.fetch_add(1, std::memory_order_relaxed);
  DeviceStream* stream;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    pending_.push_back(send);
    stream = stream_.get();
  }
  if (stream != nullptr) stream->Wake();
}

const v1::ClientFrame* Device::NextFrame(FrameScratch& scratch) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (ack_due_ && !ack_up_to_.empty() && ack_up_to_ == last_acked_) {
    ack_due_ = false;  // already acknowledged (must not happen: counted to prove it)
    run_->repeated_acks.fetch_add(1, std::memory_order_relaxed);
  }
  // Revision 2: a pending ack rides on the next send instead (below).
  const bool ride = riding_acks_ && !pending_.empty();
  if (ack_due_ && !ack_up_to_.empty() && !ride) {
    // The ack covers everything received so far, including envelopes that arrived after it was
    // due: nothing is left unacknowledged (else the flusher would ack the same id again).
    unacked_ = 0;
    last_acked_ = ack_up_to_;
    scratch.ack.mutable_ack()->set_up_to_server_id(ack_up_to_);
    ack_due_ = false;
    return &scratch.ack;
  }
  if (!pending_.empty()) {
    const PendingSend send = pending_.front();
    pending_.pop_front();
    if (ride && (ack_due_ || unacked_ > 0) && !ack_up_to_.empty() && ack_up_to_ != last_acked_) {
      // Everything received so far, acknowledged on the frame we send anyway.
      unacked_ = 0;
      ack_due_ = false;
      last_acked_ = ack_up_to_;
      scratch.send.mutable_acks()->set_up_to_server_id(ack_up_to_);
    } else {
      scratch.send.clear_acks();
    }
    v1::SendRequest* request = scratch.send.mutable_send();  // reuses the previous send's memory
    request->set_request_id(send.sequence);
    v1::OutgoingMessage* message = request->mutable_message();
    std::string* id = message->mutable_message_id();
    id->resize(16);
    const uint64_t a = SplitMix64(rng_state_), b = SplitMix64(rng_state_);
    std::memcpy(id->data(), &a, 8);
    std::memcpy(id->data() + 8, &b, 8);
    if (send.group) {
      const auto& members = run_->group_members;
      while (message->recipients_size() > static_cast<int>(members.size())) {
        message->mutable_recipients()->RemoveLast();
      }
      for (size_t i = 0; i < members.size(); ++i) {
        v1::Recipient* r = static_cast<int>(i) < message->recipients_size()
                               ? message->mutable_recipients(static_cast<int>(i))
                               : message->add_recipients();
        const DeviceAccount& m = run_->devices[members[i]]->account();
        r->mutable_device()->set_user_id(m.user_id);
        r->mutable_device()->set_device_id(m.device_id);
        r->set_registration_id(m.registration_id);
        r->clear_type();  // left by a 1:1 send in this frame's memory
        r->clear_ciphertext();
      }
      message->set_shared_type(v1::ENVELOPE_TYPE_SENDER_KEY_MESSAGE);
      EncodePayload(index_, send.sequence, send.send_nanos, run_->payload_bytes,
                    *message->mutable_shared_ciphertext());
    } else {
      message->clear_shared_type();  // left by a group send in this frame's memory
      message->clear_shared_ciphertext();
      while (message->recipients_size() > 1) message->mutable_recipients()->RemoveLast();
      v1::Recipient* r =
          message->recipients_size() == 1 ? message->mutable_recipients(0) : message->add_recipients();
      const DeviceAccount& to = run_->devices[send.recipient]->account();
      r->mutable_device()->set_user_id(to.user_id);
      r->mutable_device()->set_device_id(to.device_id);
      r->set_registration_id(to.registration_id);
      r->set_type(v1::ENVELOPE_TYPE_MESSAGE);
      EncodePayload(index_, send.sequence, send.send_nanos, run_->payload_bytes,
                    *r->mutable_ciphertext());
    }
    return &scratch.send;
  }
  return nullptr;
}

void Device::FlushAck() {
  DeviceStream* stream = nullptr;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (unacked_ > 0) {
      unacked_ = 0;
      ack_due_ = true;
      stream = stream_.get();
    }
  }
  if (stream != nullptr) stream->Wake();
}

void Device::Close() {
  DeviceStream* stream;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (unacked_ > 0) {
      unacked_ = 0;
      ack_due_ = true;
    }
    stream = stream_.get();
  }
  // The transport writes what is left (acks), then the half-close.
  if (stream != nullptr) stream->Close();
}

void Device::Cancel() {
  DeviceStream* stream;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stream = stream_.get();
  }
  if (stream != nullptr) stream->Cancel();
}

void Device::Settle(bool ready) {
  if (settled_) return;
  settled_ = true;
  if (ready) run_->Signal(run_->ready);
  run_->Signal(run_->settled);
}

void Device::OnFrame(const v1::ServerFrame& frame) {
  // Revision 2: outcomes ride on any frame.
  for (const v1::SendResult& result : frame.send_results()) HandleSendResult(result);
  switch (frame.frame_case()) {
    case v1::ServerFrame::kConnected:
      if (frame.connected().stream_revision() >= 2) {
        std::lock_guard<std::mutex> lock(mutex_);
        riding_acks_ = true;
      }
      connected_at_nanos_ = NowNanos();
      break;
    case v1::ServerFrame::kQueueEmpty:
      queue_empty_nanos_ = NowNanos();
      Settle(true);
      break;
    case v1::ServerFrame::kDeliver:
      HandleDeliver(frame.deliver());
      break;
    case v1::ServerFrame::kSendResult:
      HandleSendResult(frame.send_result());
      break;
    case v1::ServerFrame::kError: {
      run_->stream_errors.fetch_add(1, std::memory_order_relaxed);
      const v1::StreamError& e = frame.error();
      run_->NoteFailure(absl::StrCat(account_.user_id, ": stream error ", e.code(), " ",
                                     e.message()));
      if (e.request_id() != 0) {
        v1::SendResult as_refusal;
        as_refusal.set_request_id(e.request_id());
        as_refusal.mutable_refused()->set_code(e.code());
        HandleSendResult(as_refusal);
      }
      break;
    }
    case v1::ServerFrame::kGap:
      run_->inbox_gaps.fetch_add(1, std::memory_order_relaxed);
      break;
    case v1::ServerFrame::kDisplaced:
    case v1::ServerFrame::kClosing:
      run_->NoteFailure(absl::StrCat(account_.user_id, ": server closed the stream (",
                                     frame.frame_case(), ")"));
      break;
    default:
      break;  // pong, presence, prekeys_low: not part of the benchmark
  }
}

void Device::HandleDeliver(const v1::Deliver& deliver) {
  const uint64_t now = NowNanos();
  const bool recording = run_->recording.load(std::memory_order_relaxed);
  std::vector<Device*> completed_senders;
  uint64_t gaps = 0, redelivered = 0;
  for (const v1::Envelope& envelope : deliver.envelopes()) {
    // Inbox sequence numbers grow by exactly one per stored envelope: a repeat is a redelivery,
    // a jump a gap (neither happens on a healthy stream within one connection).
    if (envelope.sequence() != 0) {
      if (envelope.sequence() <= last_inbox_sequence_) {
        ++redelivered;
      } else {
        if (last_inbox_sequence_ != 0 && envelope.sequence() != last_inbox_sequence_ + 1) ++gaps;
        last_inbox_sequence_ = envelope.sequence();
      }
    }
    uint32_t sender = 0;
    uint64_t sequence = 0, send_nanos = 0;
    if (!DecodePayload(envelope.ciphertext(), sender, sequence, send_nanos) ||
        sender >= run_->devices.size()) {
      run_->unparsable.fetch_add(1, std::memory_order_relaxed);
      continue;
    }
    Device* from = run_->devices[sender].get();
    bool duplicate = false;
    if (from->RecordReceipt(sequence, duplicate)) completed_senders.push_back(from);
    if (duplicate) {
      run_->duplicates.fetch_add(1, std::memory_order_relaxed);
      continue;
    }
    if (recording) {
      run_->latency.Record(now > send_nanos ? now - send_nanos : 0);
      run_->delivered_in_window.fetch_add(1, std::memory_order_relaxed);
    }
  }
  const uint64_t n = static_cast<uint64_t>(deliver.envelopes_size());
  run_->received.fetch_add(n, std::memory_order_relaxed);
  received_.fetch_add(n, std::memory_order_relaxed);
  last_receipt_nanos_.store(now, std::memory_order_relaxed);
  if (redelivered > 0) {
    run_->redelivered.fetch_add(redelivered, std::memory_order_relaxed);
    run_->duplicates.fetch_add(redelivered, std::memory_order_relaxed);
  }
  if (gaps > 0) run_->inbox_gaps.fetch_add(gaps, std::memory_order_relaxed);

  DeviceStream* wake = nullptr;
  if (n > 0) {
    std::lock_guard<std::mutex> lock(mutex_);
    ack_up_to_ = deliver.envelopes(deliver.envelopes_size() - 1).server_id();
    unacked_ += static_cast<int>(n);
    if (unacked_ >= run_->ack_every) {
      unacked_ = 0;
      ack_due_ = true;
      wake = stream_.get();
    }
  }
  if (wake != nullptr) wake->Wake();
  // Our lock is released: the senders' next sends take only their own locks.
  for (Device* sender : completed_senders) sender->SlotFreed();
}

bool Device::RecordReceipt(uint64_t sequence, bool& duplicate) {
  std::lock_guard<std::mutex> lock(ledger_mutex_);
  duplicate = false;
  if (sequence == 0 || sequence > ledger_.size()) {
    duplicate = true;  // never sent: count as a duplicate so it cannot pass unnoticed
    return false;
  }
  SentMessage& m = ledger_[sequence - 1];
  if (m.received >= m.expected) {
    duplicate = true;
    return false;
  }
  ++m.received;
  return m.received == m.expected && run_->release == Release::kOnReceipt &&
         m.state != SentState::kRefused;
}

void Device::HandleSendResult(const v1::SendResult& result) {
  bool free_slot = false;
  {
    std::lock_guard<std::mutex> lock(ledger_mutex_);
    const uint64_t sequence = result.request_id();
    if (sequence == 0 || sequence > ledger_.size()) return;
    SentMessage& m = ledger_[sequence - 1];
    if (m.state != SentState::kPending) return;
    run_->awaiting_result.fetch_sub(1, std::memory_order_relaxed);
    if (result.has_accepted()) {
      m.state = SentState::kAccepted;
      run_->accepted.fetch_add(1, std::memory_order_relaxed);
      free_slot = run_->release == Release::kOnAccepted;
    } else {
      m.state = SentState::kRefused;
      (result.has_mismatch() ? run_->mismatched : run_->refused)
          .fetch_add(1, std::memory_order_relaxed);
      // Unless the receipt already freed it (it cannot have: nothing was stored).
      free_slot = m.received < m.expected || run_->release == Release::kOnAccepted;
      if (result.has_refused()) {
        run_->NoteFailure(absl::StrCat(account_.user_id, ": send refused, code ",
                                       result.refused().code(), ": ", result.refused().message()));
      } else {
        run_->NoteFailure(absl::StrCat(account_.user_id, ": send mismatch: ",
                                       result.mismatch().ShortDebugString()));
      }
    }
  }
  if (free_slot) SlotFreed();
}

void Device::SlotFreed() {
  run_->in_flight.fetch_sub(1, std::memory_order_relaxed);
  if (!run_->closed_loop.load(std::memory_order_relaxed) ||
      !run_->sending.load(std::memory_order_relaxed) || !run_->TakeSend()) {
    return;
  }
  const uint64_t now = NowNanos();
  if (!run_->group_members.empty()) {
    SendGroup(now);
    return;
  }
  const uint32_t n = static_cast<uint32_t>(run_->devices.size());
  uint32_t to;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    to = static_cast<uint32_t>(SplitMix64(rng_state_) % (n - 1));
  }
  if (to >= index_) ++to;  // a random *other* device
  SendTo(to, now);
}

uint64_t Device::CountLosses() {
  std::lock_guard<std::mutex> lock(ledger_mutex_);
  uint64_t lost = 0;
  for (const SentMessage& m : ledger_) {
    if (m.state == SentState::kAccepted && m.received < m.expected) lost += m.expected - m.received;
  }
  return lost;
}

void Device::OnStreamEnd(int code, const std::string& message) {
  if (ended_) return;
  ended_ = true;
  if (!settled_) Settle(false);
  if (!run_->shutting_down.load()) {
    run_->stream_failures.fetch_add(1, std::memory_order_relaxed);
    run_->NoteFailure(absl::StrCat(account_.user_id, ": stream ended: code ", code, " ", message));
  }
  run_->Signal(run_->done);
}

namespace {

// Write state of one stream: at most one write in flight (`writing_`); the frames come from
// Device::NextFrame. A hold keeps OnDone from running while other threads may still start
// writes (a receiver queues its sender's next send; the ack flusher) until Close() or a broken
// stream releases it.
class GrpcDeviceStream final : public DeviceStream,
                               public grpc::ClientBidiReactor<v1::ClientFrame, v1::ServerFrame> {
 public:
  GrpcDeviceStream(Device* device, std::shared_ptr<grpc::Channel> channel)
      : device_(device), stub_(v1::Gateway::NewStub(std::move(channel))) {}

  void Start() override {
    context_.AddMetadata("authorization", "Bearer " + device_->account().token);
    if (device_->stream_revision() >= 2) {
      context_.AddMetadata("padlock-stream-revision", std::to_string(device_->stream_revision()));
    }
    stub_->async()->Connect(&context_, this);
    AddHold();
    StartRead(&read_frame_);
    StartCall();
  }

  void Wake() override {
    bool start = false;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (!writing_ && !writes_done_ && !hold_released_) start = NextLocked();
    }
    if (start) StartWrite(write_frame_);
  }

  void Close() override {
    bool start = false;
    bool release = false;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      close_requested_ = true;
      // What is left (acks, then the half-close) is written by the OnWriteDone chain.
      if (!writing_ && !writes_done_ && !hold_released_) start = NextLocked();
      release = !hold_released_;
      hold_released_ = true;
    }
    if (start) StartWrite(write_frame_);
    if (release) RemoveHold();
  }

  void Cancel() override { context_.TryCancel(); }

  void OnReadDone(bool ok) override {
    if (!ok) {
      ReleaseHold();  // the stream is over; OnDone follows once nothing else is in flight
      return;
    }
    device_->OnFrame(read_frame_);
    StartRead(&read_frame_);
  }

  void OnWriteDone(bool ok) override {
    bool start = false;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      writing_ = false;
      if (!ok) {
        writes_done_ = true;  // the stream is broken; OnDone will say why
        return;
      }
      start = NextLocked();
    }
    if (start) StartWrite(write_frame_);
  }

  void OnDone(const grpc::Status& status) override {
    device_->OnStreamEnd(static_cast<int>(status.error_code()), status.error_message());
  }

 private:
  // With mutex_ held: the next frame into scratch_ and write_frame_ (true), or, when none is left
  // and a close was requested, the half-close (safe under the lock: it only queues it).
  bool NextLocked() {
    if (const v1::ClientFrame* frame = device_->NextFrame(scratch_)) {
      write_frame_ = frame;
      writing_ = true;
      return true;
    }
    if (close_requested_ && !writes_done_) {
      writes_done_ = true;
      writing_ = true;
      StartWritesDone();
    }
    return false;
  }

  // Lets OnDone run (once): no thread outside the reactions starts operations after this.
  void ReleaseHold() {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (hold_released_) return;
      hold_released_ = true;
    }
    RemoveHold();
  }

  Device* const device_;
  std::unique_ptr<v1::Gateway::Stub> stub_;
  grpc::ClientContext context_;
  v1::ServerFrame read_frame_;
  FrameScratch scratch_;
  const v1::ClientFrame* write_frame_ = nullptr;  // in scratch_, being written
  std::mutex mutex_;
  bool writing_ = false;
  bool close_requested_ = false;
  bool writes_done_ = false;
  bool hold_released_ = false;
};

}  // namespace

std::unique_ptr<DeviceStream> MakeGrpcDeviceStream(Device* device,
                                                   std::shared_ptr<grpc::Channel> channel) {
  return std::make_unique<GrpcDeviceStream>(device, std::move(channel));
}

}  // namespace padlock::loadgen
