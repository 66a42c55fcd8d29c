#include "services/common/runtime/server.h"

#include <errno.h>
#include <netdb.h>
#include <poll.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/health_check_service_interface.h>
#include <grpcpp/impl/server_builder_option.h>
#include <grpcpp/impl/server_builder_plugin.h>
#include <grpcpp/impl/server_initializer.h>
#include <grpcpp/security/server_credentials.h>
#include <prometheus/exposer.h>
#include <prometheus/gauge.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <climits>
#include <condition_variable>
#include <cstdlib>
#include <exception>
#include <mutex>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "services/common/runtime/grpc_metrics.h"
#include "services/common/runtime/log_rate_limiter.h"
#include "services/common/runtime/logging.h"
#include "services/common/runtime/malformed_request_interceptor.h"
#include "services/common/runtime/process_metrics.h"

#ifndef PADLOCK_VERSION
#define PADLOCK_VERSION "unknown"
#endif

namespace padlock::runtime {
namespace {

constexpr char kLivenessService[] = "liveness";

// ---- Signals ---------------------------------------------------------------------------------
// The handler may only use async-signal-safe calls: lock-free atomics, write(2), _exit(2).
// The eventfd is never read: once a shutdown signal came it stays readable, so every Wait (and
// a Wait that starts later) sees it.

std::atomic<int> g_signal_fd{-1};
std::atomic<int> g_signal_count{0};
std::atomic<int> g_last_signal{0};
static_assert(std::atomic<int>::is_always_lock_free);

extern "C" void HandleShutdownSignal(int signo) {
  const int saved_errno = errno;
  g_last_signal.store(signo, std::memory_order_relaxed);
  if (g_signal_count.fetch_add(1, std::memory_order_relaxed) >= 1) {
    // A second SIGTERM/SIGINT: the operator does not want to wait for the drain.
    _exit(128 + signo);
  }
  const uint64_t one = 1;
  const int fd = g_signal_fd.load(std::memory_order_relaxed);
  if (fd >= 0) {
    ssize_t ignored = ::write(fd, &one, sizeof(one));
    (void)ignored;
  }
  errno = saved_errno;
}

absl::Status InstallSignalHandlers() {
  static std::once_flag once;
  static absl::Status result;
  std::call_once(once, [] {
    const int fd = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (fd < 0) {
      result = absl::InternalError(absl::StrCat("eventfd: ", strerror(errno)));
      return;
    }
    g_signal_fd.store(fd);
    struct sigaction action {};
    action.sa_handler = &HandleShutdownSignal;
    sigemptyset(&action.sa_mask);
    action.sa_flags = SA_RESTART;
    if (::sigaction(SIGTERM, &action, nullptr) != 0 || ::sigaction(SIGINT, &action, nullptr) != 0) {
      result = absl::InternalError(absl::StrCat("sigaction: ", strerror(errno)));
    }
  });
  return result;
}

// ---- Service names -----------------------------------------------------------------------------
// grpc::Service does not expose its name; the server's list of registered services is reachable
// only through a builder plugin. This option adds one that reports the list from InitServer,
// after the services were registered and before the server starts taking calls.

class ServiceListPlugin final : public grpc::ServerBuilderPlugin {
 public:
  explicit ServiceListPlugin(std::function<void(std::vector<std::string>)> on_init)
      : on_init_(std::move(on_init)) {}
  std::string name() override { return "padlock_service_list"; }
  void InitServer(grpc::ServerInitializer* si) override { on_init_(*si->GetServiceList()); }
  void Finish(grpc::ServerInitializer* /*si*/) override {}
  void ChangeArguments(const std::string& /*name*/, void* /*value*/) override {}

 private:
  std::function<void(std::vector<std::string>)> on_init_;
};

class ServiceListOption final : public grpc::ServerBuilderOption {
 public:
  explicit ServiceListOption(std::function<void(std::vector<std::string>)> on_init)
      : on_init_(std::move(on_init)) {}
  void UpdateArguments(grpc::ChannelArguments* /*args*/) override {}
  void UpdatePlugins(std::vector<std::unique_ptr<grpc::ServerBuilderPlugin>>* plugins) override {
    plugins->push_back(std::make_unique<ServiceListPlugin>(std::move(on_init_)));
  }

