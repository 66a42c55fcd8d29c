#pragma once
// The gRPC server every Padlock service runs: its services plus grpc.health.v1, server
// reflection, Prometheus /metrics on a port of its own, gRPC server metrics, readiness checks and
// a bounded drain on SIGTERM/SIGINT. A service main() is, in full:
//
//   auto config = runtime::Config::FromEnvironment();
//   runtime::InitLoggingFromConfig(config, "presence");
//   runtime::ServerOptions options = runtime::ServerOptionsFromConfig(config, "presence", 7410, 9410);
//   options.internal_tls = runtime::InternalTlsFromConfig(config);       // mutual TLS
//   options.callers = {{"padlock.v1.Presence", {runtime::ServiceIdentity("gateway")}}};
//   ... read the service's own variables ...
//   runtime::ExitIfInvalid(config);
//   runtime::ServiceRunner runner(options);
//   PresenceService service(...);                       // outlives runner.Wait()
//   runner.AddService(&service);
//   runner.AddReadinessCheck("redis", [&] { return redis.Ping(); });
//   runner.AddDrainHook([&](absl::Time deadline) { service.CloseStreams(deadline); });
//   if (absl::Status s = runner.Start(); !s.ok()) { runtime::LogError("start", {{"error", s}}); return 1; }
//   runner.Wait();
//   return 0;
//
// Health (grpc.health.v1.Health/Check and Watch):
//   ""                   readiness: SERVING only while every readiness check passes (with
//                        admission, also the implicit "accept" check). Checks run at
//                        Start and then each on its own thread every readiness_poll_interval
//                        (100 ms); one that has not answered within readiness_check_timeout
//                        (150 ms) counts as failing until it does. So readiness follows a
//                        dependency going down, freezing or coming back within about 250 ms.
//                        A check going bad logs a warning naming it, and recovery an info line.
//   "liveness"           SERVING whenever the process answers and (with admission) its accept
//                        loop can take connections (ConnectionAcceptor::Accepting).
//   each added service   by full name (e.g. "padlock.v1.Presence"): the readiness value.
//   While draining, every name is NOT_SERVING.
//
// Shutdown (Wait): on SIGTERM or SIGINT (or RequestShutdown) health goes NOT_SERVING, the drain
// hooks run, then grpc::Server::Shutdown(deadline = now + grace_period): no new calls, in-flight
// calls may finish until the deadline and are cancelled after it. Then /metrics stops and Wait
// returns. Callback-API handlers must finish promptly once cancelled (ServerBidiReactor::OnCancel
// → Finish), because gRPC waits for every reactor to be done. Should the drain still be running
// hard_exit_margin after the deadline, the process logs an error and exits with status 1 so that
// an orchestrator never has to SIGKILL it. A second SIGTERM/SIGINT exits at once (128 + signo).
//
// Signals: Start installs sigaction handlers for SIGTERM and SIGINT that only write to an eventfd
// (async-signal-safe); Wait polls it. Rule for main(): do not install other handlers for these two
// signals and do not block them in every thread (blocking them in some threads is fine). Start also
// ignores SIGPIPE, so that a write to a peer that closed (hiredis, libpq) returns EPIPE instead of
// killing the process.
//
// Thread-safety: configure (metrics(), AddService, builder(), Add*) and Start from one thread;
// RequestShutdown is safe from any thread and from signal handlers; Wait from one thread.

#include <grpcpp/security/server_credentials.h>
#include <grpcpp/server.h>
#include <grpcpp/server_builder.h>
#include <grpcpp/support/server_interceptor.h>
#include <prometheus/registry.h>

#include <atomic>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/time/time.h"
#include "services/common/runtime/config.h"
#include "services/common/runtime/connection_acceptor.h"
#include "services/common/runtime/internal_tls.h"

namespace prometheus {
class Exposer;
class Gauge;
template <typename T>
class Family;
}  // namespace prometheus

