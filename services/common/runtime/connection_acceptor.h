#pragma once
// Connection admission at the edge: a listening socket accepted by our own thread, whose
// connections are handed to gRPC (ServerBuilder::experimental().AddExternalConnectionAcceptor),
// so that the process decides who gets a descriptor and the accept loop survives running out of
// them.
//
// Why not gRPC's own listener: in gRPC 1.51 (tcp_server_posix.cc, on_read) any accept4 error but
// EINTR/EAGAIN/ECONNABORTED — EMFILE and ENFILE included — logs "Failed accept4" once and leaves
// the listener without a read notification, for good: the port keeps its listen queue but nobody
// accepts again (docs/ARCHITECTURE.md "Decisions").
//
// What this class does, per accepted connection:
//   - refuses it (closes at once) when `max_connections` are open (reason "max_connections") or
//     when its address already holds `max_connections_per_address` (reason "per_address"; IPv4 by
//     address, IPv6 by /64, IPv4-mapped IPv6 as IPv4);
//   - otherwise sets TCP_NODELAY and hands it to gRPC, which owns and closes the descriptor.
//     gRPC tells nobody when it closes one, so a sweep every `sweep_interval` checks handed-over
//     descriptors with fstat(2): a descriptor that is closed, or now names another socket
//     (another inode), was released — every descriptor while at most 2 000 are open, a rotating
//     slice of 2 000 beyond that, and all of them before a connection would be refused for a cap.
//     A new accept that returns a tracked number releases the old entry at once (the kernel only
//     reuses closed numbers).
// On EMFILE/ENFILE it closes a reserved descriptor, accepts and closes the waiting connection
// (reason "fd_exhausted": the client sees a close, not a hang), reopens the reserve, and retries
// after `error_backoff`; other accept errors back off the same way. It never stops by itself.
//
// After a flood (256 or more connections closed, down to half of the high-water mark) the sweep
// calls malloc_trim, so that the memory gRPC held for them leaves the process's RSS.
//
// Accepting() is false when the thread has stopped, or when since `stuck_after` no connection
// was admitted while every attempt failed for lack of descriptors; the runner reports it as
// liveness, so an orchestrator restarts a gateway that cannot take connections.
//
// Metrics (registered in the registry passed to Listen):
//   padlock_connections_open                     gauge, connections handed to gRPC and not closed
//   padlock_connections_max                      gauge, the effective global cap
//   padlock_connections_accepted_total           counter
//   padlock_connections_refused_total{reason}    counter: max_connections, per_address, fd_exhausted
//   padlock_accept_errors_total{error}           counter: EMFILE, ENFILE, ENOBUFS, ENOMEM, other
//   padlock_accepting                            gauge, Accepting() as 1/0
//
// Thread-safety: Listen, Start and Stop from one thread; Accepting, open_connections and port
// from any.

#include <grpcpp/server_builder.h>
#include <prometheus/registry.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace prometheus {
class Counter;
class Gauge;
}  // namespace prometheus

namespace padlock::runtime {

class Config;

struct AdmissionOptions {
  // Connections open at once; clamped to the descriptor limit minus `fd_headroom`.
  int64_t max_connections = 20000;
  // Connections open at once from one address (IPv6: one /64); 0 = no per-address cap.
  int64_t max_connections_per_address = 1000;
  // Descriptors kept free for everything else (Redis, upstream channels, /metrics, epoll, …).
  int64_t fd_headroom = 1024;
  // A connection that has not completed the HTTP/2 (and TLS) handshake by then is closed
  // (gRPC's GRPC_ARG_SERVER_HANDSHAKE_TIMEOUT_MS, default 120 s there).
  absl::Duration handshake_timeout = absl::Seconds(10);
  // How often closed connections are noticed (their counts released).
  absl::Duration sweep_interval = absl::Seconds(1);
  // Pause after an accept error before trying again.
  absl::Duration error_backoff = absl::Milliseconds(100);
  // Accepting() goes false after this long without an admitted connection while out of
  // descriptors.
  absl::Duration stuck_after = absl::Seconds(30);
  // After liveness has said NOT_SERVING this long, the runner drains and exits with status 1, so
  // that a supervisor that does not act on health (Docker Compose, systemd) restarts the
  // process. Longer than Kubernetes' liveness probe takes (3 × 10 s). Infinite = never.
  absl::Duration restart_after = absl::Minutes(2);
};

// PADLOCK_MAX_CONNECTIONS, PADLOCK_MAX_CONNECTIONS_PER_ADDRESS, PADLOCK_FD_HEADROOM,
// PADLOCK_HANDSHAKE_TIMEOUT, PADLOCK_ACCEPT_STUCK_AFTER, PADLOCK_ACCEPT_STUCK_RESTART ("0s" =
// never) (errors recorded in `config`).
AdmissionOptions AdmissionOptionsFromConfig(Config& config);

// Raises the soft RLIMIT_NOFILE to the hard limit; returns the soft limit now in force.
int64_t RaiseDescriptorLimit();

class ConnectionAcceptor {
 public:
  // Binds and listens on `address` ("host:port", "[v6]:port"; port 0 = any free port), computes
  // the effective cap from RLIMIT_NOFILE (after raising it). Unavailable when the address cannot
  // be bound; InvalidArgument when it cannot be parsed.
  static absl::StatusOr<std::unique_ptr<ConnectionAcceptor>> Listen(
      const std::string& address, AdmissionOptions options, prometheus::Registry& registry);
  ~ConnectionAcceptor();  // Stops.
  ConnectionAcceptor(const ConnectionAcceptor&) = delete;
  ConnectionAcceptor& operator=(const ConnectionAcceptor&) = delete;

