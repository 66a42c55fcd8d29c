#pragma once
// What waits to be written on one device stream, and how it becomes frames: envelopes at the head
// are coalesced into one Deliver frame (bounded in count and bytes); other frames go alone. Send
// outcomes depend on the stream revision: in revision 2 they wait and ride on the next frame
// written (except `connected`), in revision 1 each is a `send_result` frame of its own.
// No transport. Not thread-safe (the stream's mutex guards it).

#include <cstddef>
#include <cstdint>
#include <deque>
#include <variant>
#include <vector>

#include "padlock/v1/gateway.pb.h"

namespace padlock::gateway {

class StreamOutbox {
 public:
  StreamOutbox(uint32_t revision, size_t deliver_batch, size_t deliver_batch_bytes)
      : revision_(revision),
        deliver_batch_(deliver_batch),
        deliver_batch_bytes_(deliver_batch_bytes) {}

  void PushEnvelope(padlock::v1::Envelope envelope) { items_.emplace_back(std::move(envelope)); }
  void PushFrame(padlock::v1::ServerFrame frame) { items_.emplace_back(std::move(frame)); }
  // Ahead of everything queued (`connected`, the first frame of every stream).
  void PushFrameFirst(padlock::v1::ServerFrame frame) { items_.emplace_front(std::move(frame)); }
  void PushResult(padlock::v1::SendResult result);

  bool empty() const { return items_.empty() && results_.empty(); }
  // Drops everything (nothing more can or may be written).
  void Clear();
  // Moves the next frame into `frame` (cleared first). Call only when !empty().
  void Next(padlock::v1::ServerFrame* frame);

 private:
  // An envelope (coalesced into Deliver frames) or a whole frame.
  using Outgoing = std::variant<padlock::v1::Envelope, padlock::v1::ServerFrame>;

  const uint32_t revision_;
  const size_t deliver_batch_;
  const size_t deliver_batch_bytes_;
  std::deque<Outgoing> items_;
  std::vector<padlock::v1::SendResult> results_;  // revision 2: outcomes not yet written
};

}  // namespace padlock::gateway
