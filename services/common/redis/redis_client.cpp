#include "services/common/redis/redis_client.h"

#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <map>
#include <optional>
#include <utility>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "services/common/redis/connection.h"
#include "services/common/redis/script.h"

namespace padlock::redis {
namespace internal {

// One Redis server and its connection pool.
struct Node {
  Node(int id, NodeAddress address) : id(id), address(std::move(address)) {
    name = this->address.ToString();
  }

  const int id;  // creation order; connections of several nodes are taken in this order
  const NodeAddress address;
  std::string name;

  std::mutex mu;
  std::condition_variable released;  // a connection went back to `idle`, or `open` dropped
  std::vector<std::unique_ptr<Connection>> idle ABSL_GUARDED_BY(mu);
  int open ABSL_GUARDED_BY(mu) = 0;  // idle + borrowed
  // SHA1s known to be in this server's script cache. Cleared when a connection finds the server
  // restarted; a stale entry only costs one NOSCRIPT round trip.
  absl::flat_hash_set<std::string> loaded_scripts ABSL_GUARDED_BY(mu);
};

class RedisMetrics {
 public:
  explicit RedisMetrics(prometheus::Registry& registry) {
    auto& commands = prometheus::BuildCounter()
                         .Name("padlock_redis_commands_total")
                         .Help("Redis commands by final result: ok (a reply), error (an error "
                               "reply), unavailable (no reply: connection failure)")
                         .Register(registry);
    ok_ = &commands.Add({{"result", "ok"}});
    error_ = &commands.Add({{"result", "error"}});
    unavailable_ = &commands.Add({{"result", "unavailable"}});
    auto& seconds = prometheus::BuildHistogram()
                        .Name("padlock_redis_call_seconds")
                        .Help("Wall time of one client call (a command or a whole pipeline)")
                        .Register(registry);
    const prometheus::Histogram::BucketBoundaries buckets = {
        0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5};
    command_seconds_ = &seconds.Add({{"call", "command"}}, buckets);
    pipeline_seconds_ = &seconds.Add({{"call", "pipeline"}}, buckets);
    auto& redirects = prometheus::BuildCounter()
                          .Name("padlock_redis_redirects_total")
                          .Help("Cluster redirections followed, by kind (moved, ask)")
                          .Register(registry);
    moved_ = &redirects.Add({{"kind", "moved"}});
    ask_ = &redirects.Add({{"kind", "ask"}});
    connects_ = &prometheus::BuildCounter()
                     .Name("padlock_redis_connects_total")
                     .Help("Connections opened to Redis nodes (first connects and reconnects)")
                     .Register(registry)
                     .Add({});
  }

  void Count(const absl::StatusOr<RedisReply>& result) {
    if (!result.ok()) {
      unavailable_->Increment();
    } else if (result->is_error()) {
      error_->Increment();
    } else {
      ok_->Increment();
    }
  }
  void Observe(bool pipeline, absl::Duration elapsed) {
    (pipeline ? pipeline_seconds_ : command_seconds_)->Observe(absl::ToDoubleSeconds(elapsed));
  }
  void Redirect(bool ask) { (ask ? ask_ : moved_)->Increment(); }
  void Connect() { connects_->Increment(); }

 private:
  prometheus::Counter* ok_;
  prometheus::Counter* error_;
  prometheus::Counter* unavailable_;
  prometheus::Histogram* command_seconds_;
  prometheus::Histogram* pipeline_seconds_;
  prometheus::Counter* moved_;
  prometheus::Counter* ask_;
  prometheus::Counter* connects_;
};

}  // namespace internal

using internal::Connection;
using internal::Node;

// One caller command on its way through ExecutePipeline.
struct RedisClient::Entry {
  size_t index = 0;      // into the caller's commands
  Node* node = nullptr;  // where it goes next; null: route from the slot map
  bool asking = false;   // precede with ASKING (an ASK redirection)
  int redirects = 0;
  int retries = 0;
  bool reloaded_script = false;  // NOSCRIPT already handled once
  bool resent = false;           // already resent after an unknown outcome
  bool reconnected = false;      // already retried after a failed connect
};

// What went to one node in one round.
struct RedisClient::Batch {
  enum class Kind { kCommand, kAsking, kScriptLoad, kWait };
  struct Sent {
    Kind kind;
    size_t entry = 0;                // into `work`, for kCommand
    const Script* script = nullptr;  // for kScriptLoad
  };

