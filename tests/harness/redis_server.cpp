#include "tests/harness/redis_server.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <map>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace padlock::testing {
namespace {

constexpr absl::Duration kStartTimeout = absl::Seconds(10);

std::string RedisServerBinary() {
  return FindProgram("redis-server", {"/usr/bin", "/usr/local/bin"});
}
std::string RedisCliBinary() { return FindProgram("redis-cli", {"/usr/bin", "/usr/local/bin"}); }

bool PortBindable(int port) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(static_cast<uint16_t>(port));
  const bool ok = ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0;
  ::close(fd);
  return ok;
}

// A free port whose cluster bus port (port + 10000) is free too.
int FreeClusterPort() {
  while (true) {
    const int port = FreeTcpPort();
    if (PortBindable(port + 10000)) return port;
  }
}

bool AnswersPing(int port, const std::string& password) {
  absl::StatusOr<std::string> out = RedisCli(port, {"PING"}, password);
  return out.ok() && absl::StripAsciiWhitespace(*out) == "PONG";
}

absl::Status WaitForPing(int port, Subprocess& process, const std::string& password = "") {
  if (!WaitFor([&] { return !process.running() || AnswersPing(port, password); }, kStartTimeout) ||
      !process.running()) {
    return absl::InternalError(absl::StrCat("redis-server on port ", port,
                                            " did not come up; log:\n", process.ReadLog()));
  }
  return absl::OkStatus();
}

absl::Status StopProcess(std::unique_ptr<Subprocess>& process) {
  if (process == nullptr || !process->running()) {
    process.reset();
    return absl::OkStatus();
  }
  absl::StatusOr<int> status = process->Stop(SIGTERM, absl::Seconds(10));
  process.reset();  // kills it if SIGTERM was not enough
  if (!status.ok()) return status.status();
  return absl::OkStatus();
}

absl::Status ExpectOk(const absl::StatusOr<std::string>& out, absl::string_view what) {
  if (!out.ok()) return out.status();
  if (absl::StripAsciiWhitespace(*out) != "OK") {
    return absl::InternalError(absl::StrCat(what, ": ", *out));
  }
  return absl::OkStatus();
}

// Slot owners (by port) as one node sees them in CLUSTER NODES; 0 for an unowned slot.
absl::StatusOr<std::vector<int>> SlotOwners(int port) {
  absl::StatusOr<std::string> out = RedisCli(port, {"CLUSTER", "NODES"});
  if (!out.ok()) return out.status();
  std::vector<int> owners(16384, 0);
  for (absl::string_view line : absl::StrSplit(*out, '\n', absl::SkipWhitespace())) {
    std::vector<absl::string_view> fields = absl::StrSplit(line, ' ', absl::SkipEmpty());
    if (fields.size() < 8) {
      return absl::InternalError(absl::StrCat("CLUSTER NODES on ", port, ": ", *out));
    }
    // "ip:port@cport[,hostname]"
    absl::string_view endpoint = fields[1].substr(0, fields[1].find('@'));
    int owner_port = 0;
    if (!absl::SimpleAtoi(endpoint.substr(endpoint.rfind(':') + 1), &owner_port)) {
      return absl::InternalError(absl::StrCat("CLUSTER NODES on ", port, ": ", line));
    }
    for (size_t i = 8; i < fields.size(); ++i) {
      if (fields[i].front() == '[') continue;  // [slot->-id] / [slot-<-id]: migration marks
      std::pair<absl::string_view, absl::string_view> range = absl::StrSplit(fields[i], '-');
      int first = 0;
      int last = 0;
      if (!absl::SimpleAtoi(range.first, &first)) continue;
      if (range.second.empty() || !absl::SimpleAtoi(range.second, &last)) last = first;
      for (int s = first; s <= last && s < 16384; ++s) owners[s] = owner_port;
    }
  }
  return owners;
}

}  // namespace

