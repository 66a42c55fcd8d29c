#pragma once
// What the notifier does with a push service's answer, and how it builds a push (docs/PUSH.md).
// Plain logic: no curl, no grpc, no Redis; the time comes from a runtime::Clock.
//
//   2xx                      sent
//   404, 410                 gone: the subscription is dead, delete push:{…}
//   429                      throttled: no request to that origin before Retry-After
//                            (delta-seconds or an HTTP-date; default 60 s, at most 1 h)
//   5xx, transport error     retry: a bounded number of attempts, exponential back-off with full
//                            jitter
//   3xx                      failed: never followed (a redirect is not a new destination)
//   other                    failed (a 400 or 413 is our bug or the service's; counted, logged)

#include <cstddef>
#include <cstdint>
#include <mutex>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "services/common/runtime/clock.h"
#include "services/notifier/web_push.h"

namespace padlock::notifier {

enum class PushOutcome { kSent, kGone, kThrottled, kRetry, kFailed };

// The metric label of an outcome: "sent", "gone", "throttled", "retry", "failed".
std::string_view OutcomeLabel(PushOutcome outcome);

// `http_status` 0 means the request got no answer (connection refused, timeout, refused address).
PushOutcome ClassifyResponse(int http_status);

inline constexpr absl::Duration kDefaultRetryAfter = absl::Seconds(60);
inline constexpr absl::Duration kMaxRetryAfter = absl::Hours(1);

// How long to keep away from an origin after a 429: the Retry-After header's value (delta-seconds
// or an IMF-fixdate), clamped to [0, kMaxRetryAfter]; kDefaultRetryAfter when it is absent or
// unreadable.
absl::Duration RetryAfter(std::string_view header_value, absl::Time now);

// Retries of a 5xx or a transport failure: attempt n (1 = the first retry) waits a uniformly
// random time in [0, min(max_delay, base_delay * 2^(n-1))] ("full jitter": replicas that failed
// together do not retry together). No retry beyond max_retries.
struct RetryPolicy {
  int max_retries = 3;
  absl::Duration base_delay = absl::Seconds(1);
  absl::Duration max_delay = absl::Seconds(30);
};
// The wait before retry `attempt` (1-based); absl::InfiniteDuration() when no retry is left.
// `random` is uniform in [0, 1).
absl::Duration RetryDelay(const RetryPolicy& policy, int attempt, double random);

// Origins a push service asked us to leave alone (429), until when. Bounded: beyond
// kMaxBlockedOrigins entries, expired ones are dropped, then the soonest to expire. Thread-safe.
class OriginGate {
 public:
  static constexpr size_t kMaxBlockedOrigins = 4096;
  explicit OriginGate(const runtime::Clock* clock) : clock_(clock) {}
  // No request to `origin` before `until` (a later block extends, an earlier one never shortens).
  void BlockUntil(const std::string& origin, absl::Time until);
  // When `origin` may be asked again: absl::InfinitePast() when it is not blocked now.
  absl::Time BlockedUntil(const std::string& origin) const;
  size_t size() const;

 private:
  const runtime::Clock* const clock_;
  // std::mutex: TSan cannot see Debian's absl::Mutex (tests/fakes/manual_clock.h).
  mutable std::mutex mu_;
  absl::flat_hash_map<std::string, absl::Time> until_ ABSL_GUARDED_BY(mu_);
};

// The fixed wake-up: the same bytes for every push, padded to kWakeUpPaddedSize, so a body says
// nothing about sender, content or count. The device's app fetches its inbox when it sees it.
inline constexpr std::string_view kWakeUpPlaintext = R"({"v":1,"t":"wake"})";
inline constexpr size_t kWakeUpPaddedSize = 256;
inline constexpr size_t kWakeUpBodyBytes =
    kAes128gcmHeaderBytes + kWakeUpPaddedSize + kAesGcmTagBytes;
// RFC 8030 §5.4: a newer message with the same topic replaces an undelivered one.
inline constexpr std::string_view kWakeUpTopic = "padlock-wake";

struct PushHttpRequest {
  std::string url;
  std::vector<std::pair<std::string, std::string>> headers;  // name, value
  std::string body;
};

// What came back: the status and the one header the policy reads.
struct PushHttpResult {
  int status = 0;           // HTTP status; 0 when there was no answer (see `error`)
  std::string retry_after;  // the Retry-After header's value, if any
  std::string error;        // why there was no answer (no URL in it)
  absl::Duration latency;   // from the start of the transfer to its end
};

// The POST of one wake-up to `endpoint` for the subscription keys `p256dh` and `auth`: the fixed
// wake-up encrypted with fresh secrets, headers TTL (seconds), Urgency: high, Topic,
// Content-Encoding: aes128gcm, Content-Type: application/octet-stream and the VAPID
// Authorization. InvalidArgument for bad subscription keys or endpoint; Internal on an OpenSSL
// failure.
absl::StatusOr<PushHttpRequest> BuildWakeUp(std::string_view endpoint, std::string_view p256dh,
                                            std::string_view auth, absl::Duration ttl,
                                            VapidSigner& signer);

}  // namespace padlock::notifier
