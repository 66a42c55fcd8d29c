// A test-only service binary built like a real Padlock service (ServiceRunner, config, logging),
// serving SlowService. Used by runtime_integration_test as a child process.
//
// Environment: the PADLOCK_* variables of ServerOptionsFromConfig (default ports: 0 = any), and
// PADLOCK_TEST_IGNORE_CANCEL=true to make Sleep ignore cancellation (a handler that never
// finishes, to test the shutdown watchdog), PADLOCK_TEST_ADMISSION=true to accept connections
// through runtime::ConnectionAcceptor (with the PADLOCK_MAX_CONNECTIONS… variables).

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>

#include "services/common/runtime/config.h"
#include "services/common/runtime/executor.h"
#include "services/common/runtime/logging.h"
#include "services/common/runtime/server.h"
#include "services/common/runtime/status.h"
#include "slow_service.grpc.pb.h"

namespace padlock::testing::runtime {
namespace {

namespace rt = ::padlock::runtime;

class SlowServiceImpl final : public SlowService::CallbackService {
 public:
  SlowServiceImpl(rt::BoundedExecutor* executor, std::atomic<bool>* ready, bool ignore_cancel)
      : executor_(executor), ready_(ready), ignore_cancel_(ignore_cancel) {}

  grpc::ServerUnaryReactor* Sleep(grpc::CallbackServerContext* /*context*/,
                                  const SleepRequest* request, SleepResponse* response) override {
    return new SleepReactor(executor_, request->millis(), ignore_cancel_, response);
  }

  grpc::ServerUnaryReactor* SetReady(grpc::CallbackServerContext* context,
                                     const SetReadyRequest* request,
                                     SetReadyResponse* /*response*/) override {
    ready_->store(request->ready());
    grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
    reactor->Finish(grpc::Status::OK);
    return reactor;
  }

 private:
  // Waits on the executor (never on a gRPC thread), and stops waiting when the call is
  // cancelled, so that a server shutdown never waits for a sleeping handler.
  class SleepReactor final : public grpc::ServerUnaryReactor {
   public:
    SleepReactor(rt::BoundedExecutor* executor, uint32_t millis, bool ignore_cancel,
                 SleepResponse* response) {
      absl::Status submitted = executor->Submit([this, millis, ignore_cancel, response]() {
        bool cancelled;
        {
          std::unique_lock<std::mutex> lock(mu_);
          cancelled = cancel_.wait_for(lock, std::chrono::milliseconds(millis),
                                       [this, ignore_cancel] {
                                         return cancelled_ && !ignore_cancel;
                                       });
        }
        // Finish last: OnDone (and delete this) may run as soon as it is called.
        if (cancelled) {
          Finish(grpc::Status(grpc::StatusCode::CANCELLED, "sleep cancelled"));
        } else {
          response->set_millis(millis);
          Finish(grpc::Status::OK);
        }
      });
      if (!submitted.ok()) Finish(rt::ToGrpcStatus(submitted));
    }
    // gRPC calls OnCancel before OnDone, and OnDone only after Finish, so the task that waits
    // on `cancel_` is done with this object before it is deleted.
    void OnCancel() override {
      std::lock_guard<std::mutex> lock(mu_);
      cancelled_ = true;
      cancel_.notify_all();
    }
    void OnDone() override { delete this; }

   private:
    std::mutex mu_;
    std::condition_variable cancel_;
    bool cancelled_ = false;
  };

  rt::BoundedExecutor* const executor_;
  std::atomic<bool>* const ready_;
  const bool ignore_cancel_;
};

int Main() {
  rt::Config config = rt::Config::FromEnvironment();
  rt::InitLoggingFromConfig(config, "slow-server");
  rt::ServerOptions options = rt::ServerOptionsFromConfig(config, "slow-server", 0, 0);
  const bool ignore_cancel = config.Bool("PADLOCK_TEST_IGNORE_CANCEL", false);
  if (config.Bool("PADLOCK_TEST_ADMISSION", false)) {
    options.admission = rt::AdmissionOptionsFromConfig(config);
  }
  rt::ExitIfInvalid(config);

  rt::BoundedExecutor executor("sleep", 4, 16);
  std::atomic<bool> ready{true};
  SlowServiceImpl service(&executor, &ready, ignore_cancel);
  rt::ServiceRunner runner(options);
  runner.AddService(&service);
  runner.AddReadinessCheck("test-toggle", [&ready]() -> absl::Status {
    if (ready.load()) return absl::OkStatus();
    return absl::UnavailableError("test toggle is off");
  });
  runner.AddDrainHook([](absl::Time deadline) {
    rt::LogInfo("drain hook ran", {{"seconds_left", deadline - absl::Now()}});
  });
  if (absl::Status status = runner.Start(); !status.ok()) {
    rt::LogError("cannot start", {{"error", status}});
    return 1;
  }
  runner.Wait();
  executor.Shutdown();
  return 0;
}

}  // namespace
}  // namespace padlock::testing::runtime

int main() { return padlock::testing::runtime::Main(); }
