#pragma once
// RedisClient: commands, pipelines and scripts on one redis-server or a Redis Cluster, with the
// same calls in both modes. hiredis stays behind this header.
//
// Outcomes, for every call:
//  - A reply from Redis, including an error reply ("-ERR ...", "-WRONGTYPE ...", a script's own
//    error), is an OK result holding a RedisReply (check `is_error()` or use `ToStatus()`).
//    Cluster redirections (MOVED, ASK), TRYAGAIN / CLUSTERDOWN / LOADING and NOSCRIPT are
//    handled inside and never reach the caller unless the bounds in RedisOptions run out, in
//    which case the last such error reply is returned.
//  - Transport failures are absl::UnavailableError naming the node: connection refused, timed
//    out, reset, AUTH refused, pool exhausted for longer than the command timeout, no node known
//    for a slot.
//
// Reconnects and retries after a connection failure:
//  - Idle pooled connections are checked before use; one the server has closed (a restart) is
//    replaced silently, so nothing is sent on a dead socket.
//  - When connecting fails, nothing was sent: the client refreshes the slot map (cluster) and
//    tries once more, whatever the command.
//  - When a connection fails after a command was written, its outcome is unknown. A command
//    marked `idempotent` is sent once more on a fresh connection; any other command returns
//    Unavailable ("outcome unknown") and the caller decides (e.g. a send retried with the same
//    message id, which the scripts deduplicate).
//
// Thread-safety: every method may be called from many threads at once. Each node has a pool of
// `pool_size` connections; one connection serves one call at a time.

#include <cstdint>
#include <memory>
#include <mutex>
#include <shared_mutex>
#include <string>
#include <string_view>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "services/common/redis/cluster_slots.h"
#include "services/common/redis/redis_options.h"
#include "services/common/redis/redis_reply.h"
#include "services/common/redis/replica_wait.h"

namespace padlock::redis {

class Script;

// One Redis command.
struct Command {
  std::vector<std::string> argv;  // command name and arguments, binary-safe
  // Index in `argv` of the key (or shard channel) that routes the command to its cluster slot;
  // -1 for a keyless command, which goes to any node. Ignored in standalone mode.
  int key_index = -1;
  // Set by Script::Call: the command is an EVALSHA of this script, reloaded on NOSCRIPT.
  const Script* script = nullptr;
  // True when running the command twice does no harm (reads, SET of a fixed value, deletes).
  // Only such commands are resent after a connection failure with an unknown outcome.
  bool idempotent = false;
  // For ExecutePipelineAndWait, a command whose array reply holds one outcome per element (a
  // script that works on many items and reports each, its error elements having changed
  // nothing): when WAIT confirms too few replicas, each element that is not an error reply becomes
  // the error reply "UNCONFIRMED <why>" (ToStatus: Unavailable), and error elements stay as they
  // are — rather than the whole command becoming Unavailable.
  bool wait_per_element = false;

  // A command routed by argv[key_index].
  static Command Keyed(std::vector<std::string> argv, int key_index, bool idempotent = false);
  // A command for any node (PING, INFO, SCRIPT LOAD, ...).
  static Command Keyless(std::vector<std::string> argv, bool idempotent = false);
};

// The reply of one node to a command sent to every master.
struct NodeReply {
  std::string address;  // "host:port"
  absl::StatusOr<RedisReply> reply;
};

namespace internal {
class Connection;
struct Node;
class RedisMetrics;
}  // namespace internal

class RedisClient {
 public:
  // Validates `options` (InvalidArgument on no or malformed addresses, pool_size < 1, non-positive
  // timeouts). In cluster mode it also tries to read the slot map; if no seed answers yet, the
  // client is still returned and reads the map on first use (a service may start before Redis).
  static absl::StatusOr<std::unique_ptr<RedisClient>> Create(RedisOptions options);

  ~RedisClient();
  RedisClient(const RedisClient&) = delete;
  RedisClient& operator=(const RedisClient&) = delete;

  // Runs one command on the node owning its key. See the file comment for outcomes.
  absl::StatusOr<RedisReply> Execute(const Command& command);

  // Runs `commands` as a pipeline: grouped per node, each group written in one go on one pooled
  // connection of that node (all nodes' groups are in flight together), then read back. Returns
  // one result per command, in the caller's order; each is a RedisReply (possibly an error
  // reply) or that command's own Unavailable. Commands to one node run in the order given, and
  // that order survives a redirection of their slot. No atomicity across commands.
  std::vector<absl::StatusOr<RedisReply>> ExecutePipeline(absl::Span<const Command> commands);