  Node* node = nullptr;
  std::vector<size_t> entries;  // into `work`, in caller order
  std::unique_ptr<Connection> connection;
  std::vector<Sent> sent;
  absl::Status status;       // the first failure, if any
  bool wrote = false;        // something may have reached the server
  size_t replies_read = 0;   // replies received for `sent`
  // With a ReplicaWait: WAIT's reply (replicas that confirmed), or -1 with `wait_error`.
  int64_t replicas_confirmed = -1;
  std::string wait_error;
};

Command Command::Keyed(std::vector<std::string> argv, int key_index, bool idempotent) {
  Command command;
  command.argv = std::move(argv);
  command.key_index = key_index;
  command.idempotent = idempotent;
  return command;
}

Command Command::Keyless(std::vector<std::string> argv, bool idempotent) {
  Command command;
  command.argv = std::move(argv);
  command.idempotent = idempotent;
  return command;
}

absl::StatusOr<std::unique_ptr<RedisClient>> RedisClient::Create(RedisOptions options) {
  if (options.addresses.empty()) {
    return absl::InvalidArgumentError("redis: no addresses given");
  }
  std::vector<NodeAddress> seeds;
  for (const std::string& text : options.addresses) {
    absl::StatusOr<NodeAddress> address = ParseNodeAddress(text);
    if (!address.ok()) return address.status();
    seeds.push_back(*std::move(address));
    if (options.mode == RedisMode::kStandalone) break;
  }
  if (options.pool_size < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("redis: pool size must be at least 1, got ", options.pool_size));
  }
  if (options.connect_timeout <= absl::ZeroDuration() ||
      options.command_timeout <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError("redis: timeouts must be positive");
  }
  if (options.max_redirects < 0 || options.max_retries < 0) {
    return absl::InvalidArgumentError("redis: retry bounds must not be negative");
  }
  std::unique_ptr<RedisClient> client(new RedisClient(std::move(options), std::move(seeds)));
  if (client->options_.mode == RedisMode::kCluster) {
    // Not fatal: the map is read again on first use.
    client->RefreshTopology().IgnoreError();
  }
  return client;
}

RedisClient::RedisClient(RedisOptions options, std::vector<NodeAddress> seeds)
    : options_(std::move(options)), seeds_(std::move(seeds)) {
  if (options_.metrics != nullptr) {
    metrics_ = std::make_unique<internal::RedisMetrics>(*options_.metrics);
  }
  std::unique_lock lock(topology_mu_);
  slot_owner_.assign(kClusterSlots, nullptr);
  for (const NodeAddress& seed : seeds_) NodeLocked(seed);
}

RedisClient::~RedisClient() = default;

Node* RedisClient::NodeLocked(const NodeAddress& address) {
  std::string name = address.ToString();
  auto it = nodes_by_address_.find(name);
  if (it != nodes_by_address_.end()) return it->second;
  nodes_.push_back(std::make_unique<Node>(static_cast<int>(nodes_.size()), address));
  Node* node = nodes_.back().get();
  nodes_by_address_.emplace(std::move(name), node);
  return node;
}

Node* RedisClient::NodeFor(const NodeAddress& address) {
  std::unique_lock lock(topology_mu_);
  return NodeLocked(address);
}

uint64_t RedisClient::TopologyEpoch() const {
  std::shared_lock lock(topology_mu_);
  return topology_epoch_;
}

Node* RedisClient::RouteSlot(int slot) {
  std::shared_lock lock(topology_mu_);
  if (options_.mode == RedisMode::kStandalone) return nodes_.front().get();
  if (slot < 0) {
    // Keyless: the owner of slot 0 is a live master once the map is known; before that, a seed.
    return slot_owner_[0] != nullptr ? slot_owner_[0] : nodes_.front().get();
  }
  return slot_owner_[slot];
}

Node* RedisClient::Route(const Command& command) {
  if (command.key_index >= 0 && static_cast<size_t>(command.key_index) < command.argv.size()) {
    return RouteSlot(KeySlot(command.argv[command.key_index]));
  }
  return RouteSlot(-1);
}

void RedisClient::SetSlotOwner(int slot, const NodeAddress& address) {
  std::unique_lock lock(topology_mu_);
  slot_owner_[slot] = NodeLocked(address);
}

std::vector<Node*> RedisClient::Masters() {
  std::shared_lock lock(topology_mu_);
  std::vector<Node*> masters;
  if (options_.mode == RedisMode::kCluster) {
    for (Node* owner : slot_owner_) {
      if (owner != nullptr && std::find(masters.begin(), masters.end(), owner) == masters.end()) {
        masters.push_back(owner);
      }
    }
  }
  if (masters.empty()) masters.push_back(nodes_.front().get());
  return masters;
}

