#include "services/presence/presence_registry.h"

#include <prometheus/counter.h>
#include <prometheus/gauge.h>
#include <prometheus/registry.h>

#include <set>
#include <utility>

#include "absl/strings/str_cat.h"
#include "services/common/runtime/metrics_util.h"
#include "services/common/runtime/status_macros.h"
#include "absl/time/time.h"

namespace padlock::presence {
namespace {

std::string DeviceName(const DeviceKey& device) {
  return absl::StrCat(device.user_id, ":", device.device_id);
}

}  // namespace

PresenceRegistry::PresenceRegistry(PresenceOptions options, PresenceStore* store,
                                   EventPublisher* publisher, runtime::Clock* clock,
                                   prometheus::Registry* metrics)
    : options_(std::move(options)), store_(store), publisher_(publisher), clock_(clock) {
  if (metrics != nullptr) {
    online_devices_ = &prometheus::BuildGauge()
                           .Name("padlock_presence_online_devices")
                           .Help("Registry entries not yet expired (sampled at each sweep)")
                           .Register(*metrics)
                           .Add({});
  }
  connects_ = runtime::MakeCounter(metrics, "padlock_presence_connects_total", "Connects registered");
  disconnects_ = runtime::MakeCounter(metrics, "padlock_presence_disconnects_total",
                             "Disconnects of the current connection");
  displacements_ = runtime::MakeCounter(metrics, "padlock_presence_displacements_total",
                               "Connects that replaced a live connection of the same device");
  expired_ = runtime::MakeCounter(metrics, "padlock_presence_expired_total",
                         "Registry entries removed by the sweep (gateway stopped heartbeating)");
  events_published_ = runtime::MakeCounter(metrics, "padlock_presence_events_published_total",
                                  "Presence events published to subscriber device channels");
  publish_failures_ = runtime::MakeCounter(metrics, "padlock_presence_publish_failures_total",
                                  "Event publications that failed (Redis unreachable)");
}

PresenceView PresenceRegistry::ViewOf(const UserState& user) {
  // Fail closed: anything but an explicit `everyone` hides the user entirely.
  if (user.visibility != Visibility::kEveryone) return PresenceView{user.user_id, false, 0};
  return PresenceView{user.user_id, user.online, user.last_seen_ms};
}

void PresenceRegistry::Notify(const UserState& user) {
  absl::StatusOr<std::vector<DeviceKey>> subscribers =
      store_->Subscribers(user.user_id, clock_->NowMs());
  if (!subscribers.ok()) {
    runtime::Increment(publish_failures_);
    return;
  }
  if (subscribers->empty()) return;
  if (publisher_->PublishPresence(*subscribers, ViewOf(user)).ok()) {
    runtime::Increment(events_published_, static_cast<double>(subscribers->size()));
  } else {
    runtime::Increment(publish_failures_);
  }
}

absl::StatusOr<uint64_t> PresenceRegistry::Connect(const DeviceKey& device,
                                                   const std::string& gateway_id,
                                                   Visibility visibility) {
  absl::StatusOr<ConnectOutcome> outcome =
      store_->Connect(device, gateway_id, visibility, clock_->NowMs());
  if (!outcome.ok()) {
    return absl::Status(outcome.status().code(),
                        absl::StrCat("connect ", DeviceName(device), ": ",
                                     outcome.status().message()));
  }
  runtime::Increment(connects_);
  if (outcome->displaced_epoch != 0) {
    runtime::Increment(displacements_);
    // Best effort: should the event be lost, the old gateway learns it from its next
    // Heartbeat, which reports the old epoch as stale.
    if (!publisher_->PublishDisplaced(device, outcome->epoch).ok()) runtime::Increment(publish_failures_);
  }
  const bool visibility_changed = outcome->previous_visibility != outcome->user.visibility;
  if ((outcome->came_online && outcome->user.visibility == Visibility::kEveryone) ||
      visibility_changed) {
    Notify(outcome->user);
  }
  return outcome->epoch;
}

absl::StatusOr<bool> PresenceRegistry::Disconnect(const DeviceKey& device, uint64_t epoch) {
  absl::StatusOr<DisconnectOutcome> outcome = store_->Disconnect(device, epoch, clock_->NowMs());
  if (!outcome.ok()) {
    return absl::Status(outcome.status().code(),
                        absl::StrCat("disconnect ", DeviceName(device), ": ",
                                     outcome.status().message()));
  }
  if (!outcome->was_current) return false;
  runtime::Increment(disconnects_);
  if (outcome->went_offline && outcome->user.visibility == Visibility::kEveryone) {
    Notify(outcome->user);
  }
  return true;
}

absl::StatusOr<std::vector<Connection>> PresenceRegistry::Heartbeat(
    const std::string& gateway_id, absl::Span<const Connection> connections) {
  if (connections.empty()) return std::vector<Connection>();
  return store_->Heartbeat(gateway_id, connections, clock_->NowMs());
}

absl::Status PresenceRegistry::SetVisibility(const std::string& user_id, Visibility visibility) {
  if (visibility == Visibility::kUnspecified) visibility = Visibility::kNobody;
  ASSIGN_OR_RETURN(UserState user, store_->SetVisibility(user_id, visibility, clock_->NowMs()));
  // Always tell: a switch to nobody must replace what subscribers saw with "offline, unknown".
  Notify(user);
  return absl::OkStatus();
}

absl::StatusOr<std::vector<PresenceView>> PresenceRegistry::Query(
    absl::Span<const std::string> user_ids) {
  ASSIGN_OR_RETURN(std::vector<UserState> users, store_->Read(user_ids, clock_->NowMs()));
  std::vector<PresenceView> views;
  views.reserve(users.size());
  for (const UserState& user : users) views.push_back(ViewOf(user));
  return views;
}

absl::StatusOr<std::vector<PresenceView>> PresenceRegistry::Subscribe(
    const DeviceKey& subscriber, absl::Span<const std::string> user_ids) {
  std::vector<std::string> distinct;
  std::set<std::string> seen;
  for (const std::string& user_id : user_ids) {
    if (seen.insert(user_id).second) distinct.push_back(user_id);
  }
  if (static_cast<int64_t>(distinct.size()) > options_.max_subscriptions) {
    return absl::ResourceExhaustedError(
        absl::StrCat("subscribe ", DeviceName(subscriber), ": ", distinct.size(),
                     " users, at most ", options_.max_subscriptions));
  }
  const int64_t now = clock_->NowMs();
  ASSIGN_OR_RETURN(RateDecision decision, store_->TakeSubscribeToken(subscriber, now));
  if (!decision.allowed) {
    absl::Status status = absl::ResourceExhaustedError(
        absl::StrCat("subscribe ", DeviceName(subscriber), ": changes too fast, retry after ",
                     decision.retry_after_ms, " ms"));
    status.SetPayload(kRetryAfterPayload, absl::Cord(absl::StrCat(decision.retry_after_ms)));
    return status;
  }
  ASSIGN_OR_RETURN(std::vector<UserState> users,
                   store_->ReplaceSubscriptions(subscriber, distinct, now));
  std::vector<PresenceView> views;
  views.reserve(users.size());
  for (const UserState& user : users) views.push_back(ViewOf(user));
  return views;
}

absl::StatusOr<std::vector<Location>> PresenceRegistry::Locate(
    absl::Span<const DeviceKey> devices) {
  return store_->Locate(devices, clock_->NowMs());
}

absl::StatusOr<int> PresenceRegistry::Sweep() {
  int went_offline = 0;
  // Bounded: a sweep handles a few batches and leaves the rest to the next round rather than
  // holding the sweeper for long.
  for (int round = 0; round < 16; ++round) {
    ASSIGN_OR_RETURN(
        std::vector<Expired> expired,
        store_->SweepExpired(options_.replica_id, clock_->NowMs(), options_.sweep_batch));
    if (expired.empty()) break;
    int devices = 0;
    for (const Expired& entry : expired) {
      devices += entry.devices;
      if (!entry.went_offline) continue;
      ++went_offline;
      if (entry.user.visibility == Visibility::kEveryone) Notify(entry.user);
    }
    runtime::Increment(expired_, devices);
  }
  if (online_devices_ != nullptr) {
    absl::StatusOr<int64_t> count = store_->CountEntries();
    if (count.ok()) online_devices_->Set(static_cast<double>(*count));
  }
  return went_offline;
}

}  // namespace padlock::presence