 private:
  std::function<void(std::vector<std::string>)> on_init_;
};

// Opens and closes a TCP connection to host:port, ignoring every error.
void PokeTcp(const std::string& host, int port) {
  addrinfo hints{};
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_NUMERICSERV;
  addrinfo* result = nullptr;
  if (::getaddrinfo(host.c_str(), std::to_string(port).c_str(), &hints, &result) != 0) return;
  for (addrinfo* ai = result; ai != nullptr; ai = ai->ai_next) {
    const int fd = ::socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
    if (fd < 0) continue;
    timeval timeout{0, 100 * 1000};
    ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, sizeof(timeout));
    const bool connected = ::connect(fd, ai->ai_addr, ai->ai_addrlen) == 0;
    ::close(fd);
    if (connected) break;
  }
  ::freeaddrinfo(result);
}

int ClampedMillis(absl::Duration d) {
  const int64_t ms = absl::ToInt64Milliseconds(d);
  return static_cast<int>(std::clamp<int64_t>(ms, 0, INT_MAX));
}

}  // namespace

ServerOptions ServerOptionsFromConfig(Config& config, std::string service_name,
                                      int default_grpc_port, int default_metrics_port,
                                      absl::Duration default_max_connection_age) {
  ServerOptions options;
  options.service_name = std::move(service_name);
  const bool has_address = config.Has("PADLOCK_GRPC_ADDRESS");
  const bool has_port = config.Has("PADLOCK_GRPC_PORT");
  const int port = config.Port("PADLOCK_GRPC_PORT", default_grpc_port);
  options.listen_address = absl::StrCat("0.0.0.0:", port);
  if (has_address) {
    options.listen_address = config.HostPort("PADLOCK_GRPC_ADDRESS", options.listen_address);
    if (has_port) {
      config.AddError("PADLOCK_GRPC_ADDRESS",
                      "set either PADLOCK_GRPC_ADDRESS or PADLOCK_GRPC_PORT, not both");
    }
  }
  options.metrics_host = config.String("PADLOCK_METRICS_HOST", options.metrics_host);
  options.metrics_port = config.Port("PADLOCK_METRICS_PORT", default_metrics_port);
  options.grace_period = config.Duration("PADLOCK_SHUTDOWN_GRACE", options.grace_period,
                                         absl::ZeroDuration(), absl::Hours(1));
  options.max_connection_age =
      config.Duration("PADLOCK_MAX_CONNECTION_AGE", default_max_connection_age);
  if (options.max_connection_age == absl::ZeroDuration()) {
    options.max_connection_age = absl::InfiniteDuration();
  }
  options.readiness_poll_interval =
      config.Duration("PADLOCK_READINESS_INTERVAL", options.readiness_poll_interval,
                      absl::Milliseconds(10), absl::Minutes(10));
  options.readiness_check_timeout =
      config.Duration("PADLOCK_READINESS_CHECK_TIMEOUT", options.readiness_check_timeout,
                      absl::Milliseconds(10), absl::Minutes(1));
  return options;
}

void AdminPortFromConfig(Config& config, ServerOptions& options, int default_admin_port) {
  const bool has_address = config.Has("PADLOCK_ADMIN_ADDRESS");
  const bool has_port = config.Has("PADLOCK_ADMIN_PORT");
  const int port = config.Port("PADLOCK_ADMIN_PORT", default_admin_port);
  // The gRPC port's host by default, so that one PADLOCK_GRPC_ADDRESS=127.0.0.1:… keeps both
  // ports on loopback.
  const size_t colon = options.listen_address.rfind(':');
  const std::string host =
      colon == std::string::npos ? "0.0.0.0" : options.listen_address.substr(0, colon);
  options.admin_listen_address = absl::StrCat(host, ":", port);
  if (has_address) {
    options.admin_listen_address =
        config.HostPort("PADLOCK_ADMIN_ADDRESS", options.admin_listen_address);
    if (has_port) {
      config.AddError("PADLOCK_ADMIN_ADDRESS",
                      "set either PADLOCK_ADMIN_ADDRESS or PADLOCK_ADMIN_PORT, not both");
    }
  }
}

