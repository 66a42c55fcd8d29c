#include "services/gateway/delivery_cursor.h"

#include <algorithm>
#include <iterator>

namespace padlock::gateway {

DeliveryCursor::DeliveryCursor(runtime::Clock* clock, uint32_t max_unacked,
                               absl::Duration read_retry)
    : clock_(clock), max_unacked_(max_unacked), read_retry_(read_retry) {}

DeliveryCursor::Wakeup DeliveryCursor::OnWakeup(uint64_t sequence, bool has_envelope,
                                                bool* gap_fill) {
  *gap_fill = false;
  if (sequence <= cursor_sequence_) return Wakeup::kIgnore;
  if (sequence == cursor_sequence_ + 1 && has_envelope && subscribed_ && !reading_ &&
      !need_read_ && HasRoom()) {
    return Wakeup::kPush;
  }
  // A jump while nothing was due: a wake-up was lost, the read fills the gap.
  *gap_fill = sequence != cursor_sequence_ + 1 && !reading_ && !need_read_;
  need_read_ = true;
  return Wakeup::kRead;
}

void DeliveryCursor::OnSubscribed() {
  subscribed_ = true;
  need_read_ = true;
}

DeliveryCursor::Read DeliveryCursor::BeginRead() {
  if (!subscribed_ || reading_ || !need_read_) return Read::kNone;
  if (!HasRoom()) return Read::kNone;  // wait for acks
  if (clock_->Now() < read_not_before_) return Read::kRetryLater;
  need_read_ = false;
  reading_ = true;
  return Read::kStart;
}

uint32_t DeliveryCursor::read_limit() const {
  return std::min<uint32_t>(256, max_unacked_ - static_cast<uint32_t>(delivered_.size()));
}

void DeliveryCursor::RetryReadLater() {
  need_read_ = true;
  read_not_before_ = clock_->Now() + read_retry_;
}

void DeliveryCursor::AdvanceTo(const std::string& server_id, uint64_t sequence) {
  if (server_id.empty() || sequence <= cursor_sequence_) return;
  cursor_id_ = server_id;
  cursor_sequence_ = sequence;
}

bool DeliveryCursor::InboxReadEnded(bool end_of_inbox) {
  if (!end_of_inbox) {
    need_read_ = true;
    return false;
  }
  if (backlog_done_) return false;
  backlog_done_ = true;
  return true;
}

void DeliveryCursor::Track(const std::string& server_id, uint64_t sequence) {
  delivered_.push_back({server_id, sequence, clock_->Now()});
  cursor_id_ = server_id;
  cursor_sequence_ = sequence;
  last_delivered_sequence_ = sequence;
}

size_t DeliveryCursor::Ack(const padlock::v1::StreamAck& ack,
                           absl::FunctionRef<void(const std::string& server_id)> refused,
                           absl::FunctionRef<void(absl::Duration since_pushed)> acked) {
  const absl::Time now = clock_->Now();
  size_t removed = 0;
  auto observe = [&](const Delivered& d) {
    acked(now - d.pushed_at);
    ++removed;
  };
  if (!ack.up_to_server_id().empty()) {
    auto it = std::find_if(delivered_.begin(), delivered_.end(), [&](const Delivered& d) {
      return d.server_id == ack.up_to_server_id();
    });
    if (it == delivered_.end()) {
      refused(ack.up_to_server_id());
    } else {
      const auto end = std::next(it);
      for (auto d = delivered_.begin(); d != end; ++d) observe(*d);
      delivered_.erase(delivered_.begin(), end);
      ack_up_to_ = ack.up_to_server_id();
    }
  }
  for (const std::string& id : ack.server_ids()) {
    auto it = std::find_if(delivered_.begin(), delivered_.end(),
                           [&](const Delivered& d) { return d.server_id == id; });
    if (it == delivered_.end()) {
      refused(id);
      continue;
    }
    observe(*it);
    delivered_.erase(it);
    ack_ids_.push_back(id);
  }
  return removed;
}

std::optional<padlock::v1::DeviceAck> DeliveryCursor::TakeAcks(size_t max_ids) {
  const size_t ids = std::min(max_ids, ack_ids_.size());
  if (ack_up_to_.empty() && ids == 0) return std::nullopt;
  padlock::v1::DeviceAck ack;
  ack.set_up_to_server_id(std::move(ack_up_to_));
  for (size_t i = 0; i < ids; ++i) ack.add_server_ids(std::move(ack_ids_[i]));
  ack_up_to_.clear();
  ack_ids_.erase(ack_ids_.begin(), ack_ids_.begin() + static_cast<std::ptrdiff_t>(ids));
  return ack;
}

size_t DeliveryCursor::DropUnacked() {
  const size_t n = delivered_.size();
  delivered_.clear();
  return n;
}

}  // namespace padlock::gateway
