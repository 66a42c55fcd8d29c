#include "services/notifier/push_dispatcher.h"

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <prometheus/registry.h>

#include <algorithm>
#include <map>
#include <memory>
#include <utility>
#include <vector>

#include "gtest/gtest.h"
#include "tests/fakes/manual_clock.h"

namespace padlock::notifier {
namespace {

class FakeStore final : public SubscriptionStore {
 public:
  absl::StatusOr<std::optional<StoredSubscription>> Get(const PushDevice& device) override {
    auto it = subscriptions.find(device.user_id);
    if (it == subscriptions.end()) return std::optional<StoredSubscription>();
    return std::optional<StoredSubscription>(it->second);
  }
  absl::Status Delete(const PushDevice& device) override {
    deleted.push_back(device.user_id);
    subscriptions.erase(device.user_id);
    return absl::OkStatus();
  }
  std::map<std::string, StoredSubscription> subscriptions;  // by user (device 1 only)
  std::vector<std::string> deleted;
};

class FakePoster final : public PushPoster {
 public:
  absl::Status Post(PushHttpRequest request,
                    std::function<void(const PushHttpResult&)> done) override {
    posts.push_back({std::move(request), std::move(done)});
    return absl::OkStatus();
  }
  // Answers the oldest unanswered post.
  void Answer(int status, std::string retry_after = "") {
    ASSERT_LT(answered, posts.size());
    PushHttpResult result;
    result.status = status;
    result.retry_after = std::move(retry_after);
    posts[answered++].second(result);
  }
  std::vector<std::pair<PushHttpRequest, std::function<void(const PushHttpResult&)>>> posts;
  size_t answered = 0;
};

class FakeScheduler final : public Scheduler {
 public:
  void RunAfter(absl::Duration delay, std::function<void()> task) override {
    tasks.push_back({delay, std::move(task)});
  }
  // Runs the oldest task after moving the clock by its delay; returns that delay.
  absl::Duration RunNext(testing::ManualClock& clock) {
    EXPECT_FALSE(tasks.empty());
    if (tasks.empty()) return absl::ZeroDuration();
    auto [delay, task] = std::move(tasks.front());
    tasks.erase(tasks.begin());
    clock.Advance(delay);
    task();
    return delay;
  }
  std::vector<std::pair<absl::Duration, std::function<void()>>> tasks;
};

std::string NewVapidPem() {
  EVP_PKEY* key = EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-256");
  BIO* bio = BIO_new(BIO_s_mem());
  PEM_write_bio_PrivateKey(bio, key, nullptr, nullptr, 0, nullptr, nullptr);
  char* data = nullptr;
  const long length = BIO_get_mem_data(bio, &data);
  std::string pem(data, static_cast<size_t>(length));
  BIO_free(bio);
  EVP_PKEY_free(key);
  return pem;
}

StoredSubscription Subscription(const std::string& endpoint) {
  EVP_PKEY* key = EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-256");
  std::string point(65, '\0');
  size_t length = 0;
  EVP_PKEY_get_octet_string_param(key, "encoded-pub-key",
                                  reinterpret_cast<unsigned char*>(point.data()), 65, &length);
  EVP_PKEY_free(key);
  return StoredSubscription{endpoint, point, std::string(16, 'a')};
}

double Metric(prometheus::Registry& registry, const std::string& name,
              const std::string& reason = "") {
  for (const auto& family : registry.Collect()) {
    if (family.name != name) continue;
    for (const auto& metric : family.metric) {
      bool match = reason.empty();
      for (const auto& label : metric.label) {
        match |= label.name == "reason" && label.value == reason;
      }
      if (!match) continue;
      if (family.type == prometheus::MetricType::Histogram) {
        return static_cast<double>(metric.histogram.sample_count);
      }
      return metric.counter.value;
    }
  }
  return 0;
}

class PushDispatcherTest : public ::testing::Test {
 protected:
  PushDispatcherTest() {
    signer_ = *VapidSigner::FromPem(NewVapidPem(), "mailto:ops@example.org", &clock_);
    DispatcherOptions options;
    options.retry.max_retries = 2;
    options.retry.base_delay = absl::Seconds(1);
    dispatcher_ = std::make_unique<PushDispatcher>(options, &store_, &poster_, signer_.get(),
                                                   &gate_, &scheduler_, &clock_,
                                                   [] { return 0.5; }, &registry_);
    store_.subscriptions["bob"] = Subscription("https://push.example.net/wpush/bob");
    store_.subscriptions["carol"] = Subscription("https://push.example.net/wpush/carol");
  }
  void Wake(const std::string& user) { dispatcher_->Wake({user, 1}, clock_.Now()); }

