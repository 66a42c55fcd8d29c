#pragma once
// One stream's delivery position: what it handed out, what the device acked, and when it must
// read the inbox instead of pushing a wake-up's envelope. No transport: the stream asks it what to
// do and performs the reads and writes itself. Not thread-safe (the stream's mutex guards it).
//
// The cursor is the server id and sequence of the last envelope handed out. A wake-up that carries
// the next sequence is pushed at once, unless a read is due or in flight or the unacked window is
// full; anything else makes the stream read the inbox from the cursor. Acks are accepted only for
// ids handed out on this stream and not yet acked.

#include <cstdint>
#include <deque>
#include <optional>
#include <string>
#include <vector>

#include "absl/functional/function_ref.h"
#include "absl/time/time.h"
#include "padlock/v1/gateway.pb.h"
#include "padlock/v1/message_queue.pb.h"
#include "services/common/runtime/clock.h"

namespace padlock::gateway {

class DeliveryCursor {
 public:
  // `clock` must outlive the cursor. At most `max_unacked` envelopes are out unacknowledged; a
  // failed read is retried `read_retry` later.
  DeliveryCursor(runtime::Clock* clock, uint32_t max_unacked, absl::Duration read_retry);

  // ----- wake-ups and subscriptions -----
  enum class Wakeup {
    kIgnore,  // already handed out
    kPush,    // the next sequence, with its envelope: push it (then Track it)
    kRead,    // a jump, no envelope, or a read due: read the inbox (the cursor now wants a read)
  };
  // Decides what to do with a wake-up of inbox sequence `sequence` (> 0). `*gap_fill` is set when
  // this wake-up is what makes the inbox read (it was not the next sequence and no read was due).
  Wakeup OnWakeup(uint64_t sequence, bool has_envelope, bool* gap_fill);
  // The device channel's subscription is confirmed (first time or after the subscriber lost its
  // connection): wake-ups may have been missed, read from the cursor.
  void OnSubscribed();
  bool subscribed() const { return subscribed_; }

  // ----- inbox reads -----
  enum class Read {
    kNone,        // nothing to read, not subscribed yet, one in flight, or the window is full
    kRetryLater,  // a failed read waits for its retry time: tick the stream again
    kStart,       // start a read now (after_server_id/after_sequence/read_limit say which)
  };
  // Whether to start an inbox read now; kStart marks it in flight.
  Read BeginRead();
  // A read is wanted and none is in flight (a tick retries it).
  bool ReadWanted() const { return need_read_ && !reading_; }
  const std::string& after_server_id() const { return cursor_id_; }
  uint64_t after_sequence() const { return cursor_sequence_; }
  // Envelopes the next read may return: what the unacked window has room for, at most 256.
  uint32_t read_limit() const;
  // The read in flight answered (either way).
  void EndRead() { reading_ = false; }
  // The read failed: read again, not before read_retry from now.
  void RetryReadLater();
  // An envelope of a read is new (a wake-up may have pushed it while the read was in flight).
  bool IsNew(uint64_t sequence) const { return sequence > cursor_sequence_; }
  // The read said where the next one starts (past expired entries too).
  void AdvanceTo(const std::string& server_id, uint64_t sequence);
  // The read ended; `end_of_inbox` false: read again. Returns true the first time the inbox
  // was read to its end (the stream tells the device with QueueEmpty).
  bool InboxReadEnded(bool end_of_inbox);

  // ----- handing out and acks -----
  // An envelope handed out to the device: the cursor moves to it and it waits for an ack.
  void Track(const std::string& server_id, uint64_t sequence);
  // The unacked window has room for one more envelope.
  bool HasRoom() const { return delivered_.size() < max_unacked_; }
  size_t unacked() const { return delivered_.size(); }
  uint64_t last_delivered_sequence() const { return last_delivered_sequence_; }

  // Applies a device's ack: `up_to_server_id` (cumulative) and `server_ids` (each one). Ids that
  // were not handed out on this stream, or are already acked, change nothing and are passed to
  // `refused`; each envelope acked passes the time since it was handed out to `acked`. Accepted
  // acks wait for TakeAcks. Returns the number of envelopes acked.
  size_t Ack(const padlock::v1::StreamAck& ack,
             absl::FunctionRef<void(const std::string& server_id)> refused,
             absl::FunctionRef<void(absl::Duration since_pushed)> acked);
  bool HasPendingAcks() const { return !ack_up_to_.empty() || !ack_ids_.empty(); }
  // The accepted acks not yet taken, as a DeviceAck without `device`, with at most `max_ids`
  // individual ids (the oldest; the rest stay pending); nullopt when there is nothing to take.
  std::optional<padlock::v1::DeviceAck> TakeAcks(size_t max_ids);
  // Forgets every unacked envelope (the stream ended); returns how many there were.
  size_t DropUnacked();

  // ----- token -----
  // The session token valid until `expires_at` has expired at `now`: the stream closes.
  static bool TokenExpired(absl::Time expires_at, absl::Time now) { return now >= expires_at; }

 private:
  struct Delivered {
    std::string server_id;
    uint64_t sequence = 0;
    absl::Time pushed_at;
  };

  runtime::Clock* const clock_;
  const uint32_t max_unacked_;
  const absl::Duration read_retry_;

  bool subscribed_ = false;
  std::string cursor_id_;  // last server id handed out (or skipped as expired)
  uint64_t cursor_sequence_ = 0;
  uint64_t last_delivered_sequence_ = 0;
  bool need_read_ = true;  // the inbox must be read from the cursor
  bool reading_ = false;   // a read is in flight
  absl::Time read_not_before_ = absl::InfinitePast();
  bool backlog_done_ = false;        // InboxReadEnded returned true once
  std::deque<Delivered> delivered_;  // handed out, not acknowledged, in order
  std::string ack_up_to_;            // accepted, not yet taken
  std::vector<std::string> ack_ids_;
};

}  // namespace padlock::gateway
