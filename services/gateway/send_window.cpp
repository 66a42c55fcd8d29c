#include "services/gateway/send_window.h"

#include <algorithm>
#include <cmath>

namespace padlock::gateway {

SendWindow::SendWindow(runtime::Clock* clock, ratelimit::RateLimit limit)
    : clock_(clock), limit_(limit), tokens_(limit.burst), tokens_at_(clock->Now()) {}

SendWindow::Admission SendWindow::Admit(uint64_t request_id) {
  const absl::Time now = clock_->Now();
  tokens_ = std::min(limit_.burst,
                     tokens_ + absl::ToDoubleSeconds(now - tokens_at_) * limit_.per_second);
  tokens_at_ = now;
  if (tokens_ < 1.0) {
    return {.admitted = false,
            .retry_after_ms = static_cast<uint32_t>(
                std::ceil((1.0 - tokens_) / limit_.per_second * 1000.0))};
  }
  tokens_ -= 1.0;
  open_.insert(request_id);
  return {.admitted = true};
}

}  // namespace padlock::gateway
