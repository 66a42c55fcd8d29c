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

// Reconnect backoff: from 50 ms, doubling to 2 s, each wait jittered to [0.5, 1.5) of it so that
// a thousand devices cut off at once do not all come back in the same millisecond.
constexpr uint64_t kFirstBackoffNanos = 50'000'000;
constexpr uint64_t kMaxBackoffNanos = 2'000'000'000;
// A retryable refusal without a retry-after: 100 ms, doubling per retry of that send, to 2 s.
constexpr uint64_t kFirstRetryNanos = 100'000'000;

// google.rpc codes a client retries (the send's outcome is unknown or the server asked to wait):
// DEADLINE_EXCEEDED, RESOURCE_EXHAUSTED, ABORTED, UNAVAILABLE.
bool Retryable(int code) { return code == 4 || code == 8 || code == 10 || code == 14; }
constexpr int kUnauthenticated = 16;

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
  id_seed_ = SplitMix64(rng_state_);
  backoff_nanos_ = kFirstBackoffNanos;
}

void Device::Connect(std::unique_ptr<StreamTransport> stream) {
  connect_started_nanos_ = NowNanos();
  StreamTransport* started;
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
  const uint64_t now = NowNanos();
  {
    std::lock_guard<std::mutex> lock(ledger_mutex_);
    ledger_.push_back(SentMessage{
        .expected = static_cast<uint16_t>(send.group ? run_->group_members.size() : 1),
        .group = send.group,
        .recipient = send.recipient,
        .send_nanos = send.send_nanos,
        .first_attempt_nanos = now,
        .attempt_nanos = now});
    send.sequence = ledger_.size();  // 1-based; also the request_id
  }
  run_->in_flight.fetch_add(1, std::memory_order_relaxed);
  run_->awaiting_result.fetch_add(1, std::memory_order_relaxed);
  run_->sent.fetch_add(1, std::memory_order_relaxed);
  StreamTransport* stream = nullptr;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    // A device without a live stream (resend mode) sends it from its ledger when it reconnects.
    if (live_) {
      pending_.push_back(send);
      stream = stream_.get();
    }
  }
  if (stream != nullptr) stream->Wake();
}

bool Device::ResendLocked(uint64_t sequence, uint64_t now, std::vector<PendingSend>& out) {
  SentMessage& m = ledger_[sequence - 1];
  // `now` was read before the lock: a send queued since then is newer than it (not overdue).
  if (now > m.first_attempt_nanos && now - m.first_attempt_nanos > run_->resend_deadline_nanos) {
    m.state = SentState::kGivenUp;
    run_->awaiting_result.fetch_sub(1, std::memory_order_relaxed);
    run_->NoteFailure(absl::StrCat(account_.user_id, ": send ", sequence,
                                   " not accepted before the resend deadline"));
    return true;
  }
  m.attempt_nanos = now;
  m.retry_at_nanos = 0;
  out.push_back(PendingSend{.group = m.group,
                            .recipient = m.recipient,
                            .sequence = sequence,
                            .send_nanos = m.send_nanos});
  return false;
}

void Device::Tick(uint64_t now) {
  bool reconnect = false;
  bool log_in = false;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (!live_ && !close_requested_ && reconnect_at_ != 0 && now >= reconnect_at_) {
      reconnect = true;
      log_in = needs_login_;
      reconnect_at_ = 0;
    }
  }
  if (reconnect) {
    Reconnect(now, log_in);
    return;
  }
  std::vector<PendingSend> due;
  int given_up = 0;
  {
    std::lock_guard<std::mutex> lock(ledger_mutex_);
    if (retry_.empty()) return;
    std::vector<uint64_t> waiting;
    for (uint64_t sequence : retry_) {
      SentMessage& m = ledger_[sequence - 1];
      if (m.state != SentState::kPending || m.retry_at_nanos == 0) continue;  // settled, or resent
      if (m.retry_at_nanos > now) {
        waiting.push_back(sequence);
      } else if (ResendLocked(sequence, now, due)) {
        ++given_up;
      }
    }
    retry_.swap(waiting);
  }
  StreamTransport* stream = nullptr;
  if (!due.empty()) {
    std::lock_guard<std::mutex> lock(mutex_);
    // Without a live stream they stay pending in the ledger: the reconnect sends them.
    if (live_) {
      pending_.insert(pending_.end(), due.begin(), due.end());
      stream = stream_.get();
    }
  }
  if (stream != nullptr) {
    run_->resent.fetch_add(due.size(), std::memory_order_relaxed);
    stream->Wake();
  }
  for (int i = 0; i < given_up; ++i) SlotFreed();
}

