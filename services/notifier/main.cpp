// padlock-notifier: composition root only (config → adapters → dispatcher → serve → drain).
#include <memory>
#include <mutex>
#include <random>
#include <string>

#include "services/common/redis/redis_client.h"
#include "services/common/runtime/config.h"
#include "services/common/runtime/executor.h"
#include "services/common/runtime/logging.h"
#include "services/common/runtime/server.h"
#include "services/common/wiring/wiring.h"
#include "services/notifier/curl_push_client.h"
#include "services/notifier/notifier_config.h"
#include "services/notifier/notifier_service.h"
#include "services/notifier/push_dispatcher.h"
#include "services/notifier/push_policy.h"
#include "services/notifier/redis_subscription_store.h"
#include "services/notifier/timer_scheduler.h"
#include "services/notifier/web_push.h"

namespace runtime = padlock::runtime;
namespace notifier = padlock::notifier;

int main() {
  auto config = runtime::Config::FromEnvironment();
  runtime::InitLoggingFromConfig(config, "notifier");
  runtime::ServerOptions options = runtime::ServerOptionsFromConfig(
      config, "notifier", 7440, 9440, /*default_max_connection_age=*/absl::Minutes(5));
  // Only the message-queue asks for wake-ups.
  options.internal_tls = runtime::InternalTlsFromConfig(config);
  options.callers = {{"padlock.v1.Notifier", {runtime::ServiceIdentity("message-queue")}}};
  runtime::ServiceRunner runner(options);
  padlock::redis::RedisOptions redis_options =
      padlock::wiring::RedisOptionsFromConfig(config, &runner.metrics());
  notifier::NotifierSettings settings = notifier::NotifierSettingsFromConfig(config);
  runtime::ExitIfInvalid(config);

  runtime::SystemClock clock;
  auto signer = notifier::VapidSigner::FromPem(settings.vapid_private_key_pem,
                                               settings.vapid_subject, &clock);
  if (!signer.ok()) {
    runtime::LogError("VAPID key refused", {{"error", signer.status()}});
    return 1;
  }
  auto redis = padlock::redis::RedisClient::Create(std::move(redis_options));
  if (!redis.ok()) {
    runtime::LogError("adapter set-up failed", {{"error", redis.status()}});
    return 1;
  }
  auto http = notifier::CurlPushClient::Create(settings.http);
  if (!http.ok()) {
    runtime::LogError("adapter set-up failed", {{"error", http.status()}});
    return 1;
  }
  notifier::RedisSubscriptionStore store(redis->get());
  runtime::BoundedExecutor executor("notifier", settings.workers, settings.queue);
  notifier::TimerScheduler scheduler(&executor, &runner.metrics());
  notifier::OriginGate gate(&clock);
  std::mutex random_mu;
  std::mt19937_64 random_engine(std::random_device{}());
  auto random = [&] {
    std::lock_guard<std::mutex> lock(random_mu);
    return std::uniform_real_distribution<double>(0.0, 1.0)(random_engine);
  };
  notifier::PushDispatcher dispatcher(settings.dispatch, &store, http->get(), signer->get(), &gate,
                                      &scheduler, &clock, random, &runner.metrics());
  notifier::NotifierService service(&dispatcher, &executor, &runner.metrics());
  runner.AddService(&service);
  runner.AddReadinessCheck("redis", [&] { return padlock::wiring::CheckRedis(**redis); });
  if (absl::Status s = runner.Start(); !s.ok()) {
    runtime::LogError("start failed", {{"error", s}});
    return 1;
  }
  runner.Wait();
  // Drain: no new retries, end the transfers in flight (their answers find the executor still
  // running), then let the workers finish.
  scheduler.Stop();
  http->reset();
  executor.Shutdown();
  return 0;
}
