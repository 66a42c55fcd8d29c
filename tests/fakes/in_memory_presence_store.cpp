#include "tests/fakes/in_memory_presence_store.h"

#include <algorithm>
#include <set>

namespace padlock::presence::testing {
namespace {

absl::Status Down() { return absl::UnavailableError("fake store: unavailable"); }

}  // namespace

int InMemoryPresenceStore::Prune(User& user, int64_t now, int* removed, int64_t* last) {
  int live = 0;
  for (auto it = user.entries.begin(); it != user.entries.end();) {
    if (it->second.expires_at > now) {
      ++live;
      ++it;
      continue;
    }
    if (removed != nullptr) ++*removed;
    if (last != nullptr) *last = std::max(*last, it->second.expires_at);
    it = user.entries.erase(it);
  }
  return live;
}

int InMemoryPresenceStore::LiveCount(const User& user, int64_t now) {
  int live = 0;
  for (const auto& [device_id, entry] : user.entries) live += entry.expires_at > now ? 1 : 0;
  return live;
}

UserState InMemoryPresenceStore::StateOf(const std::string& user_id, int64_t now) {
  auto it = users_.find(user_id);
  if (it == users_.end()) return UserState{user_id, false, 0, Visibility::kNobody};
  return UserState{user_id, LiveCount(it->second, now) > 0, it->second.last_seen,
                   it->second.visibility};
}

absl::StatusOr<ConnectOutcome> InMemoryPresenceStore::Connect(const DeviceKey& device,
                                                              const std::string& gateway_id,
                                                              Visibility visibility,
                                                              int64_t now_ms) {
  std::lock_guard<std::mutex> lock(mu_);
  if (unavailable_) return Down();
  User& user = users_[device.user_id];
  ConnectOutcome out;
  const int live = Prune(user, now_ms, nullptr, nullptr);
  auto prev = user.entries.find(device.device_id);
  if (prev != user.entries.end()) out.displaced_epoch = prev->second.epoch;
  out.epoch = ++user.epochs[device.device_id];
  user.entries[device.device_id] =
      Entry{out.epoch, now_ms + timings_.entry_ttl_ms, now_ms, gateway_id};
  out.came_online = live == 0;
  out.previous_visibility = user.visibility;
  if (visibility != Visibility::kUnspecified) user.visibility = visibility;
  // Last seen is kept only while someone may see it, as in RedisPresenceStore.
  if (user.visibility != Visibility::kEveryone) user.last_seen = 0;
  out.user = StateOf(device.user_id, now_ms);
  return out;
}

absl::StatusOr<DisconnectOutcome> InMemoryPresenceStore::Disconnect(const DeviceKey& device,
                                                                    uint64_t epoch,
                                                                    int64_t now_ms) {
  std::lock_guard<std::mutex> lock(mu_);
  if (unavailable_) return Down();
  DisconnectOutcome out;
  User& user = users_[device.user_id];
  auto it = user.entries.find(device.device_id);
  if (it == user.entries.end() || it->second.epoch != epoch) {
    out.user = StateOf(device.user_id, now_ms);
    return out;
  }
  const int64_t expires = it->second.expires_at;
  user.entries.erase(it);
  out.was_current = true;
  if (Prune(user, now_ms, nullptr, nullptr) == 0) {
    out.went_offline = true;
    user.last_seen = user.visibility != Visibility::kEveryone ? 0
                     : expires > now_ms                      ? now_ms
                                                             : expires - timings_.entry_ttl_ms;
  }
  out.user = StateOf(device.user_id, now_ms);
  return out;
}

absl::StatusOr<std::vector<Connection>> InMemoryPresenceStore::Heartbeat(
    const std::string& gateway_id, absl::Span<const Connection> connections, int64_t now_ms) {
  std::lock_guard<std::mutex> lock(mu_);
  if (unavailable_) return Down();
  std::vector<Connection> stale;
  for (const Connection& c : connections) {
    auto user = users_.find(c.device.user_id);
    Entry* entry = nullptr;
    if (user != users_.end()) {
      auto it = user->second.entries.find(c.device.device_id);
      if (it != user->second.entries.end()) entry = &it->second;
    }
    if (entry == nullptr || entry->epoch != c.epoch || entry->gateway_id != gateway_id ||
        entry->expires_at <= now_ms) {
      stale.push_back(c);
      continue;
    }
    entry->expires_at = now_ms + timings_.entry_ttl_ms;
  }
  return stale;
}

absl::StatusOr<UserState> InMemoryPresenceStore::SetVisibility(const std::string& user_id,
                                                               Visibility visibility,
                                                               int64_t now_ms) {
  std::lock_guard<std::mutex> lock(mu_);
  if (unavailable_) return Down();
  User& user = users_[user_id];
  user.visibility = visibility;
  if (visibility != Visibility::kEveryone) user.last_seen = 0;
  return StateOf(user_id, now_ms);
}

absl::StatusOr<std::vector<UserState>> InMemoryPresenceStore::Read(
    absl::Span<const std::string> user_ids, int64_t now_ms) {
  std::lock_guard<std::mutex> lock(mu_);
  if (unavailable_) return Down();
  std::vector<UserState> out;
  for (const std::string& id : user_ids) out.push_back(StateOf(id, now_ms));
  return out;
}

absl::StatusOr<std::vector<Location>> InMemoryPresenceStore::Locate(
    absl::Span<const DeviceKey> devices, int64_t now_ms) {
  std::lock_guard<std::mutex> lock(mu_);
  if (unavailable_) return Down();
  std::vector<Location> out;
  for (const DeviceKey& d : devices) {
    auto user = users_.find(d.user_id);
    if (user == users_.end()) continue;
    auto it = user->second.entries.find(d.device_id);
    if (it == user->second.entries.end() || it->second.expires_at <= now_ms) continue;
    out.push_back(Location{d, it->second.gateway_id, it->second.epoch, it->second.connected_at});
  }
  return out;
}

absl::StatusOr<RateDecision> InMemoryPresenceStore::TakeSubscribeToken(const DeviceKey& device,
                                                                       int64_t now_ms) {
  std::lock_guard<std::mutex> lock(mu_);
  if (unavailable_) return Down();
  const int64_t cap = timings_.rate_burst * timings_.rate_refill_ms;
  auto [it, inserted] = buckets_.try_emplace(device, Bucket{cap, now_ms});
  Bucket& b = it->second;
  if (now_ms > b.ts) {
    b.credit = std::min(cap, b.credit + (now_ms - b.ts));
    b.ts = now_ms;
  }
  if (b.credit >= timings_.rate_refill_ms) {
    b.credit -= timings_.rate_refill_ms;
    return RateDecision{true, 0};
  }
  return RateDecision{false, timings_.rate_refill_ms - b.credit};
}

absl::StatusOr<std::vector<UserState>> InMemoryPresenceStore::ReplaceSubscriptions(
    const DeviceKey& subscriber, absl::Span<const std::string> user_ids, int64_t now_ms) {
  std::lock_guard<std::mutex> lock(mu_);
  if (unavailable_) return Down();
  for (const std::string& old : watches_[subscriber]) users_[old].subscribers.erase(subscriber);
  watches_[subscriber].assign(user_ids.begin(), user_ids.end());
  std::vector<UserState> out;
  for (const std::string& id : user_ids) {
    users_[id].subscribers[subscriber] = now_ms + timings_.subscription_ttl_ms;
    out.push_back(StateOf(id, now_ms));
  }
  return out;
}

absl::StatusOr<std::vector<DeviceKey>> InMemoryPresenceStore::Subscribers(
    const std::string& user_id, int64_t now_ms) {
  std::lock_guard<std::mutex> lock(mu_);
  if (unavailable_) return Down();
  std::vector<DeviceKey> out;
  auto user = users_.find(user_id);
  if (user == users_.end()) return out;
  for (const auto& [device, expires] : user->second.subscribers) {
    if (expires > now_ms) out.push_back(device);
  }
  return out;
}

absl::StatusOr<std::vector<Expired>> InMemoryPresenceStore::SweepExpired(
    const std::string& /*replica_id*/, int64_t now_ms, int limit) {
  std::lock_guard<std::mutex> lock(mu_);
  if (unavailable_) return Down();
  std::vector<Expired> out;
  for (auto& [user_id, user] : users_) {
    if (static_cast<int>(out.size()) >= limit) break;
    int removed = 0;
    int64_t last = 0;
    const int live = Prune(user, now_ms, &removed, &last);
    if (removed == 0) continue;
    Expired e;
    e.devices = removed;
    if (live == 0) {
      e.went_offline = true;
      user.last_seen =
          user.visibility == Visibility::kEveryone ? last - timings_.entry_ttl_ms : 0;
    }
    e.user = StateOf(user_id, now_ms);
    out.push_back(e);
  }
  return out;
}

absl::StatusOr<int64_t> InMemoryPresenceStore::CountEntries() {
  std::lock_guard<std::mutex> lock(mu_);
  if (unavailable_) return Down();
  int64_t n = 0;
  for (const auto& [id, user] : users_) n += static_cast<int64_t>(user.entries.size());
  return n;
}

}  // namespace padlock::presence::testing