void Device::Reconnect(uint64_t now, bool log_in) {
  if (log_in) {
    DeviceAccount fresh = account_;
    if (absl::Status s = run_->log_in(fresh); !s.ok()) {
      run_->NoteFailure(absl::StrCat(account_.user_id, ": log in again: ", s.ToString()));
      std::lock_guard<std::mutex> lock(mutex_);
      reconnect_at_ = now + backoff_nanos_;
      backoff_nanos_ = std::min(backoff_nanos_ * 2, kMaxBackoffNanos);
      return;
    }
    // No stream of this device is open, so nothing reads the token now.
    account_.token = fresh.token;
    run_->relogins.fetch_add(1, std::memory_order_relaxed);
  }
  // Every send not accepted yet, in ledger order, with its message id: the queue deduplicates
  // what it already stored, so resending is safe whatever happened to the first attempt.
  std::vector<PendingSend> resend;
  int given_up = 0;
  {
    std::lock_guard<std::mutex> lock(ledger_mutex_);
    for (size_t i = 0; i < ledger_.size(); ++i) {
      if (ledger_[i].state == SentState::kPending && ResendLocked(i + 1, now, resend)) ++given_up;
    }
    retry_.clear();
  }
  std::unique_ptr<StreamTransport> stream = run_->new_stream(this);
  StreamTransport* started = nullptr;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (!close_requested_) {
      if (log_in) needs_login_ = false;
      retired_.push_back(std::move(stream_));
      stream_ = std::move(stream);
      started = stream_.get();
      live_ = true;
      ended_ = false;
      pending_.assign(resend.begin(), resend.end());
      // A new stream: the server redelivers what it has no ack for, and acks start afresh.
      ack_up_to_.clear();
      last_acked_.clear();
      unacked_ = 0;
      ack_due_ = false;
      riding_acks_ = false;
    }
  }
  for (int i = 0; i < given_up; ++i) SlotFreed();
  if (started == nullptr) return;  // closing: the run is over
  run_->resent.fetch_add(resend.size(), std::memory_order_relaxed);
  run_->reconnects.fetch_add(1, std::memory_order_relaxed);
  started->Start();
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
    // Derived from the sequence: a resend of this message carries the same id.
    uint64_t id_state = id_seed_ ^ (send.sequence * 0xD1B54A32D192ED03ull);
    const uint64_t a = SplitMix64(id_state), b = SplitMix64(id_state);
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
  StreamTransport* stream = nullptr;
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
  StreamTransport* stream = nullptr;
  bool broken = false;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    close_requested_ = true;
    if (!live_) {
      broken = true;  // resend mode: its stream broke and was not reopened
    } else {
      if (unacked_ > 0) {
        unacked_ = 0;
        ack_due_ = true;
      }
      stream = stream_.get();
    }
  }
  // A broken stream ended without counting itself done (it was to be reopened): count it now.
  if (broken) run_->Signal(run_->done);
  // The transport writes what is left (acks), then the half-close.
  if (stream != nullptr) stream->Close();
}

