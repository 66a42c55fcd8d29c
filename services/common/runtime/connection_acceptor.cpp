#include "services/common/runtime/connection_acceptor.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <prometheus/counter.h>
#include <prometheus/gauge.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "services/common/runtime/config.h"
#include "services/common/runtime/logging.h"

namespace padlock::runtime {
namespace {

int64_t NowUnixMillis() { return absl::ToUnixMillis(absl::Now()); }

// "1.2.3.4" for IPv4 (and IPv4-mapped IPv6), the /64 prefix "2001:db8:1:2::/64" for IPv6: one
// IPv6 host usually holds a whole /64, so a per-address cap by full address would not bite.
std::string AddressKey(const sockaddr_storage& addr) {
  char text[INET6_ADDRSTRLEN] = {};
  if (addr.ss_family == AF_INET) {
    const auto* in = reinterpret_cast<const sockaddr_in*>(&addr);
    ::inet_ntop(AF_INET, &in->sin_addr, text, sizeof(text));
    return text;
  }
  if (addr.ss_family == AF_INET6) {
    const auto* in6 = reinterpret_cast<const sockaddr_in6*>(&addr);
    if (IN6_IS_ADDR_V4MAPPED(&in6->sin6_addr)) {
      ::inet_ntop(AF_INET, &in6->sin6_addr.s6_addr[12], text, sizeof(text));
      return text;
    }
    in6_addr prefix = in6->sin6_addr;
    std::memset(&prefix.s6_addr[8], 0, 8);
    ::inet_ntop(AF_INET6, &prefix, text, sizeof(text));
    return absl::StrCat(text, "/64");
  }
  return "other";
}

absl::StatusOr<std::pair<std::string, std::string>> SplitHostPort(const std::string& address) {
  std::string host, port;
  if (!address.empty() && address.front() == '[') {
    const size_t close = address.find(']');
    if (close == std::string::npos || close + 1 >= address.size() || address[close + 1] != ':') {
      return absl::InvalidArgumentError(absl::StrCat("bad listen address '", address, "'"));
    }
    host = address.substr(1, close - 1);
    port = address.substr(close + 2);
  } else {
    const size_t colon = address.rfind(':');
    if (colon == std::string::npos) {
      return absl::InvalidArgumentError(absl::StrCat("bad listen address '", address, "'"));
    }
    host = address.substr(0, colon);
    port = address.substr(colon + 1);
  }
  return std::make_pair(host, port);
}

}  // namespace

AdmissionOptions AdmissionOptionsFromConfig(Config& config) {
  AdmissionOptions options;
  options.max_connections =
      config.Int("PADLOCK_MAX_CONNECTIONS", options.max_connections, 1, 10'000'000);
  options.max_connections_per_address = config.Int(
      "PADLOCK_MAX_CONNECTIONS_PER_ADDRESS", options.max_connections_per_address, 0, 10'000'000);
  options.fd_headroom = config.Int("PADLOCK_FD_HEADROOM", options.fd_headroom, 0, 1'000'000);
  options.handshake_timeout =
      config.Duration("PADLOCK_HANDSHAKE_TIMEOUT", options.handshake_timeout,
                      absl::Milliseconds(100), absl::Minutes(10));
  options.stuck_after = config.Duration("PADLOCK_ACCEPT_STUCK_AFTER", options.stuck_after,
                                        absl::Milliseconds(100), absl::Hours(1));
  options.restart_after = config.Duration("PADLOCK_ACCEPT_STUCK_RESTART", options.restart_after,
                                          absl::ZeroDuration(), absl::Hours(24));
  if (options.restart_after == absl::ZeroDuration()) {
    options.restart_after = absl::InfiniteDuration();
  }
  return options;
}

int64_t RaiseDescriptorLimit() {
  rlimit limit{};
  if (::getrlimit(RLIMIT_NOFILE, &limit) != 0) return 1024;
  if (limit.rlim_cur < limit.rlim_max) {
    rlimit raised = limit;
    raised.rlim_cur = limit.rlim_max;
    if (::setrlimit(RLIMIT_NOFILE, &raised) == 0) limit = raised;
  }
  if (limit.rlim_cur == RLIM_INFINITY) return INT64_MAX;
  return static_cast<int64_t>(limit.rlim_cur);
}

absl::StatusOr<std::unique_ptr<ConnectionAcceptor>> ConnectionAcceptor::Listen(
    const std::string& address, AdmissionOptions options, prometheus::Registry& registry) {
  auto host_port = SplitHostPort(address);
  if (!host_port.ok()) return host_port.status();
  addrinfo hints{};
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
  addrinfo* result = nullptr;
  const std::string& host = host_port->first;
  if (const int rc = ::getaddrinfo(host.empty() ? nullptr : host.c_str(),
                                   host_port->second.c_str(), &hints, &result);
      rc != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("cannot resolve listen address '", address, "': ", gai_strerror(rc)));
  }
  int fd = -1;
  std::string error = "no address";
  for (addrinfo* ai = result; ai != nullptr; ai = ai->ai_next) {
    fd = ::socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, ai->ai_protocol);
    if (fd < 0) {
      error = strerror(errno);
      continue;
    }
    const int one = 1;
    // SO_REUSEADDR (restart while old connections linger in TIME_WAIT), never SO_REUSEPORT: a
    // second instance on the same port must fail, as with gRPC's listener (runtime/server.cpp).
    ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (ai->ai_family == AF_INET6) {
      const int zero = 0;  // "[::]" also takes IPv4, like gRPC's wildcard listener
      ::setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof(zero));
    }
    if (::bind(fd, ai->ai_addr, ai->ai_addrlen) == 0 && ::listen(fd, SOMAXCONN) == 0) break;
    error = strerror(errno);
    ::close(fd);
    fd = -1;
  }
  ::freeaddrinfo(result);
  if (fd < 0) {
    return absl::UnavailableError(absl::StrCat("cannot listen on ", address, ": ", error));
  }
  sockaddr_storage bound{};
  socklen_t len = sizeof(bound);
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&bound), &len);
  const int port = bound.ss_family == AF_INET6
                       ? ntohs(reinterpret_cast<sockaddr_in6*>(&bound)->sin6_port)
                       : ntohs(reinterpret_cast<sockaddr_in*>(&bound)->sin_port);

  const int64_t descriptors = RaiseDescriptorLimit();
  const int64_t ceiling = std::max<int64_t>(1, descriptors - options.fd_headroom);
  const int64_t max_connections = std::min(options.max_connections, ceiling);
  if (max_connections < options.max_connections) {
    LogWarn("connection cap lowered to fit the descriptor limit",
            {{"configured", options.max_connections},
             {"effective", max_connections},
             {"rlimit_nofile", descriptors},
             {"fd_headroom", options.fd_headroom}});
  }
  return std::unique_ptr<ConnectionAcceptor>(
      new ConnectionAcceptor(fd, port, options, max_connections, registry));
}