namespace padlock::runtime {

class GrpcServerMetrics;
class ProcessCollector;

struct ServerOptions {
  std::string service_name;       // "gateway": used in logs and metrics
  std::string listen_address;     // "0.0.0.0:7400"; port 0 picks a free port
  std::string metrics_host = "0.0.0.0";
  int metrics_port = 0;           // /metrics HTTP port (0 = pick any, for tests)
  absl::Duration grace_period = absl::Seconds(20);
  // GOAWAY after this age so that clients re-resolve and spread over new replicas; in-flight
  // calls then get grace_period to finish. Infinite = never (public gateway).
  absl::Duration max_connection_age = absl::InfiniteDuration();
  // Each readiness check runs on its own thread, once per interval; readiness is re-evaluated on
  // every answer. A check still running after readiness_check_timeout counts as failing until it
  // answers, so a frozen dependency (one that accepts and never answers) flips readiness too.
  absl::Duration readiness_poll_interval = absl::Milliseconds(100);
  absl::Duration readiness_check_timeout = absl::Milliseconds(150);
  // How long after the drain deadline a stuck shutdown is cut short with _exit(1).
  // Infinite = never.
  absl::Duration hard_exit_margin = absl::Seconds(5);
  // nullptr = plaintext (in-process tests); the gateway passes TLS credentials. Ignored when
  // internal_tls is set.
  std::shared_ptr<grpc::ServerCredentials> credentials;
  // Internal services: mutual TLS on every port, `callers` deciding who may call what on the
  // gRPC port (internal_tls.h); plaintext without checks when internal_tls->insecure.
  std::optional<InternalTls> internal_tls;
  CallerPolicy callers;
  // The operator surface on a port of its own ("" = none), e.g. "0.0.0.0:7431"; port 0 picks a
  // free one. The server is the same (every service answers on both ports): `admin_callers`
  // decides what the port serves, so a service certificate is refused there and an operator
  // certificate on the gRPC port. Requires internal_tls; with internal_tls->insecure both ports
  // serve everything to anybody.
  std::string admin_listen_address;
  CallerPolicy admin_callers;
  // Install the SIGTERM/SIGINT handlers in Start. In-process tests turn this off.
  bool handle_signals = true;
  // Set: the runner accepts connections itself (ConnectionAcceptor: caps, handshake deadline,
  // EMFILE recovery) and hands them to gRPC; liveness then also requires that the accept loop
  // can take connections. Unset: gRPC's own listener (internal services).
  std::optional<AdmissionOptions> admission;
};

// Options from the environment, with these variables (errors are recorded in `config`):
//   PADLOCK_GRPC_ADDRESS     host:port to listen on (default 0.0.0.0:<PADLOCK_GRPC_PORT>)
//   PADLOCK_GRPC_PORT        gRPC port (default `default_grpc_port`); set one of the two
//   PADLOCK_METRICS_HOST     /metrics bind host (default 0.0.0.0)
//   PADLOCK_METRICS_PORT     /metrics port (default `default_metrics_port`)
//   PADLOCK_SHUTDOWN_GRACE   drain time after SIGTERM (default 20s, at most 1h)
//   PADLOCK_MAX_CONNECTION_AGE  connection age before GOAWAY (default `default_max_connection_age`;
//                            "0s" = no limit)
//   PADLOCK_READINESS_INTERVAL  readiness poll period (default 100ms, 10ms..10m)
//   PADLOCK_READINESS_CHECK_TIMEOUT  a check running longer counts as failing (default 150ms,
//                            10ms..1m)
ServerOptions ServerOptionsFromConfig(
    Config& config, std::string service_name, int default_grpc_port, int default_metrics_port,
    absl::Duration default_max_connection_age = absl::InfiniteDuration());

// The operator port, into options.admin_listen_address, from
//   PADLOCK_ADMIN_ADDRESS    host:port (default <host of the gRPC address>:<PADLOCK_ADMIN_PORT>)
//   PADLOCK_ADMIN_PORT       port (default `default_admin_port`); set one of the two
void AdminPortFromConfig(Config& config, ServerOptions& options, int default_admin_port);

class ServiceRunner {
 public:
  explicit ServiceRunner(ServerOptions options);
  // When started and not yet drained: requests shutdown and drains (as Wait would).
  ~ServiceRunner();
  ServiceRunner(const ServiceRunner&) = delete;
  ServiceRunner& operator=(const ServiceRunner&) = delete;

  // Register domain metrics (padlock_...) here, before or after Start. Valid for the life of
  // this object.
  prometheus::Registry& metrics() { return *registry_; }
  // Sync, async-generic or callback services. Not owned: must outlive Wait().
  void AddService(grpc::Service* service);
  // For extra channel arguments, message size limits, keepalive settings. Before Start. Do not
  // call experimental().SetInterceptorCreators on it: use AddInterceptorFactory.
  grpc::ServerBuilder& builder() { return *builder_; }
  // Extra server interceptors; they run before the metrics interceptor, which therefore sees the
  // final status. Before Start.
  void AddInterceptorFactory(
      std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface> factory);
  // A dependency the service cannot work without ("redis", "postgres"). It runs on a thread of
  // its own, never concurrently with itself, every readiness_poll_interval; it should be cheap
  // (one round trip) and give its calls a deadline: while it runs longer than
  // readiness_check_timeout it counts as failing, and the drain waits for its last call to
  // return. Before Start.
  void AddReadinessCheck(std::string name, std::function<absl::Status()> check);
  // Runs in Wait after health went NOT_SERVING and before the server stops taking calls, in the
  // order added, with the drain deadline (e.g. tell stream clients to reconnect elsewhere).
  void AddDrainHook(std::function<void(absl::Time deadline)> hook);