ServiceRunner::ServiceRunner(ServerOptions options)
    : options_(std::move(options)), registry_(std::make_shared<prometheus::Registry>()) {
  // Debian's Abseil is built without NDEBUG, which leaves absl::Mutex's deadlock detector on: a
  // lock-order graph updated on every lock gRPC takes (a few % of the gateway's CPU in a
  // profile). Lock order is ours to get right and TSan checks it in CI; turn the detector off.
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  // Both are process-wide switches read when a builder is created / a server built.
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::EnableDefaultHealthCheckService(true);
  builder_ = std::make_unique<grpc::ServerBuilder>();
  // Our clients (wiring::MakeInternalChannel, the gateway's devices) send keepalive pings even
  // between calls. gRPC servers by default count such pings as abuse and answer GOAWAY "too many
  // pings" — which fails the next call on that channel. Accept them, at most one per 5 s.
  builder_->AddChannelArgument(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  builder_->AddChannelArgument(GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS, 5000);
  grpc_metrics_ = std::make_unique<GrpcServerMetrics>(*registry_);
  process_collector_ = std::make_shared<ProcessCollector>();
  shutdown_fd_ = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);

  prometheus::BuildGauge()
      .Name("padlock_build_info")
      .Help("Always 1; labels name the service and its version.")
      .Register(*registry_)
      .Add({{"service", options_.service_name}, {"version", PADLOCK_VERSION}})
      .Set(1);
  ready_gauge_ = &prometheus::BuildGauge()
                      .Name("padlock_ready")
                      .Help("1 while every readiness check passes and the server is not "
                            "draining, else 0.")
                      .Register(*registry_)
                      .Add({});
}

ServiceRunner::~ServiceRunner() {
  if (started_ && !drained_) {
    RequestShutdown();
    Drain("destroyed");
  }
  if (shutdown_fd_ >= 0) ::close(shutdown_fd_);
}

void ServiceRunner::AddService(grpc::Service* service) { builder_->RegisterService(service); }

void ServiceRunner::AddInterceptorFactory(
    std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface> factory) {
  extra_interceptors_.push_back(std::move(factory));
}

void ServiceRunner::AddReadinessCheck(std::string name, std::function<absl::Status()> check) {
  ReadinessCheck entry;
  entry.name = std::move(name);
  entry.check = std::move(check);
  checks_.push_back(std::move(entry));
}

void ServiceRunner::AddDrainHook(std::function<void(absl::Time deadline)> hook) {
  drain_hooks_.push_back(std::move(hook));
}

void ServiceRunner::SetServiceNames(std::vector<std::string> names) {
  // Health and reflection are always there (registered by the server and its plugin, possibly
  // after this callback), so their calls are always labelled by name.
  std::vector<std::string> for_metrics = names;
  for_metrics.push_back("grpc.health.v1.Health");
  for_metrics.push_back("grpc.reflection.v1alpha.ServerReflection");
  grpc_metrics_->SetServices(for_metrics);

  std::vector<std::string> ours;
  for (std::string& name : names) {
    if (!absl::StartsWith(name, "grpc.")) ours.push_back(std::move(name));
  }
  std::lock_guard<std::mutex> lock(mu_);
  service_names_ = std::move(ours);
}