absl::Status RedisClient::RefreshTopology() { return RefreshIfStale(TopologyEpoch()); }

absl::Status RedisClient::RefreshIfStale(uint64_t seen_epoch) {
  if (options_.mode == RedisMode::kStandalone) return absl::OkStatus();
  std::lock_guard refresh_lock(refresh_mu_);
  // Whoever held refresh_mu_ before us may have just done the work.
  if (TopologyEpoch() != seen_epoch) return absl::OkStatus();

  // Ask the current masters first (they know the newest map), then the seeds.
  std::vector<Node*> candidates;
  {
    std::shared_lock lock(topology_mu_);
    for (Node* owner : slot_owner_) {
      if (owner != nullptr &&
          std::find(candidates.begin(), candidates.end(), owner) == candidates.end()) {
        candidates.push_back(owner);
      }
    }
  }
  for (const NodeAddress& seed : seeds_) {
    Node* node = NodeFor(seed);
    if (std::find(candidates.begin(), candidates.end(), node) == candidates.end()) {
      candidates.push_back(node);
    }
  }

  absl::Status last = absl::UnavailableError("redis: no node to ask for CLUSTER SLOTS");
  for (Node* node : candidates) {
    absl::StatusOr<RedisReply> reply =
        ExecuteOnNode(*node, Command::Keyless({"CLUSTER", "SLOTS"}, /*idempotent=*/true));
    if (!reply.ok()) {
      last = reply.status();
      continue;
    }
    if (reply->is_error()) {
      last = absl::UnavailableError(
          absl::StrCat("redis ", node->name, ": CLUSTER SLOTS: ", reply->str()));
      continue;
    }
    absl::StatusOr<std::vector<SlotRange>> ranges =
        ParseClusterSlots(*reply, node->address.host);
    if (!ranges.ok() || ranges->empty()) {
      last = absl::UnavailableError(absl::StrCat("redis ", node->name, ": no usable slot map"));
      continue;
    }
    std::unique_lock lock(topology_mu_);
    std::vector<Node*> owners(kClusterSlots, nullptr);
    for (const SlotRange& range : *ranges) {
      Node* owner = NodeLocked(range.master);
      std::fill(owners.begin() + range.first, owners.begin() + range.last + 1, owner);
    }
    slot_owner_.swap(owners);
    ++topology_epoch_;
    return absl::OkStatus();
  }
  return last;
}

absl::StatusOr<std::string> RedisClient::AddressForKey(std::string_view key) {
  const int slot = KeySlot(key);
  Node* node = RouteSlot(slot);
  if (node == nullptr) {
    RefreshTopology().IgnoreError();
    node = RouteSlot(slot);
  }
  if (node == nullptr) {
    return absl::UnavailableError(absl::StrCat("redis: no node known for slot ", slot));
  }
  return node->name;
}

absl::StatusOr<std::unique_ptr<Connection>> RedisClient::Acquire(Node& node) {
  std::unique_ptr<Connection> connection;
  {
    std::unique_lock lock(node.mu);
    const int pool_size = options_.pool_size;
    auto available = [&node, pool_size]() ABSL_NO_THREAD_SAFETY_ANALYSIS {
      return !node.idle.empty() || node.open < pool_size;  // called with node.mu held
    };
    if (!node.released.wait_for(lock, absl::ToChronoMilliseconds(options_.command_timeout),
                                available)) {
      return absl::UnavailableError(
          absl::StrCat("redis ", node.name, ": all ", pool_size, " connections busy"));
    }
    if (!node.idle.empty()) {
      connection = std::move(node.idle.back());
      node.idle.pop_back();
    } else {
      ++node.open;
    }
  }
  if (connection != nullptr) {
    if (!connection->PeerClosed()) return connection;
    // The server closed it (most likely a restart, which also emptied its script cache).
    connection.reset();
    std::lock_guard lock(node.mu);
    node.loaded_scripts.clear();
  }
  internal::ConnectionSettings settings{options_.connect_timeout, options_.command_timeout,
                                        options_.password};
  absl::StatusOr<std::unique_ptr<Connection>> opened = Connection::Open(node.address, settings);
  if (metrics_ != nullptr) metrics_->Connect();
  if (!opened.ok()) {
    {
      std::lock_guard lock(node.mu);
      --node.open;
    }
    node.released.notify_one();
    return opened.status();
  }
  return opened;
}

