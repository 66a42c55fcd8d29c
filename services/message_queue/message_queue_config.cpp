#include "services/message_queue/message_queue_config.h"

#include <string>

#include "services/common/runtime/absl_compat.h"
#include "services/common/runtime/secret.h"
#include "services/message_queue/dedupe_id.h"

namespace padlock::message_queue {
namespace {

// Required: replicas that drew their own random secret would each compute other ids, and a retry
// landing on another replica would be stored twice (docs/MESSAGE_QUEUE.md "Dedupe ids").
std::string DedupeSecret(runtime::Config& config) {
  constexpr std::string_view kVariable = "PADLOCK_DEDUPE_SECRET";
  if (!config.Has(kVariable)) {
    config.AddError(kVariable, "required: at least 32 random bytes, hex or base64, the same on "
                               "every replica (e.g. openssl rand -hex 32)");
    return "";
  }
  absl::StatusOr<std::string> secret =
      runtime::ParseSecret(config.String(kVariable, ""), kVariable);
  if (!secret.ok()) {
    config.AddError(kVariable, ToStd(secret.status().message()));
    return "";
  }
  return *std::move(secret);
}

}  // namespace

MessageQueueSettings MessageQueueSettingsFromConfig(runtime::Config& config) {
  MessageQueueSettings s;
  s.limits.retention = config.Duration("PADLOCK_RETENTION", absl::Hours(24 * 30), absl::Seconds(1),
                                       absl::Hours(24 * 366));
  s.dispatch.retention = s.limits.retention;
  s.dispatch.dedupe_secret = DedupeSecret(config);
  s.limits.max_entries =
      static_cast<uint64_t>(config.Int("PADLOCK_INBOX_MAX_ENVELOPES", 100'000, 1, 10'000'000));
  s.limits.max_bytes = static_cast<uint64_t>(
      config.Int("PADLOCK_INBOX_MAX_BYTES", 256ll << 20, 1024, 16ll << 30));
  s.limits.dedupe_window = config.Duration("PADLOCK_ENQUEUE_DEDUPE_WINDOW", absl::Seconds(60),
                                           absl::Seconds(1), absl::Hours(24));
  s.limits.inline_wakeup_bytes =
      static_cast<uint64_t>(config.Int("PADLOCK_WAKEUP_INLINE_BYTES", 4096, 0, 1 << 20));
  s.dispatch.max_ciphertext_bytes =
      static_cast<size_t>(config.Int("PADLOCK_MAX_CIPHERTEXT_BYTES", 64 * 1024, 1, 1 << 20));
  s.device_list_deadline = config.Duration("PADLOCK_DEVICE_LIST_DEADLINE", absl::Seconds(2),
                                           absl::Milliseconds(10), absl::Minutes(1));
  s.limits.durability.replicas =
      static_cast<int>(config.Int("PADLOCK_REDIS_WAIT_REPLICAS", 0, 0, 16));
  s.limits.durability.timeout = config.Duration("PADLOCK_REDIS_WAIT_TIMEOUT",
                                                absl::Milliseconds(100), absl::Milliseconds(1),
                                                absl::Seconds(10));
  s.memory_poll_interval = config.Duration("PADLOCK_REDIS_MEMORY_POLL", absl::Milliseconds(250),
                                           absl::Milliseconds(50), absl::Minutes(10));
  const int64_t pressure = config.Int("PADLOCK_REDIS_MEMORY_PRESSURE_PERCENT", 60, 1, 99);
  const int64_t high_water = config.Int("PADLOCK_REDIS_MEMORY_HIGH_WATER_PERCENT", 80, 2, 99);
  if (high_water <= pressure) {
    config.AddError("PADLOCK_REDIS_MEMORY_HIGH_WATER_PERCENT",
                    "must be above PADLOCK_REDIS_MEMORY_PRESSURE_PERCENT");
  }
  s.admission.pressure_ratio = static_cast<double>(pressure) / 100.0;
  s.admission.high_water_ratio = static_cast<double>(high_water) / 100.0;
  s.admission.pressure_inbox_bytes = static_cast<uint64_t>(
      config.Int("PADLOCK_INBOX_PRESSURE_BYTES", 4ll << 20, 0, 16ll << 30));
  s.admission.retry_after = config.Duration("PADLOCK_MEMORY_RETRY_AFTER", absl::Seconds(30),
                                            absl::Seconds(1), absl::Hours(1));
  s.dispatch.refused_retry_after = s.admission.retry_after;
  if (config.Has("PADLOCK_NOTIFIER_TARGET")) {
    s.notifier_target = config.String("PADLOCK_NOTIFIER_TARGET", "");
    s.limits.push_interval = config.Duration("PADLOCK_PUSH_INTERVAL", absl::Seconds(60),
                                             absl::Milliseconds(100), absl::Hours(24));
    s.notify_deadline = config.Duration("PADLOCK_NOTIFY_DEADLINE", absl::Seconds(2),
                                        absl::Milliseconds(10), absl::Minutes(1));
  }
  s.workers = static_cast<int>(config.Int("PADLOCK_MESSAGE_QUEUE_WORKERS", 8, 1, 256));
  s.queue = static_cast<size_t>(config.Int("PADLOCK_MESSAGE_QUEUE_QUEUE", 4096, 1, 1'000'000));
  return s;
}

}  // namespace padlock::message_queue
