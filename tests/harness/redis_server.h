#pragma once
// Real redis-server processes for integration tests: a standalone server and a 3-master Redis
// Cluster, on free loopback ports, in temporary directories, without persistence (for speed).
// Everything is torn down (SIGKILL at worst) when the object is destroyed.
//
// Talks to the servers with redis-cli only, so that the harness library needs no client library.

#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "tests/harness/harness.h"

namespace padlock::testing {

// Runs `redis-cli -h 127.0.0.1 -p <port> <args...>` and returns what it prints (redis-cli prints
// raw replies, one element per line, when its output is not a terminal).
// Internal when redis-cli cannot run or exits non-zero. Reply errors are part of the output
// (redis-cli exits 0 on them): callers check the text.
absl::StatusOr<std::string> RedisCli(int port, const std::vector<std::string>& args,
                                     const std::string& password = "");

// One standalone redis-server.
class RedisServer {
 public:
  // Starts redis-server on a free loopback port and waits (≤ 10 s) until it answers PING.
  // `extra_args` are appended to the command line (e.g. {"--requirepass", "secret"}).
  static absl::StatusOr<std::unique_ptr<RedisServer>> Start(
      std::vector<std::string> extra_args = {});

  ~RedisServer();
  RedisServer(const RedisServer&) = delete;
  RedisServer& operator=(const RedisServer&) = delete;

  int port() const { return port_; }
  std::string address() const;  // "127.0.0.1:<port>"
  bool running();
  // The server's pid (-1 when not running).
  pid_t pid() const;

  // Fault injection (tests/chaos). SIGKILL, no shutdown: what Redis wrote to its AOF survives
  // (start it with {"--appendonly", "yes"}), the rest is gone. StartAgain brings it back.
  void Kill();
  // SIGSTOP: the server holds its connections but answers nothing until Thaw (SIGCONT).
  absl::Status Freeze();
  absl::Status Thaw();

  // SIGTERM, wait for exit (≤ 10 s). OK when already stopped.
  absl::Status Stop();
  // Starts it again on the same port and directory (after Stop) and waits for PING.
  absl::Status StartAgain();
  // Stop + StartAgain.
  absl::Status Restart();
  // FLUSHALL + SCRIPT FLUSH: a clean server for the next test.
  absl::Status FlushAll();
  // redis-cli against this server.
  absl::StatusOr<std::string> Cli(const std::vector<std::string>& args) const;
  // The server's log so far (every start of it), for failure messages.
  std::string Log() const;

  // Starts a replica of this server (`--replicaof`, no persistence) on a free port; `extra_args`
  // as for Start. Returns once it answers PING; WaitForOnlineReplicas tells when it has synced.
  // Start this server with {"--repl-diskless-sync-delay", "0"} for a sync without the default
  // 5 s delay.
  absl::StatusOr<std::unique_ptr<RedisServer>> StartReplica(
      std::vector<std::string> extra_args = {}) const;
  // Waits (≤ `timeout`, typically 1–2 s after a sync) until at least `replicas` replicas are
  // online and streaming: it publishes a probe message (replicated) and waits until they have
  // acknowledged its offset, so that a WAIT right after succeeds. DeadlineExceeded otherwise.
  absl::Status WaitForOnlineReplicas(int replicas, absl::Duration timeout) const;

 private:
  RedisServer(int port, std::vector<std::string> extra_args);
  absl::Status Launch();

  const int port_;
  const std::vector<std::string> extra_args_;
  std::string password_;  // from "--requirepass" in extra_args_, for redis-cli
  TempDir dir_;
  std::unique_ptr<Subprocess> process_;
};

// A Redis Cluster of N masters without replicas (default 3), created with
// `redis-cli --cluster create`. Ports leave room for the cluster bus (port + 10000).
class RedisCluster {
 public:
  // Starts the nodes, creates the cluster and waits (≤ 30 s) until every node reports
  // cluster_state:ok and agrees on the slot map.
  static absl::StatusOr<std::unique_ptr<RedisCluster>> Start(int masters = 3);

  ~RedisCluster();
  RedisCluster(const RedisCluster&) = delete;
  RedisCluster& operator=(const RedisCluster&) = delete;

  int size() const { return static_cast<int>(ports_.size()); }
  const std::vector<int>& ports() const { return ports_; }
  int port(int node) const { return ports_[node]; }
  std::string address(int node) const;    // "127.0.0.1:<port>"
  std::vector<std::string> addresses() const;

  // The cluster node id of `node` (CLUSTER MYID).
  absl::StatusOr<std::string> NodeId(int node) const;
  // Index of the node that owns `slot`, asked from `asked_node`'s view (CLUSTER SLOTS).
  absl::StatusOr<int> OwnerOfSlot(int slot, int asked_node = 0) const;
  // The slot of `key` (CLUSTER KEYSLOT).
  absl::StatusOr<int> KeySlot(const std::string& key) const;

  // Stops one node (SIGTERM: it saves nodes.conf on the way out).
  absl::Status StopNode(int node);
  // Starts a stopped node again on the same port with the same nodes.conf, waits for PING.
  absl::Status StartNode(int node);
  // StopNode + StartNode, then waits (≤ 30 s) until the whole cluster is ok again.
  absl::Status RestartNode(int node);

  // Moves `slot` from its owner to `to`, keys included (SETSLOT IMPORTING/MIGRATING, MIGRATE,
  // SETSLOT NODE on every master), then waits until every node agrees.
  absl::Status MigrateSlot(int slot, int to);
  // The first half of a migration, for ASK: `to` IMPORTING and the owner MIGRATING `slot`,
  // and the given keys of that slot moved to `to`; the slot stays with its owner.
  absl::Status BeginSlotMigration(int slot, int to, const std::vector<std::string>& keys);
  // Finishes what BeginSlotMigration started: the rest of the keys, then SETSLOT NODE everywhere.
  absl::Status FinishSlotMigration(int slot, int to);

  // FLUSHALL + SCRIPT FLUSH on every master.
  absl::Status FlushAll();
  // Waits until every node says cluster_state:ok and reports the same slot owners.
  absl::Status WaitHealthy(absl::Duration timeout);

  absl::StatusOr<std::string> Cli(int node, const std::vector<std::string>& args) const;

 private:
  RedisCluster() = default;
  absl::Status LaunchNode(int node);
  absl::Status MoveKeys(int slot, int from, int to, const std::vector<std::string>& keys);
  absl::Status SetSlotNodeEverywhere(int slot, int to);

  TempDir dir_;
  std::vector<int> ports_;
  std::vector<std::unique_ptr<Subprocess>> processes_;
  int migrating_from_ = -1;  // owner of the slot in BeginSlotMigration
};

}  // namespace padlock::testing