  // Starts the accept thread; connections go to `grpc_acceptor`, which must outlive Stop().
  void Start(std::unique_ptr<grpc::experimental::ExternalConnectionAcceptor> grpc_acceptor);
  // Closes the listening socket and joins the thread (connections already handed over stay with
  // gRPC). Idempotent.
  void Stop();

  int port() const { return port_; }
  int64_t max_connections() const { return max_connections_; }
  int64_t open_connections() const { return open_.load(std::memory_order_relaxed); }
  bool Accepting() const;

 private:
  struct Tracked {
    uint64_t inode;
    std::string address_key;
  };

  ConnectionAcceptor(int listen_fd, int port, AdmissionOptions options, int64_t max_connections,
                     prometheus::Registry& registry);
  void Run();
  // Accepts until the queue is empty; false when it stopped on an error (back off).
  bool AcceptAll();
  void Admit(int fd, std::string address_key);
  void Release(int fd);
  // Checks the handed-over descriptors and releases the closed ones: all of them with `full`,
  // else one slice (below).
  void Sweep(bool full);
  // Before refusing for a cap: a full sweep, at most every kRefusalSweepGap, so that connections
  // closed since the last sweep do not count against the newcomer. True when it freed any.
  bool SweepBeforeRefusal();
  void MaybeReturnMemory();
  void RefuseForDescriptors();
  void NoteAcceptError(int error);

  const int listen_fd_;
  const int port_;
  const AdmissionOptions options_;
  const int64_t max_connections_;
  int stop_fd_ = -1;
  int reserve_fd_ = -1;
  std::unique_ptr<grpc::experimental::ExternalConnectionAcceptor> grpc_acceptor_;
  std::thread thread_;

  // Touched only by the accept thread.
  absl::flat_hash_map<int, Tracked> tracked_;
  absl::flat_hash_map<std::string, int64_t> per_address_;
  absl::Time last_admitted_;
  absl::Time exhausted_since_ = absl::InfiniteFuture();  // first EMFILE/ENFILE since an admission
  // A periodic sweep fstat()s at most kSweepSlice descriptors: with more open, it checks every
  // stride-th one (fd % stride == phase), the phase advancing each sweep, so that each is checked
  // every ceil(open / kSweepSlice) sweeps. 10 000 idle connections cost 2 000 fstat calls per
  // second instead of 10 000; refusals sweep fully first, so the caps stay exact.
  static constexpr int64_t kSweepSlice = 2000;
  static constexpr absl::Duration kRefusalSweepGap = absl::Milliseconds(250);
  uint64_t sweep_phase_ = 0;
  absl::Time last_full_sweep_ = absl::InfinitePast();
  static constexpr int64_t kTrimAfterClosed = 256;
  int64_t peak_since_trim_ = 0;
  absl::Time last_trim_ = absl::InfinitePast();

  std::atomic<int64_t> open_{0};
  std::atomic<bool> running_{false};
  std::atomic<int64_t> stuck_since_unix_ms_{0};  // 0 = not out of descriptors

  prometheus::Gauge* open_gauge_;
  prometheus::Gauge* accepting_gauge_;
  prometheus::Counter* accepted_;
  prometheus::Counter* refused_max_;
  prometheus::Counter* refused_per_address_;
  prometheus::Counter* refused_fd_;
  prometheus::Counter* error_emfile_;
  prometheus::Counter* error_enfile_;
  prometheus::Counter* error_enobufs_;
  prometheus::Counter* error_enomem_;
  prometheus::Counter* error_other_;
};

}  // namespace padlock::runtime
