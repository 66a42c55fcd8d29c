#pragma once
// In-memory InviteStore, RateLimiter and DeviceEventPublisher for KeyRegistry unit tests.
// Thread-safe (one mutex each).
#include <map>
#include <mutex>
#include <string>
#include <tuple>
#include <vector>

#include "services/key_directory/key_registry.h"

namespace padlock::key_directory::testing {

class FakeInviteStore final : public InviteStore {
 public:
  absl::Status Create(const std::string& token, const std::string& for_user_id,
                      absl::Duration ttl) override {
    std::lock_guard lock(mu_);
    invites_[token] = Invite{for_user_id, ttl};
    return absl::OkStatus();
  }
  absl::StatusOr<Invite> Consume(const std::string& token) override {
    std::lock_guard lock(mu_);
    auto it = invites_.find(token);
    if (it == invites_.end()) return absl::NotFoundError("no invite");
    Invite invite = it->second;
    invites_.erase(it);
    return invite;
  }
  absl::Status Restore(const std::string& token, const Invite& invite) override {
    std::lock_guard lock(mu_);
    invites_[token] = invite;
    return absl::OkStatus();
  }
  size_t size() {
    std::lock_guard lock(mu_);
    return invites_.size();
  }
  std::map<std::string, Invite> invites() {
    std::lock_guard lock(mu_);
    return invites_;
  }

 private:
  std::mutex mu_;
  std::map<std::string, Invite> invites_;
};

// Counts takes per bucket; refuses once a bucket has given `burst` tokens (no refill: tests
// inject exhaustion explicitly), answering the bucket's wait (1500 ms unless set_wait). Counts
// calls, so tests can tell one TakeEach (one round trip) from several Takes; set_fail makes every
// call Unavailable.
class FakeRateLimiter final : public RateLimiter {
 public:
  absl::StatusOr<absl::Duration> Take(const std::string& bucket, const RateLimit& limit) override {
    std::lock_guard lock(mu_);
    ++calls_;
    if (fail_) return absl::UnavailableError("redis down");
    return TakeLocked(bucket, limit);
  }
  absl::StatusOr<std::vector<absl::Duration>> TakeEach(
      absl::Span<const ratelimit::BucketTake> takes) override {
    std::lock_guard lock(mu_);
    ++calls_;
    if (fail_) return absl::UnavailableError("redis down");
    std::vector<absl::Duration> waits;
    for (const ratelimit::BucketTake& take : takes) {
      waits.push_back(TakeLocked(take.bucket, take.limit));
    }
    return waits;
  }
  void set_wait(const std::string& bucket, absl::Duration wait) {
    std::lock_guard lock(mu_);
    waits_[bucket] = wait;
  }
  void set_fail(bool fail) {
    std::lock_guard lock(mu_);
    fail_ = fail;
  }
  // Tokens `bucket` has given.
  int taken(const std::string& bucket) {
    std::lock_guard lock(mu_);
    return used_[bucket];
  }
  // Take and TakeEach calls so far (each one round trip to a real store).
  int calls() {
    std::lock_guard lock(mu_);
    return calls_;
  }

 private:
  absl::Duration TakeLocked(const std::string& bucket, const RateLimit& limit) {
    int& used = used_[bucket];
    if (used >= limit.burst) {
      auto it = waits_.find(bucket);
      return it == waits_.end() ? absl::Milliseconds(1500) : it->second;
    }
    ++used;
    return absl::ZeroDuration();
  }

  std::mutex mu_;
  std::map<std::string, int> used_;
  std::map<std::string, absl::Duration> waits_;
  int calls_ = 0;
  bool fail_ = false;
};

class RecordingPublisher final : public DeviceEventPublisher {
 public:
  absl::Status DeviceRevoked(const std::string& user_id, uint32_t device_id) override {
    std::lock_guard lock(mu_);
    revoked_.emplace_back(user_id, device_id);
    return fail_ ? absl::UnavailableError("redis down") : absl::OkStatus();
  }
  absl::Status PreKeysLow(const std::string& user_id, uint32_t device_id,
                          uint32_t remaining) override {
    std::lock_guard lock(mu_);
    low_.emplace_back(user_id, device_id, remaining);
    return fail_ ? absl::UnavailableError("redis down") : absl::OkStatus();
  }
  void set_fail(bool fail) {
    std::lock_guard lock(mu_);
    fail_ = fail;
  }
  std::vector<std::pair<std::string, uint32_t>> revoked() {
    std::lock_guard lock(mu_);
    return revoked_;
  }
  std::vector<std::tuple<std::string, uint32_t, uint32_t>> low() {
    std::lock_guard lock(mu_);
    return low_;
  }

 private:
  std::mutex mu_;
  bool fail_ = false;
  std::vector<std::pair<std::string, uint32_t>> revoked_;
  std::vector<std::tuple<std::string, uint32_t, uint32_t>> low_;
};

}  // namespace padlock::key_directory::testing