  testing::ManualClock clock_;
  prometheus::Registry registry_;
  FakeStore store_;
  FakePoster poster_;
  FakeScheduler scheduler_;
  OriginGate gate_{&clock_};
  std::unique_ptr<VapidSigner> signer_;
  std::unique_ptr<PushDispatcher> dispatcher_;
};

TEST_F(PushDispatcherTest, PostsTheWakeUpAndCountsASent) {
  Wake("bob");
  ASSERT_EQ(poster_.posts.size(), 1u);
  EXPECT_EQ(poster_.posts[0].first.url, "https://push.example.net/wpush/bob");
  EXPECT_EQ(poster_.posts[0].first.body.size(), kWakeUpBodyBytes);
  poster_.Answer(201);
  ASSERT_EQ(scheduler_.tasks.size(), 1u);  // the answer is handled on a worker
  EXPECT_EQ(scheduler_.RunNext(clock_), absl::ZeroDuration());
  EXPECT_EQ(Metric(registry_, "padlock_notifier_pushes_sent_total"), 1);
  EXPECT_EQ(Metric(registry_, "padlock_notifier_push_latency_seconds"), 1);
  EXPECT_TRUE(scheduler_.tasks.empty());
}

TEST_F(PushDispatcherTest, NotFoundAndGoneDeleteTheSubscription) {
  Wake("bob");
  Wake("carol");
  poster_.Answer(404);
  poster_.Answer(410);
  scheduler_.RunNext(clock_);
  scheduler_.RunNext(clock_);
  EXPECT_EQ(store_.deleted, (std::vector<std::string>{"bob", "carol"}));
  EXPECT_EQ(Metric(registry_, "padlock_notifier_subscriptions_deleted_total", "404"), 1);
  EXPECT_EQ(Metric(registry_, "padlock_notifier_subscriptions_deleted_total", "410"), 1);
  EXPECT_TRUE(scheduler_.tasks.empty());  // no retry
}

TEST_F(PushDispatcherTest, TooManyRequestsKeepsEveryPushAwayFromTheOriginUntilRetryAfter) {
  Wake("bob");
  poster_.Answer(429, "30");
  const absl::Time answered_at = clock_.Now();
  scheduler_.RunNext(clock_);  // handles the 429: blocks the origin, schedules a retry
  EXPECT_EQ(gate_.BlockedUntil("https://push.example.net"), answered_at + absl::Seconds(30));
  // Another device on the same push service is held back too.
  Wake("carol");
  EXPECT_EQ(poster_.posts.size(), 1u);
  // Run whatever is due, in time order, until the clock reaches the end of the block: no post.
  while (!scheduler_.tasks.empty() && poster_.posts.size() == 1u) {
    std::sort(scheduler_.tasks.begin(), scheduler_.tasks.end(),
              [](const auto& a, const auto& b) { return a.first < b.first; });
    const absl::Time before = clock_.Now();
    scheduler_.RunNext(clock_);
    if (poster_.posts.size() > 1u) {
      EXPECT_GE(clock_.Now(), answered_at + absl::Seconds(30)) << "posted at " << before;
    }
    for (auto& [delay, task] : scheduler_.tasks) {  // keep the others' absolute due times
      delay -= clock_.Now() - before;
    }
  }
  EXPECT_GE(clock_.Now(), answered_at + absl::Seconds(30));
  EXPECT_GT(poster_.posts.size(), 1u);
}

TEST_F(PushDispatcherTest, ServerErrorsRetryWithJitterABoundedNumberOfTimes) {
  Wake("bob");
  poster_.Answer(503);
  scheduler_.RunNext(clock_);  // the answer
  ASSERT_EQ(scheduler_.tasks.size(), 1u);
  EXPECT_EQ(scheduler_.tasks[0].first, absl::Milliseconds(500));  // 0.5 × 1 s
  scheduler_.RunNext(clock_);  // retry 1
  ASSERT_EQ(poster_.posts.size(), 2u);
  poster_.Answer(0);  // no answer at all
  scheduler_.RunNext(clock_);
  ASSERT_EQ(scheduler_.tasks.size(), 1u);
  EXPECT_EQ(scheduler_.tasks[0].first, absl::Seconds(1));  // 0.5 × 2 s
  scheduler_.RunNext(clock_);  // retry 2, the last
  ASSERT_EQ(poster_.posts.size(), 3u);
  poster_.Answer(500);
  scheduler_.RunNext(clock_);
  EXPECT_TRUE(scheduler_.tasks.empty());
  EXPECT_EQ(Metric(registry_, "padlock_notifier_pushes_failed_total", "server_error"), 1);
  EXPECT_EQ(Metric(registry_, "padlock_notifier_push_retries_total"), 2);
}

TEST_F(PushDispatcherTest, RedirectIsAFailureWithoutRetry) {
  Wake("bob");
  poster_.Answer(301);
  scheduler_.RunNext(clock_);
  EXPECT_TRUE(scheduler_.tasks.empty());
  EXPECT_EQ(poster_.posts.size(), 1u);
  EXPECT_EQ(Metric(registry_, "padlock_notifier_pushes_failed_total", "redirect"), 1);
  EXPECT_TRUE(store_.deleted.empty());
}

TEST_F(PushDispatcherTest, DeviceWithoutSubscriptionGetsNothing) {
  Wake("dave");
  EXPECT_TRUE(poster_.posts.empty());
  EXPECT_EQ(Metric(registry_, "padlock_notifier_no_subscription_total"), 1);
}

}  // namespace
}  // namespace padlock::notifier