void RedisClient::Release(Node& node, std::unique_ptr<Connection> connection, bool reusable) {
  if (connection == nullptr) return;
  if (!reusable || connection->broken()) {
    connection.reset();  // closes the socket outside the lock
    {
      std::lock_guard lock(node.mu);
      --node.open;
    }
    node.released.notify_one();
    return;
  }
  {
    std::lock_guard lock(node.mu);
    node.idle.push_back(std::move(connection));
  }
  node.released.notify_one();
}

absl::StatusOr<RedisReply> RedisClient::ExecuteOnNode(Node& node, const Command& command) {
  absl::StatusOr<std::unique_ptr<Connection>> connection = Acquire(node);
  if (!connection.ok()) return connection.status();
  absl::Status status = (*connection)->Append(command.argv);
  if (status.ok()) status = (*connection)->Flush();
  absl::StatusOr<RedisReply> reply = status.ok() ? (*connection)->Read() : status;
  // After any failure the connection may hold unsent bytes or unread replies: never reuse it.
  Release(node, *std::move(connection), /*reusable=*/reply.ok());
  return reply;
}

absl::StatusOr<RedisReply> RedisClient::Execute(const Command& command) {
  return std::move(ExecutePipeline(absl::MakeConstSpan(&command, 1)).front());
}

absl::StatusOr<int64_t> RedisClient::Publish(std::string_view channel, std::string_view payload) {
  absl::StatusOr<RedisReply> reply = Execute(
      Command::Keyed({"SPUBLISH", std::string(channel), std::string(payload)}, /*key_index=*/1));
  if (!reply.ok()) return reply.status();
  if (reply->is_error()) return reply->ToStatus();
  return reply->integer();
}

std::vector<NodeReply> RedisClient::ExecuteOnEachMaster(const Command& command) {
  if (options_.mode == RedisMode::kCluster) RefreshTopology().IgnoreError();
  std::vector<NodeReply> replies;
  for (Node* node : Masters()) {
    replies.push_back(NodeReply{node->name, ExecuteOnNode(*node, command)});
  }
  return replies;
}

std::vector<absl::StatusOr<RedisReply>> RedisClient::ExecutePipeline(
    absl::Span<const Command> commands) {
  return RunPipeline(commands, nullptr);
}

std::vector<absl::StatusOr<RedisReply>> RedisClient::ExecutePipelineAndWait(
    absl::Span<const Command> commands, const ReplicaWait& wait) {
  return RunPipeline(commands, wait.replicas > 0 ? &wait : nullptr);
}

std::vector<absl::StatusOr<RedisReply>> RedisClient::RunPipeline(
    absl::Span<const Command> commands, const ReplicaWait* wait) {
  const absl::Time start = absl::Now();
  std::vector<absl::StatusOr<RedisReply>> results(
      commands.size(), absl::UnavailableError("redis: command not run"));
  std::vector<Entry> work(commands.size());
  bool refreshed = false;
  for (size_t i = 0; i < commands.size(); ++i) work[i].index = i;
  while (!work.empty()) {
    // Route what has no node yet; an unknown slot owner earns one refresh per call.
    std::vector<Entry> routed;
    routed.reserve(work.size());
    for (Entry& entry : work) {
      if (entry.node == nullptr) entry.node = Route(commands[entry.index]);
      if (entry.node == nullptr && !refreshed) {
        refreshed = true;
        RefreshTopology().IgnoreError();
        entry.node = Route(commands[entry.index]);
      }
      if (entry.node == nullptr) {
        const Command& c = commands[entry.index];
        const int slot = c.key_index >= 0 && static_cast<size_t>(c.key_index) < c.argv.size()
                             ? KeySlot(c.argv[c.key_index])
                             : -1;
        results[entry.index] =
            absl::UnavailableError(absl::StrCat("redis: no node known for slot ", slot));
        continue;
      }
      routed.push_back(entry);
    }
    std::vector<Entry> next;
    RunRound(commands, wait, routed, results, next);
    // Caller order again, so that commands meeting on one node next round keep their order.
    std::sort(next.begin(), next.end(),
              [](const Entry& a, const Entry& b) { return a.index < b.index; });
    work.swap(next);
  }
  if (metrics_ != nullptr) {
    for (const auto& result : results) metrics_->Count(result);
    metrics_->Observe(commands.size() != 1, absl::Now() - start);
  }
  return results;
}

