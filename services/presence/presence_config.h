#pragma once
// Presence settings from the environment (errors recorded in `config`, as every getter does):
//   PADLOCK_PRESENCE_TTL                 registry entry lifetime without heartbeat (default 60s)
//   PADLOCK_PRESENCE_SWEEP_INTERVAL      how often each replica sweeps expired entries
//                                        (default 5s)
//   PADLOCK_PRESENCE_LAST_SEEN_TTL       lifetime of visibility + last seen (default 30d)
//   PADLOCK_PRESENCE_SUBSCRIPTION_TTL    lifetime of a Subscribe (default 1h)
//   PADLOCK_PRESENCE_MAX_SUBSCRIPTIONS   users per device (default 1000)
//   PADLOCK_PRESENCE_SUBSCRIBE_BURST     subscription changes in a burst (default 10)
//   PADLOCK_PRESENCE_SUBSCRIBE_REFILL    one more change allowed per this period (default 6s)
//   PADLOCK_PRESENCE_WORKERS             executor threads for Redis calls (default 8)
//   PADLOCK_PRESENCE_QUEUE               executor queue bound (default 4096)

#include <cstddef>

#include "absl/time/time.h"
#include "services/common/runtime/config.h"
#include "services/presence/presence_registry.h"
#include "services/presence/presence_service.h"
#include "services/presence/presence_store.h"

namespace padlock::presence {

struct PresenceSettings {
  StoreTimings timings;
  PresenceOptions options;
  ServiceLimits limits;
  absl::Duration sweep_interval = absl::Seconds(5);
  int workers = 8;
  size_t queue = 4096;
};

PresenceSettings PresenceSettingsFromConfig(runtime::Config& config);

}  // namespace padlock::presence
