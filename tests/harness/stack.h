#pragma once
// PadlockStack: the whole backend for end-to-end tests — a real redis-server (or a 3-master Redis
// Cluster), a real PostgreSQL with a fresh database, and the four real service binaries
// (key-directory, presence, message-queue, one or more gateways), each on free loopback ports,
// started in dependency order and waited on until they serve (readiness SERVING). Everything is
// stopped (SIGKILL on the processes, then the servers) when the stack is destroyed.
//
// Gateways run with PADLOCK_RATE_LIMIT_PROFILE=test (documented in docs/GATEWAY.md) and
// PADLOCK_TLS=off (plaintext gRPC) unless `gateway_env` overrides them. Logs of each process go to the stack's temporary
// directory; `Logs()` returns them for failure messages.
//
// Internal calls are mutual TLS, as in production: the stack generates a CA, a certificate per
// service and an operator certificate with scripts/lib/internal-certs.sh in its directory
// (pki_dir()), and the key-directory serves its admin surface on a port of its own
// (key_directory_admin_target()). `internal_insecure` runs them with PADLOCK_INTERNAL_INSECURE=1
// instead. Tests that call an internal service directly use InternalChannel().

#include <sys/types.h>

#include <grpcpp/security/credentials.h>

#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "tests/harness/harness.h"
#include "tests/harness/postgres_server.h"
#include "tests/harness/redis_server.h"

namespace padlock::testing {

struct StackOptions {
  // Gateway replicas (each its own process and port).
  int gateways = 1;
  // A 3-master Redis Cluster instead of one redis-server.
  bool redis_cluster = false;
  // Extra environment for every gateway (overrides the defaults).
  std::map<std::string, std::string> gateway_env = {};
  // Extra environment for every other service.
  std::map<std::string, std::string> service_env = {};
  // How long each process may take to become ready.
  absl::Duration start_timeout = absl::Seconds(60);
  // Plaintext internal gRPC without caller checks (PADLOCK_INTERNAL_INSECURE=1).
  bool internal_insecure = false;
  // Extra redis-server arguments (standalone only), e.g. {"--appendonly", "yes"} for a Redis
  // that keeps its data across RedisServer::Kill + StartAgain (tests/chaos).
  std::vector<std::string> redis_args = {};
  // Also run the notifier (Web Push wake-ups, docs/PUSH.md) with a VAPID key generated for the
  // stack; the message-queue gets it as PADLOCK_NOTIFIER_TARGET with `push_interval`, the
  // gateways get the key's file (PADLOCK_VAPID_KEY_FILE). Off: the stack has no push at all.
  bool notifier = false;
  absl::Duration push_interval = absl::Seconds(2);
  // Extra environment for the notifier (e.g. PADLOCK_PUSH_ALLOWED_HOSTS).
  std::map<std::string, std::string> notifier_env = {};
};

class PadlockStack {
 public:
  static absl::StatusOr<std::unique_ptr<PadlockStack>> Start(StackOptions options = {});
  ~PadlockStack();
  PadlockStack(const PadlockStack&) = delete;
  PadlockStack& operator=(const PadlockStack&) = delete;

  int gateway_count() const { return static_cast<int>(gateways_.size()); }
  // "127.0.0.1:<port>" of gateway `i` (plaintext gRPC).
  std::string gateway_target(int i = 0) const;
  int gateway_port(int i = 0) const;
  // Credentials for gateway `i`: TLS with its certificate as root when its env has
  // PADLOCK_TLS=on and PADLOCK_TLS_CERT, else plaintext.
  std::shared_ptr<grpc::ChannelCredentials> gateway_credentials(int i = 0) const;
  int gateway_metrics_port(int i = 0) const;
  pid_t gateway_pid(int i = 0) const;
  std::string message_queue_target() const;
  std::string presence_target() const;
  std::string key_directory_target() const;
  // The key-directory's operator port.
  std::string key_directory_admin_target() const;
  // The notifier's gRPC target; empty without StackOptions::notifier.
  std::string notifier_target() const;
  // The generated PKI: <pki_dir>/<name>/{tls.crt,tls.key,ca.crt} for key-directory,
  // message-queue, presence, gateway and operator; <pki_dir>/ca/ the CA. Empty when insecure.
  std::string pki_dir() const { return pki_dir_; }
  // A channel to an internal service at `target` that presents the certificate of `identity`
  // (a name under pki_dir(), e.g. "gateway" or "operator") and expects the server to be
  // `server_name` ("message-queue"). Plaintext when the stack is insecure.
  std::shared_ptr<grpc::Channel> InternalChannel(const std::string& target,
                                                 const std::string& identity,
                                                 const std::string& server_name) const;
  int message_queue_metrics_port() const;
  // Redis seed address(es) as the services get them ("host:port[,host:port...]").
  std::string redis_addresses() const;
  bool redis_cluster() const { return cluster_ != nullptr; }
  // redis-cli against the node owning `key` (cluster) or the one server.
  absl::StatusOr<std::string> RedisCliForKey(const std::string& key,
                                             const std::vector<std::string>& args) const;
  // Every key on every node (KEYS *), for inventory checks.
  absl::StatusOr<std::vector<std::string>> AllRedisKeys() const;
  std::string postgres_dsn() const { return postgres_dsn_; }
  PostgresServer& postgres() { return *postgres_; }
  RedisServer* redis_server() { return redis_.get(); }
  RedisCluster* redis_cluster_servers() { return cluster_.get(); }

  // SIGKILLs gateway `i` (no drain).
  void KillGateway(int i);
  // SIGKILLs an internal service: "key-directory", "presence" or "message-queue".
  void KillService(std::string_view name);
  // Sends `signal` to gateway `i` and waits for it to exit; returns the waitpid status.
  absl::StatusOr<int> StopGateway(int i, int signal, absl::Duration timeout = absl::Seconds(30));
  // Starts gateway `i` again on the same ports (after Kill/Stop) and waits until it serves.
  absl::Status RestartGateway(int i);
  // Starts an internal service ("key-directory", "presence" or "message-queue") again on the
  // same ports (after KillService; a running one is killed first) and waits until it serves.
  // NotFound for another name.
  absl::Status RestartService(std::string_view name);
  // The pid of an internal service (-1 when not running or unknown).
  pid_t service_pid(std::string_view name) const;

  // Every process's log, labelled (for failure messages).
  std::string Logs() const;

 private:
  struct Process {
    std::string name;
    std::string binary;
    int grpc_port = 0;
    int metrics_port = 0;
    std::map<std::string, std::string> env = {};
    std::unique_ptr<Subprocess> process;
  };

  explicit PadlockStack(StackOptions options);
  absl::Status Launch(Process& p);
  std::map<std::string, std::string> BaseEnv() const;
  std::shared_ptr<grpc::Channel> HealthChannel(const Process& p) const;
  static std::shared_ptr<grpc::ChannelCredentials> ChannelCredentials(const Process& p);

  StackOptions options_;
  TempDir dir_;
  std::unique_ptr<RedisServer> redis_;
  std::unique_ptr<RedisCluster> cluster_;
  std::unique_ptr<PostgresServer> postgres_;
  std::string postgres_dsn_;
  std::string pki_dir_;
  int key_directory_admin_port_ = 0;
  Process key_directory_, presence_, message_queue_, notifier_;
  std::vector<Process> gateways_;
};

}  // namespace padlock::testing
