#include "services/gateway/stream_outbox.h"

namespace padlock::gateway {

namespace v1 = padlock::v1;

void StreamOutbox::PushResult(v1::SendResult result) {
  if (revision_ >= 2) {
    results_.push_back(std::move(result));
    return;
  }
  v1::ServerFrame frame;
  *frame.mutable_send_result() = std::move(result);
  PushFrame(std::move(frame));
}

void StreamOutbox::Clear() {
  items_.clear();
  results_.clear();
}

void StreamOutbox::Next(v1::ServerFrame* writing) {
  writing->Clear();
  if (items_.empty()) {
    // Only outcomes to tell: a frame of send_results alone (below).
  } else if (auto* frame = std::get_if<v1::ServerFrame>(&items_.front())) {
    writing->Swap(frame);
    items_.pop_front();
  } else {
    // Coalesce the envelopes at the head into one Deliver frame.
    v1::Deliver* deliver = writing->mutable_deliver();
    size_t bytes = 0;
    while (!items_.empty() && deliver->envelopes_size() < static_cast<int>(deliver_batch_)) {
      auto* envelope = std::get_if<v1::Envelope>(&items_.front());
      if (envelope == nullptr) break;
      if (deliver->envelopes_size() > 0 &&
          bytes + envelope->ciphertext().size() > deliver_batch_bytes_) {
        break;
      }
      bytes += envelope->ciphertext().size();
      deliver->add_envelopes()->Swap(envelope);
      items_.pop_front();
    }
  }
  // Revision 2: every outcome waiting rides on this frame, whatever it is — except `connected`,
  // which a client reads first on its own (a send taken while the stream started up is answered
  // right after it).
  if (!writing->has_connected()) {
    for (v1::SendResult& result : results_) writing->add_send_results()->Swap(&result);
    results_.clear();
  }
}

}  // namespace padlock::gateway
