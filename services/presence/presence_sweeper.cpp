#include "services/presence/presence_sweeper.h"

#include <chrono>

#include "services/common/runtime/logging.h"

namespace padlock::presence {

PresenceSweeper::PresenceSweeper(PresenceRegistry* registry, absl::Duration interval)
    : registry_(registry), interval_(interval), thread_([this] { Run(); }) {}

PresenceSweeper::~PresenceSweeper() { Stop(); }

void PresenceSweeper::Stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  wake_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void PresenceSweeper::Run() {
  const auto period = std::chrono::microseconds(absl::ToInt64Microseconds(interval_));
  while (true) {
    {
      std::unique_lock<std::mutex> lock(mu_);
      if (wake_.wait_for(lock, period, [this] { return stopping_; })) return;
    }
    absl::StatusOr<int> swept = registry_->Sweep();
    if (!swept.ok()) {
      runtime::LogWarn("presence sweep failed", {{"error", swept.status()}});
    } else if (*swept > 0) {
      runtime::LogDebug("presence sweep", {{"offline", *swept}});
    }
  }
}

}  // namespace padlock::presence
