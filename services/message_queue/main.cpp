// padlock-message-queue: composition root only (config → adapters → service → serve → drain).
#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "services/common/redis/redis_client.h"
#include "services/common/runtime/config.h"
#include "services/common/runtime/executor.h"
#include "services/common/runtime/logging.h"
#include "services/common/runtime/server.h"
#include "services/common/wiring/wiring.h"
#include "services/message_queue/dedupe_id.h"
#include "services/message_queue/dispatcher.h"
#include "services/message_queue/grpc_device_directory.h"
#include "services/message_queue/grpc_push_notifier.h"
#include "services/message_queue/message_queue_config.h"
#include "services/message_queue/message_queue_service.h"
#include "services/message_queue/redis_device_directory.h"
#include "services/message_queue/redis_inbox_store.h"
#include "services/message_queue/redis_memory_monitor.h"

namespace runtime = padlock::runtime;
namespace mq = padlock::message_queue;

int main() {
  auto config = runtime::Config::FromEnvironment();
  runtime::InitLoggingFromConfig(config, "message-queue");
  runtime::ServerOptions options = runtime::ServerOptionsFromConfig(
      config, "message-queue", 7420, 9420, /*default_max_connection_age=*/absl::Minutes(5));
  // Only gateways enqueue, read and ack.
  options.internal_tls = runtime::InternalTlsFromConfig(config);
  options.callers = {{"padlock.v1.MessageQueue", {runtime::ServiceIdentity("gateway")}}};
  runtime::ServiceRunner runner(options);
  padlock::redis::RedisOptions redis_options =
      padlock::wiring::RedisOptionsFromConfig(config, &runner.metrics());
  mq::MessageQueueSettings settings = mq::MessageQueueSettingsFromConfig(config);
  const std::string key_directory_target =
      padlock::wiring::TargetFromConfig(config, "KEY_DIRECTORY", "dns:///127.0.0.1:7430");
  // WAIT's reply is read within the Redis command timeout: a longer WAIT would always time out.
  if (settings.limits.durability.replicas > 0 &&
      settings.limits.durability.timeout >= redis_options.command_timeout) {
    config.AddError("PADLOCK_REDIS_WAIT_TIMEOUT",
                    absl::StrCat("must be below PADLOCK_REDIS_TIMEOUT (",
                                 absl::FormatDuration(redis_options.command_timeout), ")"));
  }
  runtime::ExitIfInvalid(config);

  auto redis = padlock::redis::RedisClient::Create(std::move(redis_options));
  if (!redis.ok()) {
    runtime::LogError("adapter set-up failed", {{"error", redis.status()}});
    return 1;
  }
  auto key_directory = padlock::wiring::MakeInternalChannel(
      key_directory_target, *options.internal_tls, "key-directory");
  // Summaries in Redis first; the key-directory only for users without one (it fills them).
  mq::GrpcDeviceDirectory key_directory_lists(key_directory, settings.device_list_deadline);
  mq::RedisDeviceDirectory directory(redis->get(), &key_directory_lists, &runner.metrics());
  // Sends are refused above the memory marks, well before maxmemory + noeviction would refuse
  // every write (presence, logins, acks); the monitor's polls feed the admission.
  mq::MemoryAdmission admission(settings.admission);
  mq::RedisInboxStore store(redis->get(), settings.limits, &admission);
  mq::RedisMemoryMonitor memory_monitor(redis->get(), &runner.metrics(), &admission);
  memory_monitor.Start(settings.memory_poll_interval);
  // Push wake-ups only with a notifier (the store's push interval is zero without one).
  std::unique_ptr<mq::GrpcPushNotifier> notifier;
  if (!settings.notifier_target.empty()) {
    notifier = std::make_unique<mq::GrpcPushNotifier>(
        padlock::wiring::MakeInternalChannel(settings.notifier_target, *options.internal_tls,
                                             "notifier"),
        settings.notify_deadline, /*max_in_flight=*/256, &runner.metrics());
  }
  mq::Dispatcher dispatcher(settings.dispatch, &directory, &store, runtime::SystemClock::Get(),
                            &runner.metrics(), notifier.get());
  // Replicas must log the same key id, or retries across them are stored twice.
  runtime::LogInfo("dedupe ids",
                   {{"key_id", mq::DedupeIds(settings.dispatch.dedupe_secret).key_id()}});
  // Redis and key-directory calls run here, never on gRPC callback threads.
  runtime::BoundedExecutor executor("message-queue", settings.workers, settings.queue);
  mq::MessageQueueService service(&dispatcher, &executor);
  runner.AddService(&service);
  runner.AddReadinessCheck("redis", [&] { return padlock::wiring::CheckRedis(**redis); });
  if (absl::Status s = runner.Start(); !s.ok()) {
    runtime::LogError("start failed", {{"error", s}});
    return 1;
  }
  runner.Wait();
  memory_monitor.Stop();
  executor.Shutdown();
  return 0;
}