absl::Status ServiceRunner::Start() {
  if (started_) return absl::FailedPreconditionError("ServiceRunner::Start called twice");
  if (shutdown_fd_ < 0) return absl::InternalError(absl::StrCat("eventfd: ", strerror(errno)));

  // /metrics first: a port conflict there is as fatal as one on the gRPC port.
  const std::string metrics_address = absl::StrCat(
      absl::StrContains(options_.metrics_host, ':') && options_.metrics_host.front() != '['
          ? absl::StrCat("[", options_.metrics_host, "]")
          : options_.metrics_host,
      ":", options_.metrics_port);
  try {
    // civetweb reports bind failures by throwing; this is the adapter where that stops.
    exposer_ = std::make_unique<prometheus::Exposer>(metrics_address, /*num_threads=*/2);
  } catch (const std::exception& e) {
    return absl::UnavailableError(
        absl::StrCat("metrics: cannot listen on ", metrics_address, ": ", e.what()));
  }
  exposer_->RegisterCollectable(registry_);
  exposer_->RegisterCollectable(process_collector_);
  const std::vector<int> metrics_ports = exposer_->GetListeningPorts();
  metrics_port_ = metrics_ports.empty() ? options_.metrics_port : metrics_ports.front();

  grpc::ServerBuilder& b = *builder_;
  std::shared_ptr<grpc::ServerCredentials> credentials =
      options_.credentials != nullptr ? options_.credentials : grpc::InsecureServerCredentials();
  if (options_.internal_tls.has_value()) {
    credentials = InternalServerCredentials(*options_.internal_tls, options_.callers,
                                            registry_.get(), "grpc");
    if (options_.internal_tls->insecure) {
      LogWarn("PADLOCK_INTERNAL_INSECURE=1: internal gRPC is plaintext and accepts every caller "
              "(tests only)");
    }
  }
  const bool admin = !options_.admin_listen_address.empty();
  if (admin && !options_.internal_tls.has_value()) {
    StopMetrics();
    return absl::FailedPreconditionError("an admin port needs internal_tls (operator checks)");
  }
  std::unique_ptr<grpc::experimental::ExternalConnectionAcceptor> external;
  if (options_.admission.has_value()) {
    // Our own accept loop instead of gRPC's (connection_acceptor.h says why).
    auto acceptor =
        ConnectionAcceptor::Listen(options_.listen_address, *options_.admission, *registry_);
    if (!acceptor.ok()) {
      StopMetrics();
      return acceptor.status();
    }
    acceptor_ = std::move(*acceptor);
    grpc_port_ = acceptor_->port();
    external = b.experimental().AddExternalConnectionAcceptor(
        grpc::ServerBuilder::experimental_type::ExternalConnectionType::FROM_FD, credentials);
    // Also bounds connections that never send the HTTP/2 preface and SETTINGS (gRPC's timer
    // "Did not receive HTTP/2 settings before handshake timeout").
    b.AddChannelArgument(GRPC_ARG_SERVER_HANDSHAKE_TIMEOUT_MS,
                         ClampedMillis(options_.admission->handshake_timeout));
  } else {
    b.AddListeningPort(options_.listen_address, credentials, &grpc_port_);
  }
  if (admin) {
    b.AddListeningPort(options_.admin_listen_address,
                       InternalServerCredentials(*options_.internal_tls, options_.admin_callers,
                                                 registry_.get(), "admin"),
                       &admin_port_);
  }
  // gRPC sets SO_REUSEPORT by default: a second instance on the same port would start without an
  // error and silently take half of the connections. A port conflict must fail Start instead.
  b.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
  if (options_.max_connection_age != absl::InfiniteDuration()) {
    b.AddChannelArgument(GRPC_ARG_MAX_CONNECTION_AGE_MS, ClampedMillis(options_.max_connection_age));
    b.AddChannelArgument(GRPC_ARG_MAX_CONNECTION_AGE_GRACE_MS,
                         ClampedMillis(options_.grace_period));
  }
  std::vector<std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>> creators;
  for (auto& factory : extra_interceptors_) creators.push_back(std::move(factory));
  extra_interceptors_.clear();
  // Before the metrics interceptor, which then counts the rewritten code.
  creators.push_back(NewMalformedRequestInterceptorFactory());
  creators.push_back(grpc_metrics_->NewInterceptorFactory());
  b.experimental().SetInterceptorCreators(std::move(creators));
  b.SetOption(std::make_unique<ServiceListOption>(
      [this](std::vector<std::string> names) { SetServiceNames(std::move(names)); }));

  server_ = b.BuildAndStart();
  if (server_ == nullptr || grpc_port_ == 0 || (admin && admin_port_ == 0)) {
    if (server_ != nullptr) server_->Shutdown();
    server_.reset();
    acceptor_.reset();
    StopMetrics();
    return absl::UnavailableError(
        absl::StrCat("gRPC: cannot listen on ", options_.listen_address,
                     admin ? absl::StrCat(" or ", options_.admin_listen_address) : "",
                     " (address in use or invalid?)"));
  }
  if (acceptor_ != nullptr) acceptor_->Start(std::move(external));
  started_ = true;
  // gRPC's default health service answers SERVING for "" as soon as the server runs; nothing is
  // ready until the first readiness poll below says so (a slow check must not be preceded by a
  // false SERVING).
  if (grpc::HealthCheckServiceInterface* health = server_->GetHealthCheckService()) {
    health->SetServingStatus(false);
  }

  if (options_.handle_signals) {
    // A write to a closed socket must be an error return, not a process kill.
    ::signal(SIGPIPE, SIG_IGN);
    if (absl::Status s = InstallSignalHandlers(); !s.ok()) {
      LogError("cannot install signal handlers; SIGTERM will not drain", {{"error", s}});
    }
  }

  if (acceptor_ != nullptr) {
    // A process that cannot take connections is not ready either (else padlock_ready says 1
    // while nobody can connect).
    AddReadinessCheck("accept", [this]() -> absl::Status {
      if (acceptor_->Accepting()) return absl::OkStatus();
      return absl::UnavailableError("out of descriptors: cannot accept connections");
    });
  }
  auto& check_family = prometheus::BuildGauge()
                           .Name("padlock_readiness_check_ok")
                           .Help("1 while the named readiness check passes, else 0.")
                           .Register(*registry_);
  for (ReadinessCheck& check : checks_) check.gauge = &check_family.Add({{"check", check.name}});

  grpc::HealthCheckServiceInterface* health = server_->GetHealthCheckService();
  if (health != nullptr) health->SetServingStatus(kLivenessService, true);
  for (size_t i = 0; i < checks_.size(); ++i) RunCheck(i);
  PollReadiness();
  for (size_t i = 0; i < checks_.size(); ++i) {
    check_threads_.emplace_back([this, i] { CheckLoop(i); });
  }
  readiness_thread_ = std::thread([this] { ReadinessLoop(); });

  LogInfo("serving", {{"grpc_address", options_.listen_address},
                      {"grpc_port", grpc_port_},
                      {"admin_address", options_.admin_listen_address},
                      {"admin_port", admin_port_},
                      {"metrics_address", metrics_address},
                      {"metrics_port", metrics_port_},
                      {"internal_tls", !options_.internal_tls.has_value()      ? "none"
                                       : options_.internal_tls->insecure ? "insecure"
                                                                         : "mtls"}});
  return absl::OkStatus();
}