absl::StatusOr<std::string> RedisCli(int port, const std::vector<std::string>& args,
                                     const std::string& password) {
  const std::string cli = RedisCliBinary();
  if (cli.empty()) return absl::FailedPreconditionError("redis-cli not found");
  const char* base = std::getenv("TMPDIR");
  std::string out_path = absl::StrCat(base && *base ? base : "/tmp", "/padlock-redis-cli-XXXXXX");
  const int fd = ::mkstemp(out_path.data());
  if (fd < 0) return absl::InternalError("mkstemp failed");
  ::close(fd);
  Subprocess::Options options;
  options.argv = {cli, "-h", "127.0.0.1", "-p", absl::StrCat(port)};
  if (!password.empty()) {
    options.argv.insert(options.argv.end(), {"--no-auth-warning", "-a", password});
  }
  options.argv.insert(options.argv.end(), args.begin(), args.end());
  options.log_path = out_path;
  absl::StatusOr<Subprocess> process = Subprocess::Start(std::move(options));
  if (!process.ok()) {
    ::unlink(out_path.c_str());
    return process.status();
  }
  absl::StatusOr<int> status = process->Wait(absl::Seconds(30));
  std::string output = process->ReadLog();
  ::unlink(out_path.c_str());
  if (!status.ok()) return status.status();
  if (!WIFEXITED(*status) || WEXITSTATUS(*status) != 0) {
    return absl::InternalError(
        absl::StrCat("redis-cli -p ", port, " ", absl::StrJoin(args, " "), ": ", output));
  }
  return output;
}

// ---------------------------------------------------------------------------------------------
// RedisServer

absl::StatusOr<std::unique_ptr<RedisServer>> RedisServer::Start(
    std::vector<std::string> extra_args) {
  if (RedisServerBinary().empty()) return absl::FailedPreconditionError("redis-server not found");
  std::unique_ptr<RedisServer> server(new RedisServer(FreeTcpPort(), std::move(extra_args)));
  if (absl::Status s = server->Launch(); !s.ok()) return s;
  return server;
}

RedisServer::RedisServer(int port, std::vector<std::string> extra_args)
    : port_(port), extra_args_(std::move(extra_args)) {
  for (size_t i = 0; i + 1 < extra_args_.size(); ++i) {
    if (extra_args_[i] == "--requirepass") password_ = extra_args_[i + 1];
  }
}

RedisServer::~RedisServer() = default;  // Subprocess kills the server

std::string RedisServer::address() const { return absl::StrCat("127.0.0.1:", port_); }

bool RedisServer::running() { return process_ != nullptr && process_->running(); }

