#pragma once
// Notifier settings from the environment (errors recorded in `config`, as every getter does):
//   PADLOCK_VAPID_PRIVATE_KEY_FILE   PEM file of the VAPID private key (P-256). Required: without
//                                    it the notifier refuses to start.
//   PADLOCK_VAPID_SUBJECT            the JWT's `sub`, a mailto: or https: contact for push
//                                    services (default mailto:push@localhost)
//   PADLOCK_PUSH_TTL                 the TTL header: how long a push service keeps an undelivered
//                                    wake-up (default 7d, at most 28d)
//   PADLOCK_PUSH_ALLOWED_HOSTS       hosts exempt from the address rule, as on the gateway
//   PADLOCK_PUSH_RETRIES             retries of a 5xx or unanswered push (default 3)
//   PADLOCK_PUSH_TIMEOUT             one push's whole transfer (default 15s)
//   PADLOCK_NOTIFIER_WORKERS         worker threads (Redis reads, answers; default 4)
//   PADLOCK_NOTIFIER_QUEUE           worker queue bound (default 10000)

#include <cstddef>
#include <string>

#include "services/common/runtime/config.h"
#include "services/notifier/curl_push_client.h"
#include "services/notifier/push_dispatcher.h"

namespace padlock::notifier {

struct NotifierSettings {
  std::string vapid_private_key_pem;
  std::string vapid_subject;
  DispatcherOptions dispatch;
  CurlPushClientOptions http;
  int workers = 4;
  size_t queue = 10'000;
};

NotifierSettings NotifierSettingsFromConfig(runtime::Config& config);

}  // namespace padlock::notifier
