#pragma once
// IdentityHolds: which users' messages are held because a device of theirs has a new identity key
// that the user has not accepted yet ("security code changed"), the kIdentityChanged events that
// announce it, and the envelopes from unaccepted keys kept (unacknowledged) to be read once
// accepted. Kept in memory: after a restart the next send or delivery rediscovers a change the
// same way (a MISMATCHED/STALE answer, a device-list refresh, an undecryptable pre-key message).
// Single-threaded like the Messenger.

#include <cstddef>
#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "clients/sdk/local_store.h"
#include "clients/sdk/messenger_core.h"
#include "padlock/v1/common.pb.h"

namespace padlock::client {

class IdentityHolds {
 public:
  // Envelopes from unaccepted keys kept per connection: well under the gateway's unacknowledged
  // window (PADLOCK_MAX_UNACKED, 256), so that they never stall other deliveries.
  static constexpr size_t kMaxHeldIncoming = 64;

  // Records that `status` (an IdentityChangedError, errors.h) holds messages to its user, and
  // queues a kIdentityChanged event once per (user, device). False when `status` is not one.
  bool Hold(const absl::Status& status);
  // Whether messages to `user` are held.
  bool Held(const std::string& user) const { return held_.count(user) > 0; }
  // Whether `entry` is for, or addresses, a user whose messages are held.
  bool EntryHeld(const OutboxEntry& entry) const;
  // The user accepted the new keys: nothing of theirs is held any more.
  void Release(const std::string& user) { held_.erase(user); }

  // Queued events (identity changes noticed outside Pump, envelopes read after AcceptIdentity).
  std::vector<MessengerEvent>& events() { return events_; }
  // Moves the queued events to `out`.
  void DrainEvents(std::vector<MessengerEvent>& out);

  // Keeps `envelope` (from a key not accepted yet) once; false when kMaxHeldIncoming are kept.
  bool KeepIncoming(const padlock::v1::Envelope& envelope);
  // The kept envelopes from `user`, removed.
  std::vector<padlock::v1::Envelope> TakeIncoming(const std::string& user);
  // Forgets the kept envelopes: never acknowledged, the server delivers them again.
  void ForgetIncoming() { incoming_.clear(); }

 private:
  std::map<std::string, std::set<uint32_t>> held_;  // user → devices with an unaccepted key
  std::vector<MessengerEvent> events_;
  std::vector<padlock::v1::Envelope> incoming_;
};

}  // namespace padlock::client
