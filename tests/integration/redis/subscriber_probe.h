#pragma once
// Records what a RedisSubscriber reports, for integration tests to wait on.

#include <algorithm>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "services/common/redis/redis_subscriber.h"

namespace padlock::redis {

class SubscriberProbe {
 public:
  RedisSubscriber::Callbacks Callbacks() {
    RedisSubscriber::Callbacks callbacks;
    callbacks.on_message = [this](std::string_view channel, std::string_view payload) {
      std::lock_guard lock(mu_);
      messages_.emplace_back(std::string(channel), std::string(payload));
    };
    callbacks.on_subscribed = [this](const std::string& channel) {
      std::lock_guard lock(mu_);
      subscribed_.push_back(channel);
    };
    callbacks.on_resubscribed = [this](const std::vector<std::string>& channels) {
      std::lock_guard lock(mu_);
      resubscribed_.insert(resubscribed_.end(), channels.begin(), channels.end());
    };
    return callbacks;
  }

  bool Subscribed(const std::string& channel) const {
    std::lock_guard lock(mu_);
    return std::count(subscribed_.begin(), subscribed_.end(), channel) > 0;
  }
  bool Resubscribed(const std::string& channel) const {
    std::lock_guard lock(mu_);
    return std::count(resubscribed_.begin(), resubscribed_.end(), channel) > 0;
  }
  bool Received(const std::string& channel, const std::string& payload) const {
    std::lock_guard lock(mu_);
    return std::count(messages_.begin(), messages_.end(), std::make_pair(channel, payload)) > 0;
  }
  std::vector<std::pair<std::string, std::string>> messages() const {
    std::lock_guard lock(mu_);
    return messages_;
  }
  std::vector<std::string> resubscribed() const {
    std::lock_guard lock(mu_);
    return resubscribed_;
  }

 private:
  mutable std::mutex mu_;  // std::mutex: TSan cannot see Debian's uninstrumented absl::Mutex
  std::vector<std::pair<std::string, std::string>> messages_ ABSL_GUARDED_BY(mu_);
  std::vector<std::string> subscribed_ ABSL_GUARDED_BY(mu_);
  std::vector<std::string> resubscribed_ ABSL_GUARDED_BY(mu_);
};

}  // namespace padlock::redis
