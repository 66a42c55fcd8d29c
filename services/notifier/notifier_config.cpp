#include "services/notifier/notifier_config.h"

#include <fstream>
#include <sstream>

#include "absl/strings/ascii.h"
#include "absl/strings/str_split.h"
#include "services/common/runtime/absl_compat.h"

namespace padlock::notifier {

NotifierSettings NotifierSettingsFromConfig(runtime::Config& config) {
  NotifierSettings s;
  if (!config.Has("PADLOCK_VAPID_PRIVATE_KEY_FILE")) {
    config.AddError("PADLOCK_VAPID_PRIVATE_KEY_FILE",
                    "required: the PEM file of the VAPID private key (P-256)");
  } else {
    const std::string path = config.String("PADLOCK_VAPID_PRIVATE_KEY_FILE", "");
    std::ifstream in(path);
    std::stringstream contents;
    contents << in.rdbuf();
    if (!in.is_open()) {
      config.AddError("PADLOCK_VAPID_PRIVATE_KEY_FILE", "cannot read " + path);
    } else {
      s.vapid_private_key_pem = contents.str();
    }
  }
  s.vapid_subject = config.String("PADLOCK_VAPID_SUBJECT", "mailto:push@localhost");
  s.dispatch.ttl = config.Duration("PADLOCK_PUSH_TTL", absl::Hours(24 * 7), absl::ZeroDuration(),
                                   absl::Hours(24 * 28));
  s.dispatch.retry.max_retries = static_cast<int>(config.Int("PADLOCK_PUSH_RETRIES", 3, 0, 20));
  s.http.timeout = config.Duration("PADLOCK_PUSH_TIMEOUT", absl::Seconds(15),
                                   absl::Milliseconds(100), absl::Minutes(5));
  s.http.connect_timeout = std::min(s.http.connect_timeout, s.http.timeout);
  const std::string allowed = config.String("PADLOCK_PUSH_ALLOWED_HOSTS", "");
  for (absl::string_view host : absl::StrSplit(allowed, ',', absl::SkipWhitespace())) {
    s.http.allowed_hosts.insert(absl::AsciiStrToLower(absl::StripAsciiWhitespace(host)));
  }
  s.workers = static_cast<int>(config.Int("PADLOCK_NOTIFIER_WORKERS", 4, 1, 256));
  s.queue = static_cast<size_t>(config.Int("PADLOCK_NOTIFIER_QUEUE", 10'000, 1, 1'000'000));
  return s;
}

}  // namespace padlock::notifier