void ServiceRunner::RunCheck(size_t i) {
  ReadinessCheck& check = checks_[i];
  {
    std::lock_guard<std::mutex> lock(mu_);
    check.running_since = absl::Now();
  }
  absl::Status status;
  try {
    status = check.check();
  } catch (const std::exception& e) {
    // A check should not throw; treat it as failing rather than terminating the server.
    status = absl::InternalError(absl::StrCat("readiness check threw: ", e.what()));
  }
  {
    std::lock_guard<std::mutex> lock(mu_);
    check.last = std::move(status);
    check.running_since = absl::InfiniteFuture();
  }
  changed_.notify_all();
}

void ServiceRunner::CheckLoop(size_t i) {
  const auto interval = absl::ToChronoMilliseconds(options_.readiness_poll_interval);
  std::unique_lock<std::mutex> lock(mu_);
  while (!changed_.wait_for(lock, interval, [this] { return stop_readiness_; })) {
    lock.unlock();
    RunCheck(i);
    lock.lock();
  }
}

absl::Time ServiceRunner::PollReadiness() {
  bool ready = true;
  const absl::Time now = absl::Now();
  absl::Time next_overdue = absl::InfiniteFuture();
  for (ReadinessCheck& check : checks_) {
    absl::Status status;
    {
      std::lock_guard<std::mutex> lock(mu_);
      status = check.last;
      const absl::Time overdue = check.running_since + options_.readiness_check_timeout;
      if (check.running_since != absl::InfiniteFuture()) {
        if (now >= overdue) {
          status = absl::DeadlineExceededError(
              absl::StrCat("no answer within ", absl::FormatDuration(
                                                    options_.readiness_check_timeout)));
        } else {
          next_overdue = std::min(next_overdue, overdue);
        }
      }
    }
    if (!status.ok()) {
      ready = false;
      if (!check.failing) {
        LogWarn("readiness check failing; reporting NOT_SERVING",
                {{"check", check.name}, {"error", status}});
      }
    } else if (check.failing) {
      LogInfo("readiness check passing again", {{"check", check.name}});
    }
    check.failing = !status.ok();
    check.gauge->Set(status.ok() ? 1 : 0);
  }
  ready_gauge_->Set(ready ? 1 : 0);

  const bool live = acceptor_ == nullptr || acceptor_->Accepting();
  if (!last_live_.has_value() || *last_live_ != live) {
    if (last_live_.has_value()) {
      if (live) {
        LogInfo("accepting connections again; liveness SERVING");
      } else {
        LogError("cannot accept connections; reporting liveness NOT_SERVING");
      }
    }
    last_live_ = live;
    not_live_since_ = live ? absl::InfiniteFuture() : absl::Now();
    if (grpc::HealthCheckServiceInterface* health = server_->GetHealthCheckService()) {
      health->SetServingStatus(kLivenessService, live);
    }
  }
  if (!live && absl::Now() - not_live_since_ >= options_.admission->restart_after &&
      exit_status_.exchange(1) == 0) {
    LogError("cannot accept connections for too long; draining and exiting with status 1 so "
             "that the supervisor restarts the process",
             {{"not_live_seconds", absl::Now() - not_live_since_}});
    RequestShutdown();
  }

  // Only on change: the health service sends every update to its Watch streams.
  if (last_ready_.has_value() && *last_ready_ == ready) return next_overdue;
  last_ready_ = ready;
  grpc::HealthCheckServiceInterface* health = server_->GetHealthCheckService();
  if (health == nullptr) return next_overdue;
  health->SetServingStatus("", ready);
  std::lock_guard<std::mutex> lock(mu_);
  for (const std::string& name : service_names_) health->SetServingStatus(name, ready);
  return next_overdue;
}