  // ExecutePipeline with a durability check: in every round, each node's group of commands is
  // followed on the same connection by `WAIT replicas timeout_ms`. WAIT waits for the
  // connection's own last write, so it covers exactly the writes made by those commands (and,
  // for a command that wrote nothing, the connection's earlier writes only). A command that got
  // a reply other than an error reply, but whose WAIT confirmed fewer than `wait.replicas`
  // replicas (or failed), becomes Unavailable naming the node and the count: it ran on the
  // master and a failover may lose it, so only an idempotent or deduplicated command may be
  // retried. Error replies are returned as they are (the command changed nothing). A command
  // marked `wait_per_element` is judged per element of its array reply instead (see Command).
  // `wait.replicas` <= 0 is plain ExecutePipeline.
  std::vector<absl::StatusOr<RedisReply>> ExecutePipelineAndWait(
      absl::Span<const Command> commands, const ReplicaWait& wait);

  // SPUBLISH `payload` on the shard channel `channel`, routed by the channel's slot (works on a
  // standalone Redis 7 too). Returns the number of subscribers that received it; an error reply
  // becomes its ToStatus(). Not retried after an unknown outcome (a wake-up is cheap to lose and
  // the subscriber side re-reads on gaps).
  absl::StatusOr<int64_t> Publish(std::string_view channel, std::string_view payload);

  // Sends `command` to every master (the one server in standalone mode), e.g. SCRIPT FLUSH,
  // FLUSHALL, INFO. In cluster mode the slot map is refreshed first. One entry per master.
  std::vector<NodeReply> ExecuteOnEachMaster(const Command& command);

  // Re-reads the slot map with CLUSTER SLOTS from a known node (no-op in standalone mode).
  // Concurrent callers share one refresh. Unavailable when no node answers.
  absl::Status RefreshTopology();

  // "host:port" of the node that owns `key`'s slot in the current map (the server in standalone
  // mode). Unavailable when the map has no owner for it and a refresh did not find one.
  absl::StatusOr<std::string> AddressForKey(std::string_view key);

  const RedisOptions& options() const { return options_; }

 private:
  struct Entry;
  struct Batch;

  explicit RedisClient(RedisOptions options, std::vector<NodeAddress> seeds);

  internal::Node* NodeFor(const NodeAddress& address) ABSL_LOCKS_EXCLUDED(topology_mu_);
  internal::Node* NodeLocked(const NodeAddress& address)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(topology_mu_);
  // Node for a command, or null when the slot has no known owner.
  internal::Node* Route(const Command& command) ABSL_LOCKS_EXCLUDED(topology_mu_);
  internal::Node* RouteSlot(int slot) ABSL_LOCKS_EXCLUDED(topology_mu_);
  uint64_t TopologyEpoch() const ABSL_LOCKS_EXCLUDED(topology_mu_);
  // Refreshes unless another refresh completed after `seen_epoch`.
  absl::Status RefreshIfStale(uint64_t seen_epoch) ABSL_LOCKS_EXCLUDED(refresh_mu_);
  void SetSlotOwner(int slot, const NodeAddress& address) ABSL_LOCKS_EXCLUDED(topology_mu_);
  std::vector<internal::Node*> Masters() ABSL_LOCKS_EXCLUDED(topology_mu_);

  absl::StatusOr<std::unique_ptr<internal::Connection>> Acquire(internal::Node& node);
  // Returns a connection to its pool, or closes it when not `reusable` or broken.
  void Release(internal::Node& node, std::unique_ptr<internal::Connection> connection,
               bool reusable);
  absl::StatusOr<RedisReply> ExecuteOnNode(internal::Node& node, const Command& command);

  // `wait` (may be null): append WAIT to every node's group and check it.
  std::vector<absl::StatusOr<RedisReply>> RunPipeline(absl::Span<const Command> commands,
                                                      const ReplicaWait* wait);
  void RunRound(absl::Span<const Command> commands, const ReplicaWait* wait,
                std::vector<Entry>& work, std::vector<absl::StatusOr<RedisReply>>& results,
                std::vector<Entry>& next);

  const RedisOptions options_;
  const std::vector<NodeAddress> seeds_;
  std::unique_ptr<internal::RedisMetrics> metrics_;

  // std:: rather than absl:: mutexes here and below: Debian's Abseil is not built with TSan,
  // which then cannot see absl::Mutex's ordering and reports false races.
  mutable std::shared_mutex topology_mu_;
  // Nodes are never removed, so Node pointers stay valid for the client's lifetime.
  std::vector<std::unique_ptr<internal::Node>> nodes_ ABSL_GUARDED_BY(topology_mu_);
  absl::flat_hash_map<std::string, internal::Node*> nodes_by_address_
      ABSL_GUARDED_BY(topology_mu_);
  std::vector<internal::Node*> slot_owner_ ABSL_GUARDED_BY(topology_mu_);  // kClusterSlots
  uint64_t topology_epoch_ ABSL_GUARDED_BY(topology_mu_) = 0;

  std::mutex refresh_mu_ ABSL_ACQUIRED_BEFORE(topology_mu_);
};

}  // namespace padlock::redis
