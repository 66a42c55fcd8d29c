#include "clients/sdk/identity_holds.h"

#include <algorithm>
#include <optional>
#include <utility>

#include "clients/sdk/errors.h"

namespace padlock::client {

bool IdentityHolds::Hold(const absl::Status& status) {
  std::optional<std::pair<std::string, std::vector<uint32_t>>> change = IdentityChanged(status);
  if (!change.has_value()) return false;
  std::set<uint32_t>& devices = held_[change->first];
  for (uint32_t d : change->second) {
    if (!devices.insert(d).second) continue;
    MessengerEvent e{.kind = MessengerEvent::Kind::kIdentityChanged};
    e.peer = change->first;
    e.peer_device = d;
    e.conversation = change->first;
    e.detail = std::string(status.message());
    events_.push_back(std::move(e));
  }
  return true;
}

bool IdentityHolds::EntryHeld(const OutboxEntry& entry) const {
  if (held_.empty()) return false;
  if (held_.count(entry.conversation) > 0) return true;
  padlock::v1::OutgoingMessage message;
  if (!message.ParseFromString(entry.payload)) return false;
  for (const padlock::v1::Recipient& r : message.recipients()) {
    if (held_.count(r.device().user_id()) > 0) return true;
  }
  return false;
}

void IdentityHolds::DrainEvents(std::vector<MessengerEvent>& out) {
  for (MessengerEvent& e : events_) out.push_back(std::move(e));
  events_.clear();
}

bool IdentityHolds::KeepIncoming(const padlock::v1::Envelope& envelope) {
  if (incoming_.size() >= kMaxHeldIncoming) return false;
  const bool known = std::any_of(
      incoming_.begin(), incoming_.end(),
      [&](const padlock::v1::Envelope& e) { return e.server_id() == envelope.server_id(); });
  if (!known) incoming_.push_back(envelope);
  return true;
}

std::vector<padlock::v1::Envelope> IdentityHolds::TakeIncoming(const std::string& user) {
  std::vector<padlock::v1::Envelope> out;
  for (auto it = incoming_.begin(); it != incoming_.end();) {
    if (it->sender().user_id() == user) {
      out.push_back(std::move(*it));
      it = incoming_.erase(it);
    } else {
      ++it;
    }
  }
  return out;
}

}  // namespace padlock::client