  // Binds the /metrics port and the gRPC address (port 0 allowed), starts serving, runs the
  // readiness checks once, starts the readiness thread and (handle_signals) the signal
  // handlers. Errors: Unavailable when a port cannot be bound; FailedPrecondition when called
  // twice. On error nothing is left running.
  absl::Status Start();
  // The bound ports, after a successful Start.
  int grpc_port() const { return grpc_port_; }
  int admin_port() const { return admin_port_; }  // 0 without an admin port
  int metrics_port() const { return metrics_port_; }
  // After Start; null before. For in-process channels in tests.
  grpc::Server* server() { return server_.get(); }

  // Blocks until SIGTERM/SIGINT (handle_signals) or RequestShutdown, then drains as described
  // above and returns. Returns at once when Start did not succeed.
  void Wait();
  // Makes Wait return (after draining). Async-signal-safe; any thread; idempotent.
  void RequestShutdown();

 private:
  struct ReadinessCheck {
    std::string name;
    std::function<absl::Status()> check;
    bool failing = false;  // touched only by PollReadiness
    prometheus::Gauge* gauge = nullptr;
    // Guarded by mu_ (written by the check's own thread, read by PollReadiness):
    absl::Status last = absl::OkStatus();                   // the latest answer
    absl::Time running_since = absl::InfiniteFuture();      // the call in progress, if any
  };

  // Runs check `i` once and records its answer (and, meanwhile, that it is running).
  void RunCheck(size_t i);
  // Runs check `i` every readiness_poll_interval until the drain (its own thread).
  void CheckLoop(size_t i);
  // Readiness from the checks' latest answers (a check running longer than
  // readiness_check_timeout counts as failing); updates gauges, health and logs on change.
  // Returns the earliest time a running check would become overdue (InfiniteFuture if none).
  absl::Time PollReadiness();
  void ReadinessLoop();
  void Drain(std::string_view reason);
  void StopMetrics();
  void SetServiceNames(std::vector<std::string> names);

  const ServerOptions options_;
  std::shared_ptr<prometheus::Registry> registry_;
  std::unique_ptr<GrpcServerMetrics> grpc_metrics_;
  std::shared_ptr<ProcessCollector> process_collector_;
  std::unique_ptr<grpc::ServerBuilder> builder_;
  std::vector<std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>>
      extra_interceptors_;
  std::vector<ReadinessCheck> checks_;
  std::vector<std::function<void(absl::Time)>> drain_hooks_;
  prometheus::Gauge* ready_gauge_ = nullptr;
  std::optional<bool> last_ready_;  // touched only by PollReadiness (Start, then its thread)

  std::unique_ptr<prometheus::Exposer> exposer_;
  std::unique_ptr<grpc::Server> server_;
  std::unique_ptr<ConnectionAcceptor> acceptor_;  // with options_.admission, after Start
  std::optional<bool> last_live_;  // touched only by PollReadiness
  absl::Time not_live_since_ = absl::InfiniteFuture();  // touched only by PollReadiness
  std::atomic<int> exit_status_{0};  // non-zero: Drain exits the process with it
  int grpc_port_ = 0;
  int admin_port_ = 0;
  int metrics_port_ = 0;
  bool started_ = false;
  bool drained_ = false;
  int shutdown_fd_ = -1;  // eventfd written by RequestShutdown

  std::mutex mu_;  // std, not absl: see executor.h
  // stop_readiness_, drain_done_ or a readiness check's answer changed
  std::condition_variable changed_;
  // Full names of the services added, as the server registered them (set once during Start).
  std::vector<std::string> service_names_ ABSL_GUARDED_BY(mu_);
  bool stop_readiness_ ABSL_GUARDED_BY(mu_) = false;
  bool drain_done_ ABSL_GUARDED_BY(mu_) = false;
  std::thread readiness_thread_;
  std::vector<std::thread> check_threads_;  // one per readiness check
};

}  // namespace padlock::runtime