ConnectionAcceptor::ConnectionAcceptor(int listen_fd, int port, AdmissionOptions options,
                                       int64_t max_connections, prometheus::Registry& registry)
    : listen_fd_(listen_fd),
      port_(port),
      options_(options),
      max_connections_(max_connections),
      last_admitted_(absl::Now()) {
  stop_fd_ = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  reserve_fd_ = ::open("/dev/null", O_RDONLY | O_CLOEXEC);

  open_gauge_ = &prometheus::BuildGauge()
                     .Name("padlock_connections_open")
                     .Help("Client connections handed to gRPC and not yet closed.")
                     .Register(registry)
                     .Add({});
  prometheus::BuildGauge()
      .Name("padlock_connections_max")
      .Help("The effective cap on open client connections (PADLOCK_MAX_CONNECTIONS, lowered to "
            "fit RLIMIT_NOFILE minus PADLOCK_FD_HEADROOM).")
      .Register(registry)
      .Add({})
      .Set(static_cast<double>(max_connections_));
  accepting_gauge_ = &prometheus::BuildGauge()
                          .Name("padlock_accepting")
                          .Help("1 while the accept loop can take connections, 0 when it has "
                                "been out of descriptors for PADLOCK_ACCEPT_STUCK_AFTER.")
                          .Register(registry)
                          .Add({});
  accepted_ = &prometheus::BuildCounter()
                   .Name("padlock_connections_accepted_total")
                   .Help("Client connections accepted and handed to gRPC.")
                   .Register(registry)
                   .Add({});
  auto& refused = prometheus::BuildCounter()
                      .Name("padlock_connections_refused_total")
                      .Help("Client connections closed at accept, by reason.")
                      .Register(registry);
  refused_max_ = &refused.Add({{"reason", "max_connections"}});
  refused_per_address_ = &refused.Add({{"reason", "per_address"}});
  refused_fd_ = &refused.Add({{"reason", "fd_exhausted"}});
  auto& errors = prometheus::BuildCounter()
                     .Name("padlock_accept_errors_total")
                     .Help("accept(2) failures, by errno.")
                     .Register(registry);
  error_emfile_ = &errors.Add({{"error", "EMFILE"}});
  error_enfile_ = &errors.Add({{"error", "ENFILE"}});
  error_enobufs_ = &errors.Add({{"error", "ENOBUFS"}});
  error_enomem_ = &errors.Add({{"error", "ENOMEM"}});
  error_other_ = &errors.Add({{"error", "other"}});
  accepting_gauge_->Set(1);
}