void RedisClient::RunRound(absl::Span<const Command> commands, const ReplicaWait* wait,
                           std::vector<Entry>& work,
                           std::vector<absl::StatusOr<RedisReply>>& results,
                           std::vector<Entry>& next) {
  const uint64_t epoch = TopologyEpoch();
  // WAIT 0 blocks forever: never send it.
  const std::vector<std::string> wait_argv =
      wait == nullptr
          ? std::vector<std::string>()
          : std::vector<std::string>{
                "WAIT", absl::StrCat(wait->replicas),
                absl::StrCat(std::max<int64_t>(1, absl::ToInt64Milliseconds(wait->timeout)))};

  // Group per node. Connections are taken in node-id order so that two pipelines spanning the
  // same nodes can never hold one pool each while waiting for the other's.
  std::map<int, Batch> batches;
  for (size_t i = 0; i < work.size(); ++i) {
    Batch& batch = batches[work[i].node->id];
    batch.node = work[i].node;
    batch.entries.push_back(i);
  }

  // Write every batch before reading any, so that all nodes work at once.
  for (auto& [id, batch] : batches) {
    absl::StatusOr<std::unique_ptr<Connection>> connection = Acquire(*batch.node);
    if (!connection.ok()) {
      batch.status = connection.status();
      continue;
    }
    batch.connection = *std::move(connection);
    // Load each script this node may lack ahead of its first use, in the same write: NOSCRIPT
    // then only happens after a SCRIPT FLUSH, and never reorders a pipeline's commands.
    std::vector<const Script*> to_load;
    {
      std::lock_guard lock(batch.node->mu);
      for (size_t i : batch.entries) {
        const Script* script = commands[work[i].index].script;
        if (script != nullptr && !batch.node->loaded_scripts.contains(script->sha1()) &&
            std::find(to_load.begin(), to_load.end(), script) == to_load.end()) {
          to_load.push_back(script);
        }
      }
    }
    for (const Script* script : to_load) {
      batch.sent.push_back({Batch::Kind::kScriptLoad, 0, script});
    }
    for (size_t i : batch.entries) {
      if (work[i].asking) batch.sent.push_back({Batch::Kind::kAsking, i, nullptr});
      batch.sent.push_back({Batch::Kind::kCommand, i, nullptr});
    }
    // Last on the connection, so that it covers every write of this group.
    if (wait != nullptr) batch.sent.push_back({Batch::Kind::kWait, 0, nullptr});
    static const std::vector<std::string> kAsking = {"ASKING"};
    for (const Batch::Sent& sent : batch.sent) {
      const std::vector<std::string>* argv = &kAsking;
      std::vector<std::string> load;
      if (sent.kind == Batch::Kind::kScriptLoad) {
        load = {"SCRIPT", "LOAD", sent.script->source()};
        argv = &load;
      } else if (sent.kind == Batch::Kind::kCommand) {
        argv = &commands[work[sent.entry].index].argv;
      } else if (sent.kind == Batch::Kind::kWait) {
        argv = &wait_argv;
      }
      batch.status = batch.connection->Append(*argv);
      if (!batch.status.ok()) break;
    }
    if (batch.status.ok()) {
      batch.wrote = true;
      batch.status = batch.connection->Flush();
    }
  }

  // Read back, then classify every entry in order.
  std::vector<std::optional<RedisReply>> replies(work.size());
  for (auto& [id, batch] : batches) {
    if (batch.connection == nullptr) continue;
    if (batch.status.ok()) {
      for (const Batch::Sent& sent : batch.sent) {
        absl::StatusOr<RedisReply> reply = batch.connection->Read();
        if (!reply.ok()) {
          batch.status = reply.status();
          if (sent.kind == Batch::Kind::kWait) {
            batch.wait_error = std::string(reply.status().message());
          }
          break;
        }
        ++batch.replies_read;
        if (sent.kind == Batch::Kind::kCommand) {
          replies[sent.entry] = *std::move(reply);
        } else if (sent.kind == Batch::Kind::kWait) {
          if (reply->is_integer()) {
            batch.replicas_confirmed = reply->integer();
          } else {
            batch.wait_error = reply->is_error() ? reply->str() : "unexpected reply";
          }
        } else if (sent.kind == Batch::Kind::kScriptLoad && reply->is_string() &&
                   reply->str() == sent.script->sha1()) {
          std::lock_guard lock(batch.node->mu);
          batch.node->loaded_scripts.insert(sent.script->sha1());
        }
      }
    }
    // A batch that failed mid-way may leave unsent bytes or unread replies: drop it.
    Release(*batch.node, std::move(batch.connection), /*reusable=*/batch.status.ok());
  }

  bool refresh = false;
  absl::Duration backoff = absl::ZeroDuration();
  std::vector<Redirect> moved;
  const bool cluster = options_.mode == RedisMode::kCluster;
  for (auto& [id, batch] : batches) {
    for (size_t i : batch.entries) {
      Entry& entry = work[i];
      const Command& command = commands[entry.index];
      if (!replies[i].has_value()) {
        if (!batch.wrote) {
          // Nothing reached the server: safe to try again once, after a refresh (the node may
          // have been replaced).
          if (!entry.reconnected) {
            entry.reconnected = true;
            entry.node = nullptr;
            entry.asking = false;
            refresh = true;
            next.push_back(entry);
          } else {
            results[entry.index] = batch.status;
          }
        } else if (command.idempotent && !entry.resent) {
          entry.resent = true;
          next.push_back(entry);
        } else {
          results[entry.index] = absl::UnavailableError(
              absl::StrCat(batch.status.message(), " (command outcome unknown)"));
        }
        continue;
      }
      RedisReply& reply = *replies[i];
      const std::string_view code = reply.error_code();
      if (cluster && (code == "MOVED" || code == "ASK")) {
        if (++entry.redirects > options_.max_redirects) {
          results[entry.index] = std::move(reply);
          continue;
        }
        absl::StatusOr<Redirect> redirect = ParseRedirect(reply.str());
        if (!redirect.ok()) {
          // e.g. an unknown endpoint ("MOVED 12 :6380"): the slot map will tell.
          refresh = true;
          entry.node = nullptr;
          entry.asking = false;
        } else {
          const bool ask = redirect->kind == Redirect::Kind::kAsk;
          if (metrics_ != nullptr) metrics_->Redirect(ask);
          entry.node = NodeFor(redirect->target);
          entry.asking = ask;
          if (!ask) moved.push_back(*std::move(redirect));
        }
        next.push_back(entry);
        continue;
      }
      if (code == "TRYAGAIN" || code == "CLUSTERDOWN" || code == "LOADING") {
        // The server refused the command without running it: resending is safe.
        if (++entry.retries > options_.max_retries) {
          results[entry.index] = std::move(reply);
          continue;
        }
        backoff = std::max(backoff, options_.retry_backoff * entry.retries);
        if (cluster) {
          refresh = refresh || code == "CLUSTERDOWN";
          entry.node = nullptr;
          entry.asking = false;
        }
        next.push_back(entry);
        continue;
      }
      if (code == "NOSCRIPT" && command.script != nullptr && !entry.reloaded_script) {
        entry.reloaded_script = true;
        std::lock_guard lock(entry.node->mu);
        entry.node->loaded_scripts.erase(command.script->sha1());
        next.push_back(entry);
        continue;
      }
      if (wait != nullptr && !reply.is_error() && batch.replicas_confirmed < wait->replicas) {
        std::string why = absl::StrCat(
            "redis ", batch.node->name, ": write not confirmed by ", wait->replicas,
            " replica(s) within ", absl::FormatDuration(wait->timeout), " (",
            batch.wait_error.empty() ? absl::StrCat(std::max<int64_t>(0, batch.replicas_confirmed),
                                                    " confirmed")
                                     : absl::StrCat("WAIT failed: ", batch.wait_error),
            "); applied on the master, may be lost on failover");
        if (command.wait_per_element && reply.is_array()) {
          std::vector<RedisReply> elements;
          elements.reserve(reply.elements().size());
          for (const RedisReply& element : reply.elements()) {
            elements.push_back(element.is_error()
                                   ? element
                                   : RedisReply::Error(absl::StrCat("UNCONFIRMED ", why)));
          }
          results[entry.index] = RedisReply::Array(std::move(elements));
        } else {
          results[entry.index] = absl::UnavailableError(why);
        }
        continue;
      }
      results[entry.index] = std::move(reply);
    }
  }

  if (!moved.empty() || refresh) {
    RefreshIfStale(epoch).IgnoreError();
    // A MOVED names the owner as of now; a refresh from a node whose gossip lags must not
    // undo that.
    for (const Redirect& redirect : moved) SetSlotOwner(redirect.slot, redirect.target);
  }
  if (backoff > absl::ZeroDuration() && !next.empty()) absl::SleepFor(backoff);
}

}  // namespace padlock::redis
