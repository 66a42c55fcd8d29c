#include "services/notifier/push_policy.h"

#include <algorithm>
#include <cmath>
#include <string>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "services/common/runtime/absl_compat.h"

namespace padlock::notifier {

std::string_view OutcomeLabel(PushOutcome outcome) {
  switch (outcome) {
    case PushOutcome::kSent:
      return "sent";
    case PushOutcome::kGone:
      return "gone";
    case PushOutcome::kThrottled:
      return "throttled";
    case PushOutcome::kRetry:
      return "retry";
    case PushOutcome::kFailed:
      return "failed";
  }
  return "failed";
}

PushOutcome ClassifyResponse(int http_status) {
  if (http_status == 0) return PushOutcome::kRetry;
  if (http_status >= 200 && http_status < 300) return PushOutcome::kSent;
  if (http_status == 404 || http_status == 410) return PushOutcome::kGone;
  if (http_status == 429) return PushOutcome::kThrottled;
  if (http_status >= 500 && http_status < 600) return PushOutcome::kRetry;
  return PushOutcome::kFailed;  // 1xx final, 3xx (never followed), other 4xx
}

absl::Duration RetryAfter(std::string_view header_value, absl::Time now) {
  const absl::string_view value = absl::StripAsciiWhitespace(ToAbsl(header_value));
  absl::Duration wait = kDefaultRetryAfter;
  int64_t seconds = 0;
  absl::Time at;
  std::string error;
  if (!value.empty() && std::all_of(value.begin(), value.end(), absl::ascii_isdigit)) {
    // Digits only: delta-seconds; an absurd number is the cap, not an overflow.
    wait = absl::SimpleAtoi(value, &seconds) ? absl::Seconds(seconds) : kMaxRetryAfter;
  } else if (absl::ParseTime("%a, %d %b %Y %H:%M:%S GMT", value, &at, &error)) {
    wait = at - now;  // IMF-fixdate (RFC 9110 §5.6.7)
  }
  return std::clamp(wait, absl::ZeroDuration(), kMaxRetryAfter);
}

absl::Duration RetryDelay(const RetryPolicy& policy, int attempt, double random) {
  if (attempt < 1 || attempt > policy.max_retries) return absl::InfiniteDuration();
  absl::Duration ceiling = policy.base_delay;
  for (int i = 1; i < attempt && ceiling < policy.max_delay; ++i) ceiling *= 2;
  ceiling = std::min(ceiling, policy.max_delay);
  return ceiling * std::clamp(random, 0.0, 1.0);
}

void OriginGate::BlockUntil(const std::string& origin, absl::Time until) {
  const absl::Time now = clock_->Now();
  std::lock_guard<std::mutex> lock(mu_);
  auto it = until_.find(origin);
  if (it != until_.end()) {
    it->second = std::max(it->second, until);
    return;
  }
  if (until_.size() >= kMaxBlockedOrigins) {
    absl::erase_if(until_, [now](const auto& entry) { return entry.second <= now; });
  }
  if (until_.size() >= kMaxBlockedOrigins) {
    auto soonest = std::min_element(until_.begin(), until_.end(), [](const auto& a, const auto& b) {
      return a.second < b.second;
    });
    until_.erase(soonest);
  }
  until_.emplace(origin, until);
}

absl::Time OriginGate::BlockedUntil(const std::string& origin) const {
  const absl::Time now = clock_->Now();
  std::lock_guard<std::mutex> lock(mu_);
  auto it = until_.find(origin);
  if (it == until_.end() || it->second <= now) return absl::InfinitePast();
  return it->second;
}

size_t OriginGate::size() const {
  std::lock_guard<std::mutex> lock(mu_);
  return until_.size();
}

absl::StatusOr<PushHttpRequest> BuildWakeUp(std::string_view endpoint, std::string_view p256dh,
                                            std::string_view auth, absl::Duration ttl,
                                            VapidSigner& signer) {
  absl::StatusOr<std::string> authorization = signer.AuthorizationHeader(endpoint);
  if (!authorization.ok()) return authorization.status();
  absl::StatusOr<EncryptionSecrets> secrets = RandomEncryptionSecrets();
  if (!secrets.ok()) return secrets.status();
  absl::StatusOr<std::string> body =
      EncryptAes128gcm(kWakeUpPlaintext, p256dh, auth, *secrets, kWakeUpPaddedSize);
  if (!body.ok()) return body.status();
  PushHttpRequest request;
  request.url = std::string(endpoint);
  request.headers = {
      {"TTL", absl::StrCat(std::max<int64_t>(0, absl::ToInt64Seconds(ttl)))},
      {"Urgency", "high"},
      {"Topic", std::string(kWakeUpTopic)},
      {"Content-Encoding", "aes128gcm"},
      {"Content-Type", "application/octet-stream"},
      {"Authorization", *std::move(authorization)},
  };
  request.body = *std::move(body);
  return request;
}

}  // namespace padlock::notifier
