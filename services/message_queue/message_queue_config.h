#pragma once
// Message-queue settings from the environment (errors recorded in `config`):
//   PADLOCK_DEDUPE_SECRET                required: ≥ 32 bytes, hex or base64, the same on every
//                                        replica; keys the dedupe and shared-payload ids in Redis
//                                        (dedupe_id.h)
//   PADLOCK_RETENTION                    undelivered envelopes expire after it (default 30d)
//   PADLOCK_INBOX_MAX_ENVELOPES          entries per device inbox (default 100000)
//   PADLOCK_INBOX_MAX_BYTES              stored bytes per device inbox (default 268435456)
//   PADLOCK_ENQUEUE_DEDUPE_WINDOW        idempotent-retry window (default 60s)
//   PADLOCK_WAKEUP_INLINE_BYTES          envelopes up to this size ride in the wake-up (4096)
//   PADLOCK_MAX_CIPHERTEXT_BYTES         per device envelope (default 65536)
//   PADLOCK_KEY_DIRECTORY_TARGET         gRPC target (default dns:///127.0.0.1:7430; read in main)
//   PADLOCK_DEVICE_LIST_DEADLINE         GetDeviceLists deadline (default 2s), asked only for
//                                        users without a Redis summary
//   PADLOCK_REDIS_WAIT_REPLICAS          replicas that must confirm a send's writes (WAIT) before
//                                        it is accepted (default 0: none, AOF only)
//   PADLOCK_REDIS_WAIT_TIMEOUT           how long WAIT waits for them (default 100ms; must stay
//                                        below PADLOCK_REDIS_TIMEOUT, checked in main)
//   PADLOCK_REDIS_MEMORY_POLL            INFO memory poll of every master (default 250ms); it
//                                        feeds memory admission (memory_admission.h)
//   PADLOCK_REDIS_MEMORY_PRESSURE_PERCENT  of maxmemory: above it, inboxes holding more than
//                                        PADLOCK_INBOX_PRESSURE_BYTES take no new entry (60)
//   PADLOCK_REDIS_MEMORY_HIGH_WATER_PERCENT  of maxmemory: above it, no inbox takes a new entry
//                                        (80; must be above the pressure mark, below 100)
//   PADLOCK_INBOX_PRESSURE_BYTES         the inbox size that stops growing under pressure
//                                        (default 4194304)
//   PADLOCK_MEMORY_RETRY_AFTER           retry_after_ms of sends refused for lack of room (30s)
//   PADLOCK_MESSAGE_QUEUE_WORKERS        executor threads (default 8)
//   PADLOCK_MESSAGE_QUEUE_QUEUE          executor queue bound (default 4096)
//   PADLOCK_NOTIFIER_TARGET              the notifier (e.g. dns:///notifier:7440); unset: no push
//                                        wake-ups at all (no push check, no pn: marks)
//   PADLOCK_PUSH_INTERVAL                at most one push per device per this (default 60s)
//   PADLOCK_NOTIFY_DEADLINE              deadline of a Notify rpc (default 2s)

#include <cstddef>
#include <string>

#include "absl/time/time.h"
#include "services/common/runtime/config.h"
#include "services/message_queue/dispatcher.h"
#include "services/message_queue/memory_admission.h"
#include "services/message_queue/redis_inbox_store.h"

namespace padlock::message_queue {

struct MessageQueueSettings {
  InboxLimits limits;
  DispatchOptions dispatch;
  absl::Duration device_list_deadline = absl::Seconds(2);
  absl::Duration memory_poll_interval = absl::Milliseconds(250);
  MemoryAdmissionOptions admission;
  int workers = 8;
  size_t queue = 4096;
  // Empty: no notifier (limits.push_interval stays zero).
  std::string notifier_target;
  absl::Duration notify_deadline = absl::Seconds(2);
};

MessageQueueSettings MessageQueueSettingsFromConfig(runtime::Config& config);

}  // namespace padlock::message_queue