void ServiceRunner::ReadinessLoop() {
  // Re-evaluates on every answer of a check (they notify changed_), when a running check becomes
  // overdue, and at least every poll interval (liveness and the restart-after timer).
  const absl::Duration interval = options_.readiness_poll_interval;
  absl::Time wake = absl::Now() + interval;
  std::unique_lock<std::mutex> lock(mu_);
  while (true) {
    changed_.wait_until(lock, absl::ToChronoTime(wake));
    if (stop_readiness_) return;
    lock.unlock();
    const absl::Time next_overdue = PollReadiness();
    wake = std::min(absl::Now() + interval, next_overdue);
    lock.lock();
  }
}

void ServiceRunner::RequestShutdown() {
  if (shutdown_fd_ < 0) return;
  const uint64_t one = 1;
  ssize_t ignored = ::write(shutdown_fd_, &one, sizeof(one));
  (void)ignored;
}

void ServiceRunner::Wait() {
  if (!started_ || drained_) return;
  std::vector<pollfd> fds;
  fds.push_back({shutdown_fd_, POLLIN, 0});
  const int signal_fd = options_.handle_signals ? g_signal_fd.load() : -1;
  if (signal_fd >= 0) fds.push_back({signal_fd, POLLIN, 0});
  std::string reason = "requested";
  while (true) {
    const int n = ::poll(fds.data(), fds.size(), /*timeout=*/-1);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      LogError("poll failed while waiting for shutdown; draining now",
               {{"error", std::string(strerror(errno))}});
      break;
    }
    if (fds.size() > 1 && (fds[1].revents & POLLIN) != 0) {
      reason = g_last_signal.load() == SIGINT ? "SIGINT" : "SIGTERM";
      break;
    }
    if ((fds[0].revents & POLLIN) != 0) break;
  }
  Drain(reason);
}

