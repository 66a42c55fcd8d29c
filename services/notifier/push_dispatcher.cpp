#include "services/notifier/push_dispatcher.h"

#include <prometheus/counter.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include <utility>

#include "absl/strings/str_cat.h"
#include "services/common/runtime/logging.h"
#include "services/common/runtime/metrics_util.h"

namespace padlock::notifier {

PushDispatcher::PushDispatcher(DispatcherOptions options, SubscriptionStore* store,
                               PushPoster* poster, VapidSigner* signer, OriginGate* gate,
                               Scheduler* scheduler, const runtime::Clock* clock,
                               std::function<double()> random, prometheus::Registry* metrics)
    : options_(std::move(options)),
      store_(store),
      poster_(poster),
      signer_(signer),
      gate_(gate),
      scheduler_(scheduler),
      clock_(clock),
      random_(std::move(random)),
      metrics_(metrics) {
  if (metrics == nullptr) return;
  failed_ = &prometheus::BuildCounter()
                 .Name("padlock_notifier_pushes_failed_total")
                 .Help("Wake-ups given up, by reason (store, no_answer, server_error, "
                       "throttled, redirect, rejected, bad_subscription, busy, internal)")
                 .Register(*metrics);
  deleted_ = &prometheus::BuildCounter()
                  .Name("padlock_notifier_subscriptions_deleted_total")
                  .Help("Subscriptions deleted because the push service said 404 or 410")
                  .Register(*metrics);
  sent_ = runtime::MakeCounter(metrics, "padlock_notifier_pushes_sent_total",
                               "Wake-ups the push service accepted (2xx)");
  retried_ = runtime::MakeCounter(metrics, "padlock_notifier_push_retries_total",
                                  "Retries scheduled after a 5xx, no answer or a 429");
  no_subscription_ = runtime::MakeCounter(
      metrics, "padlock_notifier_no_subscription_total",
      "Wake-ups for a device without a subscription (it was deleted since)");
  latency_ = &prometheus::BuildHistogram()
                  .Name("padlock_notifier_push_latency_seconds")
                  .Help("From the enqueue of the message to the push service's 2xx")
                  .Register(*metrics)
                  .Add({}, prometheus::Histogram::BucketBoundaries{0.05, 0.1, 0.25, 0.5, 1, 2.5,
                                                                   5, 10, 30, 60, 300, 3600});
}

void PushDispatcher::Fail(std::string_view reason) {
  if (failed_ != nullptr) failed_->Add({{"reason", std::string(reason)}}).Increment();
}

void PushDispatcher::Deleted(std::string_view reason) {
  if (deleted_ != nullptr) deleted_->Add({{"reason", std::string(reason)}}).Increment();
}

void PushDispatcher::Wake(const PushDevice& device, absl::Time enqueued_at) {
  Try(Attempt{device, enqueued_at, 0});
}

void PushDispatcher::Try(Attempt attempt) {
  absl::StatusOr<std::optional<StoredSubscription>> subscription = store_->Get(attempt.device);
  if (!subscription.ok()) {
    runtime::LogWarn("push subscription read failed", {{"error", subscription.status()}});
    RetryLater(std::move(attempt), "store");
    return;
  }
  if (!subscription->has_value()) {
    runtime::Increment(no_subscription_);
    return;
  }
  const StoredSubscription& s = **subscription;
  absl::StatusOr<std::string> origin = EndpointOrigin(s.endpoint);
  if (!origin.ok()) {
    Fail("bad_subscription");
    return;
  }
  // A push service that said 429 gets nothing before its Retry-After: wait for it (this does not
  // use up a retry; the 429 that set it did).
  const absl::Time now = clock_->Now();
  const absl::Time blocked_until = gate_->BlockedUntil(*origin);
  if (blocked_until > now) {
    scheduler_->RunAfter(blocked_until - now, [this, attempt = std::move(attempt)]() mutable {
      Try(std::move(attempt));
    });
    return;
  }
  absl::StatusOr<PushHttpRequest> request =
      BuildWakeUp(s.endpoint, s.p256dh, s.auth, options_.ttl, *signer_);
  if (!request.ok()) {
    Fail(request.status().code() == absl::StatusCode::kInvalidArgument ? "bad_subscription"
                                                                        : "internal");
    return;
  }
  absl::Status posted = poster_->Post(
      *std::move(request),
      [this, attempt, origin = *origin](const PushHttpResult& result) {
        // On the HTTP thread: hand over to a worker (the answer may need a store call).
        scheduler_->RunAfter(absl::ZeroDuration(), [this, attempt, origin, result] {
          Answered(attempt, origin, result);
        });
      });
  if (!posted.ok()) Fail("busy");
}

void PushDispatcher::Answered(Attempt attempt, const std::string& origin,
                              const PushHttpResult& result) {
  switch (ClassifyResponse(result.status)) {
    case PushOutcome::kSent:
      runtime::Increment(sent_);
      if (latency_ != nullptr) {
        latency_->Observe(absl::ToDoubleSeconds(clock_->Now() - attempt.enqueued_at));
      }
      return;
    case PushOutcome::kGone: {
      // The push service forgot the subscription for good: so do we.
      if (absl::Status s = store_->Delete(attempt.device); !s.ok()) {
        runtime::LogWarn("push subscription delete failed", {{"error", s}});
        Fail("store");
        return;
      }
      Deleted(absl::StrCat(result.status));
      return;
    }
    case PushOutcome::kThrottled:
      gate_->BlockUntil(origin, clock_->Now() + RetryAfter(result.retry_after, clock_->Now()));
      RetryLater(std::move(attempt), "throttled");
      return;
    case PushOutcome::kRetry:
      RetryLater(std::move(attempt), result.status == 0 ? "no_answer" : "server_error");
      return;
    case PushOutcome::kFailed:
      Fail(result.status >= 300 && result.status < 400 ? "redirect" : "rejected");
      return;
  }
}

void PushDispatcher::RetryLater(Attempt attempt, std::string_view reason) {
  ++attempt.retries;
  absl::Duration delay = RetryDelay(options_.retry, attempt.retries, random_());
  if (delay == absl::InfiniteDuration()) {
    Fail(reason);
    return;
  }
  runtime::Increment(retried_);
  // A 429's retry goes through Try, which waits for the origin's Retry-After on top of this.
  scheduler_->RunAfter(delay,
                       [this, attempt = std::move(attempt)]() mutable { Try(std::move(attempt)); });
}

}  // namespace padlock::notifier
