#pragma once
// In-memory InviteStore, RateLimiter and DeviceEventPublisher for KeyRegistry unit tests.
// Thread-safe (one mutex each).
#include <map>
#include <optional>
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

// DeviceListSummaries in memory with RedisDeviceListSummaries' rules minus the deadline (a change
// in flight never lapses here), plus a log of the calls and failure injection.
class FakeDeviceListSummaries final : public DeviceListSummaries {
 public:
  absl::StatusOr<std::string> BeginChange(const std::string& user_id) override {
    std::lock_guard lock(mu_);
    log_.push_back("begin " + user_id);
    if (fail_begin_) return absl::UnavailableError("redis down");
    User& u = users_[user_id];
    u.summary.reset();
    ++u.in_flight;
    return std::to_string(++u.generation);
  }
  absl::Status EndChange(const std::string& user_id, const std::string& token,
                         const std::optional<device_lists::Summary>& after) override {
    std::lock_guard lock(mu_);
    log_.push_back("end " + user_id + " " +
                   (after ? device_lists::EncodeSummary(*after) : std::string("-")));
    if (fail_end_) return absl::UnavailableError("redis down");
    User& u = users_[user_id];
    if (u.in_flight > 0) --u.in_flight;
    const bool sole = std::to_string(u.generation) == token && u.in_flight == 0;
    ++u.generation;
    u.summary.reset();
    if (sole && after) u.summary = *after;
    return absl::OkStatus();
  }
  absl::StatusOr<std::vector<std::string>> PopulateTokens(
      const std::vector<std::string>& user_ids) override {
    std::lock_guard lock(mu_);
    std::vector<std::string> tokens;
    for (const std::string& user : user_ids) {
      tokens.push_back(std::to_string(users_[user].generation));
    }
    return tokens;
  }
  absl::StatusOr<int> Populate(const std::vector<std::string>& user_ids,
                               const std::vector<std::string>& tokens,
                               const std::vector<device_lists::Summary>& summaries) override {
    if (tokens.size() != user_ids.size() || summaries.size() != user_ids.size()) {
      return absl::InvalidArgumentError("populate: one token and one summary per user");
    }
    std::lock_guard lock(mu_);
    int stored = 0;
    for (size_t i = 0; i < user_ids.size(); ++i) {
      User& u = users_[user_ids[i]];
      if (std::to_string(u.generation) != tokens[i] || u.in_flight > 0 || u.summary) continue;
      u.summary = summaries[i];
      ++stored;
    }
    return stored;
  }

  // The stored summary, encoded; "" when there is none.
  std::string Get(const std::string& user_id) {
    std::lock_guard lock(mu_);
    auto it = users_.find(user_id);
    if (it == users_.end() || !it->second.summary) return "";
    return device_lists::EncodeSummary(*it->second.summary);
  }
  std::vector<std::string> log() {
    std::lock_guard lock(mu_);
    return log_;
  }
  void clear_log() {
    std::lock_guard lock(mu_);
    log_.clear();
  }
  void set_fail_begin(bool fail) {
    std::lock_guard lock(mu_);
    fail_begin_ = fail;
  }
  void set_fail_end(bool fail) {
    std::lock_guard lock(mu_);
    fail_end_ = fail;
  }

 private:
  struct User {
    uint64_t generation = 0;
    int in_flight = 0;
    std::optional<device_lists::Summary> summary;
  };
  std::mutex mu_;
  bool fail_begin_ = false;
  bool fail_end_ = false;
  std::map<std::string, User> users_;
  std::vector<std::string> log_;
};

}  // namespace padlock::key_directory::testing