void ServiceRunner::StopMetrics() {
  if (exposer_ == nullptr) return;
  // civetweb's listener thread notices the stop flag only when its poll(2) returns, which takes
  // up to 2 s when nobody connects; connecting wakes it, so the exposer stops in milliseconds.
  std::string host = options_.metrics_host;
  if (host.size() > 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  if (host.empty() || host == "0.0.0.0") host = "127.0.0.1";
  if (host == "::") host = "::1";
  std::mutex mu;
  std::condition_variable cv;
  bool stopped = false;
  std::thread stopper([&] {
    exposer_.reset();
    std::lock_guard<std::mutex> lock(mu);
    stopped = true;
    cv.notify_all();
  });
  std::unique_lock<std::mutex> lock(mu);
  while (!cv.wait_for(lock, std::chrono::milliseconds(20), [&] { return stopped; })) {
    lock.unlock();
    PokeTcp(host, metrics_port_);
    lock.lock();
  }
  lock.unlock();
  stopper.join();
}

void ServiceRunner::Drain(std::string_view reason) {
  if (drained_) return;
  drained_ = true;
  const absl::Time began = absl::Now();
  const absl::Time deadline = began + options_.grace_period;
  LogInfo("draining", {{"reason", reason}, {"grace_seconds", options_.grace_period}});

  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_readiness_ = true;
  }
  changed_.notify_all();
  if (readiness_thread_.joinable()) readiness_thread_.join();
  ready_gauge_->Set(0);
  // Every name NOT_SERVING, and no later change takes effect.
  if (grpc::HealthCheckServiceInterface* health = server_->GetHealthCheckService()) {
    health->Shutdown();
  }

  std::thread watchdog;
  if (options_.hard_exit_margin != absl::InfiniteDuration()) {
    const absl::Time hard_deadline = deadline + options_.hard_exit_margin;
    watchdog = std::thread([this, hard_deadline] {
      std::unique_lock<std::mutex> lock(mu_);
      if (changed_.wait_until(lock, absl::ToChronoTime(hard_deadline),
                              [this] { return drain_done_; })) {
        return;
      }
      lock.unlock();
      LogError("shutdown did not finish after the grace period; exiting",
               {{"grace_seconds", options_.grace_period}});
      _exit(1);
    });
  }

  for (const auto& hook : drain_hooks_) hook(deadline);
  // No new connections from here on, as gRPC's own listener stops in Shutdown.
  if (acceptor_ != nullptr) acceptor_->Stop();
  // Stops accepting calls at once; in-flight calls may run until the deadline, then they are
  // cancelled; returns when every call is done.
  server_->Shutdown(absl::ToChronoTime(deadline));
  server_->Wait();
  // Joined last, so that a check blocked on a frozen dependency (until its own deadline) does
  // not hold up the drain; they have stopped reporting (nothing reads their answers any more).
  for (std::thread& t : check_threads_) t.join();
  check_threads_.clear();
  StopMetrics();

  {
    std::lock_guard<std::mutex> lock(mu_);
    drain_done_ = true;
  }
  changed_.notify_all();
  if (watchdog.joinable()) watchdog.join();
  FlushSuppressedLogs();
  LogInfo("stopped", {{"drain_seconds", absl::Now() - began}});
  if (const int status = exit_status_.load(); status != 0) _exit(status);
}

}  // namespace padlock::runtime