void Device::Cancel() {
  StreamTransport* stream = nullptr;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (live_) stream = stream_.get();
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
    case v1::ServerFrame::kConnected: {
      std::lock_guard<std::mutex> lock(mutex_);
      if (frame.connected().stream_revision() >= 2) riding_acks_ = true;
      backoff_nanos_ = kFirstBackoffNanos;  // connected: the next break starts from the bottom
      connected_at_nanos_ = NowNanos();
      break;
    }
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
  const bool resend = run_->resend;
  for (const v1::Envelope& envelope : deliver.envelopes()) {
    uint32_t sender = 0;
    uint64_t sequence = 0, send_nanos = 0;
    const bool parsed = DecodePayload(envelope.ciphertext(), sender, sequence, send_nanos) &&
                        sender < run_->devices.size();
    const uint64_t inbox_sequence = envelope.sequence();
    if (inbox_sequence != 0 && resend) {
      // An inbox sequence seen before is the same entry again (its ack was lost with a broken
      // stream): a redelivery, which clients drop by message id. The same sequence with another
      // message would be the inbox contradicting itself.
      const std::pair<uint32_t, uint64_t> key(parsed ? sender : UINT32_MAX, sequence);
      auto [seen, fresh] = inbox_seen_.try_emplace(inbox_sequence, key);
      if (!fresh) {
        if (seen->second == key) {
          ++redelivered;
        } else {
          run_->inbox_conflicts.fetch_add(1, std::memory_order_relaxed);
          run_->duplicates.fetch_add(1, std::memory_order_relaxed);
          run_->NoteFailure(absl::StrCat(account_.user_id, ": inbox sequence ", inbox_sequence,
                                         " carried two different messages"));
        }
        continue;
      }
      if (inbox_sequence > last_inbox_sequence_) {
        if (last_inbox_sequence_ != 0 && inbox_sequence != last_inbox_sequence_ + 1) ++gaps;
        last_inbox_sequence_ = inbox_sequence;
      }
    } else if (inbox_sequence != 0) {
      // Inbox sequence numbers grow by exactly one per stored envelope: a repeat is a
      // redelivery, a jump a gap (neither happens on a healthy stream within one connection).
      if (inbox_sequence <= last_inbox_sequence_) {
        ++redelivered;
      } else {
        if (last_inbox_sequence_ != 0 && inbox_sequence != last_inbox_sequence_ + 1) ++gaps;
        last_inbox_sequence_ = inbox_sequence;
      }
    }
    if (!parsed) {
      run_->unparsable.fetch_add(1, std::memory_order_relaxed);
      continue;
    }
    Device* from = run_->devices[sender].get();
    bool duplicate = false;
    uint64_t attempt_nanos = 0;
    if (from->RecordReceipt(sequence, duplicate, attempt_nanos)) completed_senders.push_back(from);
    if (duplicate) {
      // In resend mode this is a new inbox entry for a message already stored: the server
      // stored one message twice.
      run_->duplicates.fetch_add(1, std::memory_order_relaxed);
      if (resend) {
        run_->NoteFailure(absl::StrCat(account_.user_id, ": message ", sender, "/", sequence,
                                       " stored twice (inbox sequence ", inbox_sequence, ")"));
      }
      continue;
    }
    if (run_->monitor != nullptr) run_->monitor->NoteReceived(1, attempt_nanos, now);
    if (resend) run_->NoteGap(run_->last_receipt_nanos, run_->longest_receipt_gap, now);
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
    // Outside resend mode nothing breaks a stream, so a redelivery is a failure too.
    if (!resend) run_->duplicates.fetch_add(redelivered, std::memory_order_relaxed);
  }
  if (gaps > 0) run_->inbox_gaps.fetch_add(gaps, std::memory_order_relaxed);

  StreamTransport* wake = nullptr;
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

bool Device::RecordReceipt(uint64_t sequence, bool& duplicate, uint64_t& attempt_nanos) {
  std::lock_guard<std::mutex> lock(ledger_mutex_);
  duplicate = false;
  if (sequence == 0 || sequence > ledger_.size()) {
    duplicate = true;  // never sent: count as a duplicate so it cannot pass unnoticed
    return false;
  }
  SentMessage& m = ledger_[sequence - 1];
  attempt_nanos = m.attempt_nanos;
  if (m.received >= m.expected) {
    duplicate = true;
    return false;
  }
  ++m.received;
  return m.received == m.expected && run_->release == Release::kOnReceipt &&
         m.state != SentState::kRefused && m.state != SentState::kGivenUp;
}

void Device::HandleSendResult(const v1::SendResult& result) {
  bool free_slot = false;
  {
    std::lock_guard<std::mutex> lock(ledger_mutex_);
    const uint64_t sequence = result.request_id();
    if (sequence == 0 || sequence > ledger_.size()) return;
    SentMessage& m = ledger_[sequence - 1];
    if (m.state != SentState::kPending) return;
    if (run_->resend && result.has_refused() && Retryable(result.refused().code())) {
      // Outcome unknown or "wait": the same message again after the wait (Tick).
      const uint64_t now = NowNanos();
      const uint64_t wait =
          result.refused().retry_after_ms() > 0
              ? uint64_t{result.refused().retry_after_ms()} * 1'000'000
              : std::min(kFirstRetryNanos << std::min<uint16_t>(m.retries, 5), kMaxBackoffNanos);
      ++m.retries;
      m.retry_at_nanos = now + wait;
      retry_.push_back(sequence);
      run_->retried_refusals.fetch_add(1, std::memory_order_relaxed);
      return;
    }
    run_->awaiting_result.fetch_sub(1, std::memory_order_relaxed);
    if (result.has_accepted()) {
      m.state = SentState::kAccepted;
      run_->accepted.fetch_add(1, std::memory_order_relaxed);
      free_slot = run_->release == Release::kOnAccepted;
      if (run_->resend || run_->monitor != nullptr) {
        const uint64_t now = NowNanos();
        if (run_->monitor != nullptr) run_->monitor->NoteAccepted(m.attempt_nanos, now);
        run_->NoteGap(run_->last_accept_nanos, run_->longest_accept_gap, now);
      }
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
    // Resend mode: every message sent must end accepted and received (a refusal for good is
    // counted as refused instead).
    const bool counted =
        m.state == SentState::kAccepted || (run_->resend && m.state != SentState::kRefused);
    if (counted && m.received < m.expected) lost += m.expected - m.received;
  }
  return lost;
}

uint64_t Device::CountUnaccepted() {
  std::lock_guard<std::mutex> lock(ledger_mutex_);
  uint64_t n = 0;
  for (const SentMessage& m : ledger_) {
    if (m.state == SentState::kPending || m.state == SentState::kGivenUp) ++n;
  }
  return n;
}

void Device::OnStreamEnd(int code, const std::string& message) {
  if (ended_) return;
  ended_ = true;
  if (!settled_) Settle(false);
  if (!run_->shutting_down.load()) {
    run_->stream_failures.fetch_add(1, std::memory_order_relaxed);
    run_->NoteFailure(absl::StrCat(account_.user_id, ": stream ended: code ", code, " ", message));
  }
  if (run_->resend) {
    std::lock_guard<std::mutex> lock(mutex_);
    // Decided under the lock that Close() takes too, so that exactly one of them counts the
    // device done: a stream that breaks before Close() is reopened by Tick, or counted by Close.
    if (!close_requested_ && !run_->shutting_down.load()) {
      live_ = false;
      pending_.clear();  // resent from the ledger by Reconnect
      const uint64_t jitter = SplitMix64(rng_state_) % backoff_nanos_;
      reconnect_at_ = NowNanos() + backoff_nanos_ / 2 + jitter;
      backoff_nanos_ = std::min(backoff_nanos_ * 2, kMaxBackoffNanos);
      if (code == kUnauthenticated) needs_login_ = true;
      return;
    }
  }
  run_->Signal(run_->done);
}

namespace {

// Write state of one stream: at most one write in flight (`writing_`); the frames come from
// Device::NextFrame. A hold keeps OnDone from running while other threads may still start
// writes (a receiver queues its sender's next send; the ack flusher) until Close() or a broken
// stream releases it.
class GrpcStreamTransport final : public StreamTransport,
                               public grpc::ClientBidiReactor<v1::ClientFrame, v1::ServerFrame> {
 public:
  GrpcStreamTransport(Device* device, std::shared_ptr<grpc::Channel> channel)
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
    bool close = false;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      started_ = true;
      close = close_requested_;
    }
    // Whatever was queued (or a Close that came) before the call was bound.
    if (close) {
      Close();
    } else {
      Wake();
    }
  }

  // Called from outside the reactions, also before Start (the device queues a send as soon as
  // the stream is its current one): until Start has bound the call, Start writes what is queued.
  // Once the lock is dropped, a broken stream may release the run's hold and let OnDone run (and
  // gRPC free the call) before StartWrite; a hold of its own, taken while the run's hold still
  // stands, keeps the call alive until the write is started.
  void Wake() override {
    bool start = false;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (started_ && !writing_ && !writes_done_ && !hold_released_) {
        start = NextLocked();
        if (start) AddHold();
      }
    }
    if (start) {
      StartWrite(write_frame_);
      RemoveHold();
    }
  }

  void Close() override {
    bool start = false;
    bool release = false;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      close_requested_ = true;
      if (!started_) return;  // Start closes once the call is bound
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
  bool started_ = false;  // Start bound the call: operations may be started
  bool writing_ = false;
  bool close_requested_ = false;
  bool writes_done_ = false;
  bool hold_released_ = false;
};

}  // namespace

std::unique_ptr<StreamTransport> MakeGrpcStreamTransport(
    Device* device, std::shared_ptr<grpc::Channel> channel) {
  return std::make_unique<GrpcStreamTransport>(device, std::move(channel));
}

}  // namespace padlock::loadgen
