#include "services/presence/presence_config.h"

namespace padlock::presence {

PresenceSettings PresenceSettingsFromConfig(runtime::Config& config) {
  PresenceSettings s;
  s.timings.entry_ttl_ms = absl::ToInt64Milliseconds(config.Duration(
      "PADLOCK_PRESENCE_TTL", absl::Seconds(60), absl::Milliseconds(100), absl::Hours(24)));
  s.sweep_interval =
      config.Duration("PADLOCK_PRESENCE_SWEEP_INTERVAL", absl::Seconds(5),
                      absl::Milliseconds(10), absl::Hours(1));
  s.timings.last_seen_ttl_ms = absl::ToInt64Milliseconds(
      config.Duration("PADLOCK_PRESENCE_LAST_SEEN_TTL", absl::Hours(24 * 30), absl::Seconds(1),
                      absl::Hours(24 * 366)));
  s.timings.subscription_ttl_ms = absl::ToInt64Milliseconds(
      config.Duration("PADLOCK_PRESENCE_SUBSCRIPTION_TTL", absl::Hours(1), absl::Seconds(1),
                      absl::Hours(24 * 30)));
  s.options.max_subscriptions =
      static_cast<int>(config.Int("PADLOCK_PRESENCE_MAX_SUBSCRIPTIONS", 1000, 1, 100'000));
  s.limits.max_subscribe_ids = static_cast<size_t>(s.options.max_subscriptions);
  s.timings.rate_burst = config.Int("PADLOCK_PRESENCE_SUBSCRIBE_BURST", 10, 1, 1'000'000);
  s.timings.rate_refill_ms = absl::ToInt64Milliseconds(
      config.Duration("PADLOCK_PRESENCE_SUBSCRIBE_REFILL", absl::Seconds(6),
                      absl::Milliseconds(1), absl::Hours(24)));
  s.workers = static_cast<int>(config.Int("PADLOCK_PRESENCE_WORKERS", 8, 1, 256));
  s.queue = static_cast<size_t>(config.Int("PADLOCK_PRESENCE_QUEUE", 4096, 1, 1'000'000));
  return s;
}

}  // namespace padlock::presence