ConnectionAcceptor::~ConnectionAcceptor() {
  Stop();
  if (listen_fd_ >= 0) ::close(listen_fd_);
  if (stop_fd_ >= 0) ::close(stop_fd_);
  if (reserve_fd_ >= 0) ::close(reserve_fd_);
}

void ConnectionAcceptor::Start(
    std::unique_ptr<grpc::experimental::ExternalConnectionAcceptor> grpc_acceptor) {
  grpc_acceptor_ = std::move(grpc_acceptor);
  running_.store(true);
  thread_ = std::thread([this] { Run(); });
}

void ConnectionAcceptor::Stop() {
  if (!thread_.joinable()) return;
  const uint64_t one = 1;
  ssize_t ignored = ::write(stop_fd_, &one, sizeof(one));
  (void)ignored;
  thread_.join();
  running_.store(false);
  // The queue may still hold connections: no longer ours to accept, and gRPC is shutting down.
  ::shutdown(listen_fd_, SHUT_RDWR);
}

bool ConnectionAcceptor::Accepting() const {
  if (!running_.load()) return false;
  const int64_t since = stuck_since_unix_ms_.load(std::memory_order_relaxed);
  if (since == 0) return true;
  return NowUnixMillis() - since < absl::ToInt64Milliseconds(options_.stuck_after);
}

void ConnectionAcceptor::Run() {
  const int sweep_ms = static_cast<int>(absl::ToInt64Milliseconds(options_.sweep_interval));
  const int backoff_ms = static_cast<int>(absl::ToInt64Milliseconds(options_.error_backoff));
  absl::Time next_sweep = absl::Now() + options_.sweep_interval;
  absl::Time paused_until = absl::InfinitePast();
  while (true) {
    const absl::Time now = absl::Now();
    const bool paused = now < paused_until;
    pollfd fds[2] = {{stop_fd_, POLLIN, 0},
                     {listen_fd_, static_cast<short>(paused ? 0 : POLLIN), 0}};
    absl::Duration wait = next_sweep - now;
    if (paused) wait = std::min(wait, paused_until - now);
    const int timeout = static_cast<int>(
        std::clamp<int64_t>(absl::ToInt64Milliseconds(wait), 0, std::max(sweep_ms, backoff_ms)));
    const int n = ::poll(fds, paused ? 1 : 2, timeout);
    if (n < 0 && errno != EINTR) {
      LogError("accept loop poll failed", {{"error", std::string(strerror(errno))}});
      paused_until = absl::Now() + options_.error_backoff;
      continue;
    }
    if ((fds[0].revents & POLLIN) != 0) return;
    if (absl::Now() >= next_sweep) {
      Sweep(/*full=*/false);
      next_sweep = absl::Now() + options_.sweep_interval;
    }
    if (!paused || absl::Now() >= paused_until) {
      if (!AcceptAll()) paused_until = absl::Now() + options_.error_backoff;
    }
    accepting_gauge_->Set(Accepting() ? 1 : 0);
  }
}

bool ConnectionAcceptor::AcceptAll() {
  while (true) {
    sockaddr_storage addr{};
    socklen_t len = sizeof(addr);
    const int fd = ::accept4(listen_fd_, reinterpret_cast<sockaddr*>(&addr), &len,
                             SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd >= 0) {
      Admit(fd, AddressKey(addr));
      continue;
    }
    const int error = errno;
    if (error == EAGAIN || error == EWOULDBLOCK) return true;
    if (error == EINTR || error == ECONNABORTED || error == EPROTO) continue;
    NoteAcceptError(error);
    if (error == EMFILE || error == ENFILE) {
      // Closed connections may have freed descriptors that the sweep has not counted yet.
      Sweep(/*full=*/true);
      RefuseForDescriptors();
    }
    return false;
  }
}

void ConnectionAcceptor::NoteAcceptError(int error) {
  switch (error) {
    case EMFILE: error_emfile_->Increment(); break;
    case ENFILE: error_enfile_->Increment(); break;
    case ENOBUFS: error_enobufs_->Increment(); break;
    case ENOMEM: error_enomem_->Increment(); break;
    default: error_other_->Increment(); break;
  }
  const bool exhausted = error == EMFILE || error == ENFILE;
  if (exhausted && exhausted_since_ == absl::InfiniteFuture()) {
    exhausted_since_ = absl::Now();
    stuck_since_unix_ms_.store(NowUnixMillis(), std::memory_order_relaxed);
    // Once per episode; the counters carry the rate.
    LogError("accept failed: out of descriptors; refusing connections until some close",
             {{"error", std::string(strerror(error))},
              {"open_connections", open_.load()},
              {"max_connections", max_connections_}});
  } else if (!exhausted) {
    LogWarn("accept failed; retrying", {{"error", std::string(strerror(error))}});
  }
}