std::string RedisServer::Log() const {
  std::ifstream in(absl::StrCat(dir_.path(), "/redis.log"));
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

pid_t RedisServer::pid() const { return process_ != nullptr ? process_->pid() : -1; }

void RedisServer::Kill() {
  if (process_ != nullptr) process_->Kill();
  process_.reset();
}

absl::Status RedisServer::Freeze() {
  if (!running()) return absl::FailedPreconditionError("redis-server is not running");
  if (::kill(process_->pid(), SIGSTOP) != 0) return absl::InternalError("kill(SIGSTOP) failed");
  return absl::OkStatus();
}

absl::Status RedisServer::Thaw() {
  if (!running()) return absl::FailedPreconditionError("redis-server is not running");
  if (::kill(process_->pid(), SIGCONT) != 0) return absl::InternalError("kill(SIGCONT) failed");
  return absl::OkStatus();
}

absl::Status RedisServer::Launch() {
  Subprocess::Options options;
  options.argv = {RedisServerBinary(), "--port", absl::StrCat(port_), "--bind", "127.0.0.1",
                  "--save", "", "--appendonly", "no", "--dir", dir_.path()};
  options.argv.insert(options.argv.end(), extra_args_.begin(), extra_args_.end());
  options.log_path = absl::StrCat(dir_.path(), "/redis.log");
  absl::StatusOr<Subprocess> process = Subprocess::Start(std::move(options));
  if (!process.ok()) return process.status();
  process_ = std::make_unique<Subprocess>(*std::move(process));
  return WaitForPing(port_, *process_, password_);
}

absl::Status RedisServer::Stop() { return StopProcess(process_); }

absl::Status RedisServer::StartAgain() {
  if (running()) return absl::FailedPreconditionError("redis-server is running");
  return Launch();
}

absl::Status RedisServer::Restart() {
  if (absl::Status s = Stop(); !s.ok()) return s;
  return StartAgain();
}

absl::Status RedisServer::FlushAll() {
  if (absl::Status s = ExpectOk(Cli({"FLUSHALL"}), "FLUSHALL"); !s.ok()) return s;
  return ExpectOk(Cli({"SCRIPT", "FLUSH"}), "SCRIPT FLUSH");
}

absl::StatusOr<std::string> RedisServer::Cli(const std::vector<std::string>& args) const {
  return RedisCli(port_, args, password_);
}

absl::StatusOr<std::unique_ptr<RedisServer>> RedisServer::StartReplica(
    std::vector<std::string> extra_args) const {
  std::vector<std::string> args = {"--replicaof", "127.0.0.1", absl::StrCat(port_)};
  if (!password_.empty()) {
    args.push_back("--masterauth");
    args.push_back(password_);
  }
  args.insert(args.end(), extra_args.begin(), extra_args.end());
  return Start(std::move(args));
}

absl::Status RedisServer::WaitForOnlineReplicas(int replicas, absl::Duration timeout) const {
  // "state=online" is not enough: after a diskless full sync the master streams nothing to the
  // replica until the replica's first REPLCONF ACK (sent once a second), so a WAIT right after
  // would time out. So: publish a probe (PUBLISH is replicated) and wait until `replicas` online
  // replicas have acknowledged an offset at or past it — the stream then flows.
  const absl::Time deadline = absl::Now() + timeout;
  std::string last;
  auto info_lines = [&](int64_t* master_offset, std::vector<int64_t>* online) {
    absl::StatusOr<std::string> info = Cli({"INFO", "replication"});
    if (!info.ok()) return false;
    last = *info;
    *master_offset = -1;
    online->clear();
    for (absl::string_view line : absl::StrSplit(*info, '\n')) {
      line = absl::StripTrailingAsciiWhitespace(line);
      if (absl::ConsumePrefix(&line, "master_repl_offset:")) {
        if (!absl::SimpleAtoi(line, master_offset)) *master_offset = -1;
        continue;
      }
      // "slaveN:ip=...,port=...,state=online,offset=O,lag=L"
      if (!absl::StartsWith(line, "slave") || !absl::StrContains(line, "state=online")) continue;
      const size_t at = line.find("offset=");
      if (at == absl::string_view::npos) continue;
      absl::string_view rest = line.substr(at + 7);
      int64_t offset = -1;
      if (absl::SimpleAtoi(rest.substr(0, rest.find(',')), &offset)) online->push_back(offset);
    }
    return *master_offset >= 0;
  };
  int64_t master_offset = -1;
  std::vector<int64_t> online;
  const bool listed = WaitFor(
      [&] {
        return info_lines(&master_offset, &online) &&
               static_cast<int>(online.size()) >= replicas;
      },
      deadline - absl::Now());
  if (listed) {
    absl::StatusOr<std::string> published =
        Cli({"PUBLISH", "padlock-harness:replication-probe", "1"});
    if (!published.ok()) return published.status();
    int64_t target = -1;
    if (!info_lines(&target, &online)) target = -1;
    const bool caught_up = target >= 0 && WaitFor(
        [&] {
          if (!info_lines(&master_offset, &online)) return false;
          int acked = 0;
          for (int64_t offset : online) acked += offset >= target ? 1 : 0;
          return acked >= replicas;
        },
        deadline - absl::Now());
    if (caught_up) return absl::OkStatus();
  }
  return absl::DeadlineExceededError(
      absl::StrCat("redis ", port_, ": fewer than ", replicas, " replicas online: ", last));
}

// ---------------------------------------------------------------------------------------------
// RedisCluster

absl::StatusOr<std::unique_ptr<RedisCluster>> RedisCluster::Start(int masters) {
  if (masters < 3) return absl::InvalidArgumentError("a Redis Cluster needs 3 masters");
  if (RedisServerBinary().empty()) return absl::FailedPreconditionError("redis-server not found");
  std::unique_ptr<RedisCluster> cluster(new RedisCluster());
  for (int i = 0; i < masters; ++i) {
    cluster->ports_.push_back(FreeClusterPort());
    cluster->processes_.emplace_back();
    std::filesystem::create_directories(absl::StrCat(cluster->dir_.path(), "/node", i));
  }
  for (int i = 0; i < masters; ++i) {
    if (absl::Status s = cluster->LaunchNode(i); !s.ok()) return s;
  }
  std::vector<std::string> args = {"--cluster", "create"};
  for (int i = 0; i < masters; ++i) args.push_back(cluster->address(i));
  args.insert(args.end(), {"--cluster-replicas", "0", "--cluster-yes"});
  absl::StatusOr<std::string> out = RedisCli(cluster->ports_[0], args);
  if (!out.ok()) return out.status();
  if (absl::Status s = cluster->WaitHealthy(absl::Seconds(30)); !s.ok()) {
    return absl::InternalError(absl::StrCat(s.message(), "\ncluster create said:\n", *out));
  }
  return cluster;
}

RedisCluster::~RedisCluster() = default;  // Subprocesses kill the nodes

std::string RedisCluster::address(int node) const {
  return absl::StrCat("127.0.0.1:", ports_[node]);
}

std::vector<std::string> RedisCluster::addresses() const {
  std::vector<std::string> result;
  for (int i = 0; i < size(); ++i) result.push_back(address(i));
  return result;
}

absl::Status RedisCluster::LaunchNode(int node) {
  const std::string dir = absl::StrCat(dir_.path(), "/node", node);
  Subprocess::Options options;
  options.argv = {RedisServerBinary(), "--port", absl::StrCat(ports_[node]), "--bind", "127.0.0.1",
                  "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
                  "--save", "", "--appendonly", "no", "--dir", dir};
  options.log_path = absl::StrCat(dir, "/redis.log");
  absl::StatusOr<Subprocess> process = Subprocess::Start(std::move(options));
  if (!process.ok()) return process.status();
  processes_[node] = std::make_unique<Subprocess>(*std::move(process));
  return WaitForPing(ports_[node], *processes_[node]);
}

absl::StatusOr<std::string> RedisCluster::Cli(int node,
                                              const std::vector<std::string>& args) const {
  return RedisCli(ports_[node], args);
}

absl::StatusOr<std::string> RedisCluster::NodeId(int node) const {
  absl::StatusOr<std::string> out = Cli(node, {"CLUSTER", "MYID"});
  if (!out.ok()) return out.status();
  return std::string(absl::StripAsciiWhitespace(*out));
}

absl::StatusOr<int> RedisCluster::OwnerOfSlot(int slot, int asked_node) const {
  absl::StatusOr<std::vector<int>> owners = SlotOwners(ports_[asked_node]);
  if (!owners.ok()) return owners.status();
  for (int i = 0; i < size(); ++i) {
    if (ports_[i] == (*owners)[slot]) return i;
  }
  return absl::NotFoundError(absl::StrCat("no owner for slot ", slot));
}

absl::StatusOr<int> RedisCluster::KeySlot(const std::string& key) const {
  absl::StatusOr<std::string> out = Cli(0, {"CLUSTER", "KEYSLOT", key});
  if (!out.ok()) return out.status();
  int slot = 0;
  if (!absl::SimpleAtoi(absl::StripAsciiWhitespace(*out), &slot)) {
    return absl::InternalError(absl::StrCat("CLUSTER KEYSLOT: ", *out));
  }
  return slot;
}

absl::Status RedisCluster::StopNode(int node) { return StopProcess(processes_[node]); }

absl::Status RedisCluster::StartNode(int node) {
  if (processes_[node] != nullptr && processes_[node]->running()) {
    return absl::FailedPreconditionError(absl::StrCat("node ", node, " is running"));
  }
  return LaunchNode(node);
}

absl::Status RedisCluster::RestartNode(int node) {
  if (absl::Status s = StopNode(node); !s.ok()) return s;
  if (absl::Status s = StartNode(node); !s.ok()) return s;
  return WaitHealthy(absl::Seconds(30));
}

absl::Status RedisCluster::WaitHealthy(absl::Duration timeout) {
  std::string last_problem = "not checked";
  const bool healthy = WaitFor(
      [&] {
        std::vector<int> reference;
        for (int i = 0; i < size(); ++i) {
          absl::StatusOr<std::string> info = Cli(i, {"CLUSTER", "INFO"});
          if (!info.ok() || info->find("cluster_state:ok") == std::string::npos) {
            last_problem = absl::StrCat("node ", i, " not ok: ",
                                        info.ok() ? *info : info.status().ToString());
            return false;
          }
          absl::StatusOr<std::vector<int>> owners = SlotOwners(ports_[i]);
          if (!owners.ok()) {
            last_problem = owners.status().ToString();
            return false;
          }
          if (i == 0) {
            reference = *std::move(owners);
          } else if (*owners != reference) {
            last_problem = absl::StrCat("node ", i, " disagrees with node 0 on slot owners");
            return false;
          }
        }
        return true;
      },
      timeout);
  if (!healthy) {
    return absl::DeadlineExceededError(absl::StrCat("cluster unhealthy: ", last_problem));
  }
  return absl::OkStatus();
}

absl::Status RedisCluster::MoveKeys(int slot, int from, int to,
                                    const std::vector<std::string>& keys) {
  auto migrate = [&](const std::vector<std::string>& batch) -> absl::Status {
    std::vector<std::string> args = {"MIGRATE", "127.0.0.1", absl::StrCat(ports_[to]), "", "0",
                                     "5000", "KEYS"};
    args.insert(args.end(), batch.begin(), batch.end());
    absl::StatusOr<std::string> out = Cli(from, args);
    if (!out.ok()) return out.status();
    const absl::string_view reply = absl::StripAsciiWhitespace(*out);
    if (reply != "OK" && reply != "NOKEY") {
      return absl::InternalError(absl::StrCat("MIGRATE: ", *out));
    }
    return absl::OkStatus();
  };
  if (!keys.empty()) return migrate(keys);
  while (true) {
    absl::StatusOr<std::string> out =
        Cli(from, {"CLUSTER", "GETKEYSINSLOT", absl::StrCat(slot), "100"});
    if (!out.ok()) return out.status();
    std::vector<std::string> batch = absl::StrSplit(*out, '\n', absl::SkipWhitespace());
    if (batch.empty()) return absl::OkStatus();
    if (absl::Status s = migrate(batch); !s.ok()) return s;
  }
}

absl::Status RedisCluster::SetSlotNodeEverywhere(int slot, int to) {
  absl::StatusOr<std::string> to_id = NodeId(to);
  if (!to_id.ok()) return to_id.status();
  // The importing node first, then the others: the order the cluster specification gives.
  std::vector<int> order = {to};
  for (int i = 0; i < size(); ++i) {
    if (i != to) order.push_back(i);
  }
  for (int node : order) {
    absl::Status s = ExpectOk(Cli(node, {"CLUSTER", "SETSLOT", absl::StrCat(slot), "NODE", *to_id}),
                              "CLUSTER SETSLOT NODE");
    if (!s.ok()) return s;
  }
  return WaitHealthy(absl::Seconds(10));
}

absl::Status RedisCluster::BeginSlotMigration(int slot, int to,
                                              const std::vector<std::string>& keys) {
  absl::StatusOr<int> from = OwnerOfSlot(slot);
  if (!from.ok()) return from.status();
  if (*from == to) return absl::FailedPreconditionError("slot already on the target node");
  absl::StatusOr<std::string> from_id = NodeId(*from);
  absl::StatusOr<std::string> to_id = NodeId(to);
  if (!from_id.ok()) return from_id.status();
  if (!to_id.ok()) return to_id.status();
  absl::Status s = ExpectOk(
      Cli(to, {"CLUSTER", "SETSLOT", absl::StrCat(slot), "IMPORTING", *from_id}), "IMPORTING");
  if (!s.ok()) return s;
  s = ExpectOk(Cli(*from, {"CLUSTER", "SETSLOT", absl::StrCat(slot), "MIGRATING", *to_id}),
               "MIGRATING");
  if (!s.ok()) return s;
  migrating_from_ = *from;
  if (keys.empty()) return absl::OkStatus();
  return MoveKeys(slot, *from, to, keys);
}

absl::Status RedisCluster::FinishSlotMigration(int slot, int to) {
  if (migrating_from_ < 0) return absl::FailedPreconditionError("no migration in progress");
  const int from = migrating_from_;
  migrating_from_ = -1;
  if (absl::Status s = MoveKeys(slot, from, to, {}); !s.ok()) return s;
  return SetSlotNodeEverywhere(slot, to);
}

absl::Status RedisCluster::MigrateSlot(int slot, int to) {
  absl::StatusOr<int> from = OwnerOfSlot(slot);
  if (!from.ok()) return from.status();
  if (*from == to) return absl::OkStatus();
  if (absl::Status s = BeginSlotMigration(slot, to, {}); !s.ok()) return s;
  return FinishSlotMigration(slot, to);
}

absl::Status RedisCluster::FlushAll() {
  for (int i = 0; i < size(); ++i) {
    if (absl::Status s = ExpectOk(Cli(i, {"FLUSHALL"}), "FLUSHALL"); !s.ok()) return s;
    if (absl::Status s = ExpectOk(Cli(i, {"SCRIPT", "FLUSH"}), "SCRIPT FLUSH"); !s.ok()) return s;
  }
  return absl::OkStatus();
}

}  // namespace padlock::testing