void ConnectionAcceptor::RefuseForDescriptors() {
  // The reserve trick: give back one descriptor so that the waiting connection can be accepted
  // and closed (a client sees its connection refused instead of hanging in the listen queue).
  if (reserve_fd_ < 0) reserve_fd_ = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  if (reserve_fd_ < 0) return;  // still exhausted: the backoff retries
  ::close(reserve_fd_);
  reserve_fd_ = -1;
  while (true) {
    const int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) break;
    ::close(fd);
    refused_fd_->Increment();
  }
  reserve_fd_ = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
}

void ConnectionAcceptor::Admit(int fd, std::string address_key) {
  // The kernel hands out only closed numbers: an entry under this number is a connection that
  // gRPC closed since the last sweep.
  if (tracked_.contains(fd)) Release(fd);
  if (open_.load(std::memory_order_relaxed) >= max_connections_ &&
      (!SweepBeforeRefusal() || open_.load(std::memory_order_relaxed) >= max_connections_)) {
    ::close(fd);
    refused_max_->Increment();
    return;
  }
  if (options_.max_connections_per_address > 0) {
    auto over = [&] {
      auto it = per_address_.find(address_key);
      return it != per_address_.end() && it->second >= options_.max_connections_per_address;
    };
    if (over() && (!SweepBeforeRefusal() || over())) {
      ::close(fd);
      refused_per_address_->Increment();
      return;
    }
  }
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    ::close(fd);
    return;
  }
  const int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  ++per_address_[address_key];
  tracked_.emplace(fd, Tracked{static_cast<uint64_t>(st.st_ino), std::move(address_key)});
  peak_since_trim_ = std::max(peak_since_trim_, open_.fetch_add(1, std::memory_order_relaxed) + 1);
  open_gauge_->Increment();
  accepted_->Increment();
  last_admitted_ = absl::Now();
  exhausted_since_ = absl::InfiniteFuture();
  stuck_since_unix_ms_.store(0, std::memory_order_relaxed);

  grpc::experimental::ExternalConnectionAcceptor::NewConnectionParameters params;
  params.listener_fd = listen_fd_;
  params.fd = fd;
  // gRPC owns the descriptor from here and closes it (also when it cannot use it).
  grpc_acceptor_->HandleNewConnection(&params);
}

void ConnectionAcceptor::Release(int fd) {
  auto it = tracked_.find(fd);
  if (it == tracked_.end()) return;
  auto count = per_address_.find(it->second.address_key);
  if (count != per_address_.end() && --count->second <= 0) per_address_.erase(count);
  tracked_.erase(it);
  open_.fetch_sub(1, std::memory_order_relaxed);
  open_gauge_->Decrement();
}

bool ConnectionAcceptor::SweepBeforeRefusal() {
  if (absl::Now() - last_full_sweep_ < kRefusalSweepGap) return false;
  const int64_t before = open_.load(std::memory_order_relaxed);
  Sweep(/*full=*/true);
  return open_.load(std::memory_order_relaxed) < before;
}

void ConnectionAcceptor::Sweep(bool full) {
  const uint64_t open = tracked_.size();
  uint64_t stride = 1;
  if (!full && open > static_cast<uint64_t>(kSweepSlice)) {
    stride = (open + kSweepSlice - 1) / kSweepSlice;
  }
  const uint64_t phase = sweep_phase_++ % stride;
  if (stride == 1) last_full_sweep_ = absl::Now();
  std::vector<int> closed;
  for (const auto& [fd, tracked] : tracked_) {
    if (static_cast<uint64_t>(fd) % stride != phase) continue;
    struct stat st {};
    if (::fstat(fd, &st) != 0 || static_cast<uint64_t>(st.st_ino) != tracked.inode ||
        !S_ISSOCK(st.st_mode)) {
      closed.push_back(fd);
    }
  }
  for (int fd : closed) Release(fd);
  MaybeReturnMemory();
}

void ConnectionAcceptor::MaybeReturnMemory() {
  // Each connection holds ~13-16 KiB in gRPC's buffers; glibc keeps what they freed in its
  // arenas, so after a flood of 10 000 connections RSS stays ~170 MiB above its baseline
  // (measured). Once most of a high-water mark has closed, hand the free pages back
  // (malloc_trim also releases free pages inside the arenas); at most every few seconds, as it
  // walks every arena.
  const int64_t open = open_.load(std::memory_order_relaxed);
  peak_since_trim_ = std::max(peak_since_trim_, open);
  const absl::Time now = absl::Now();
  if (peak_since_trim_ - open < kTrimAfterClosed || open > peak_since_trim_ / 2 ||
      now - last_trim_ < absl::Seconds(5)) {
    return;
  }
  ::malloc_trim(0);
  last_trim_ = now;
  peak_since_trim_ = open;
}

}  // namespace padlock::runtime
