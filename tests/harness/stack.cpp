#include "tests/harness/stack.h"

#include <grpcpp/grpcpp.h>

#include <sys/wait.h>

#include <csignal>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "services/common/runtime/health_client.h"
#include "services/common/runtime/internal_tls.h"

namespace padlock::testing {
namespace {

std::string Loopback(int port) { return absl::StrCat("127.0.0.1:", port); }

}  // namespace

PadlockStack::PadlockStack(StackOptions options) : options_(std::move(options)) {}

PadlockStack::~PadlockStack() {
  // Gateways first (they hold streams), then the services they call, then the servers.
  for (auto& g : gateways_) {
    if (g.process) g.process->Kill();
  }
  for (Process* p : {&message_queue_, &presence_, &key_directory_}) {
    if (p->process) p->process->Kill();
  }
}

absl::StatusOr<std::unique_ptr<PadlockStack>> PadlockStack::Start(StackOptions options) {
  std::unique_ptr<PadlockStack> stack(new PadlockStack(std::move(options)));
  if (stack->options_.redis_cluster) {
    auto cluster = RedisCluster::Start(3);
    if (!cluster.ok()) return cluster.status();
    stack->cluster_ = *std::move(cluster);
  } else {
    auto redis = RedisServer::Start(stack->options_.redis_args);
    if (!redis.ok()) return redis.status();
    stack->redis_ = *std::move(redis);
  }
  auto pg = PostgresServer::Start();
  if (!pg.ok()) return pg.status();
  stack->postgres_ = *std::move(pg);
  auto db = stack->postgres_->CreateFreshDatabase();
  if (!db.ok()) return db.status();
  stack->postgres_dsn_ = stack->postgres_->ConnInfo(*db);

  PadlockStack& s = *stack;
  if (!s.options_.internal_insecure) {
    s.pki_dir_ = absl::StrCat(s.dir_.path(), "/pki");
    auto certs = Subprocess::Start(
        {.argv = {"bash", PADLOCK_SOURCE_DIR "/scripts/lib/internal-certs.sh", s.pki_dir_},
         .log_path = absl::StrCat(s.dir_.path(), "/internal-certs.log")});
    if (!certs.ok()) return certs.status();
    auto done = certs->Wait(absl::Seconds(60));
    if (!done.ok() || !WIFEXITED(*done) || WEXITSTATUS(*done) != 0) {
      return absl::InternalError(
          absl::StrCat("internal-certs.sh failed: ", certs->ReadLog()));
    }
  }
  auto internal_env = [&s](Process& p, const std::string& identity) {
    if (s.options_.internal_insecure) {
      p.env["PADLOCK_INTERNAL_INSECURE"] = "1";
      return;
    }
    p.env["PADLOCK_INTERNAL_CA"] = absl::StrCat(s.pki_dir_, "/", identity, "/ca.crt");
    p.env["PADLOCK_INTERNAL_CERT"] = absl::StrCat(s.pki_dir_, "/", identity, "/tls.crt");
    p.env["PADLOCK_INTERNAL_KEY"] = absl::StrCat(s.pki_dir_, "/", identity, "/tls.key");
  };
  auto make = [](std::string name, std::string binary) {
    Process p;
    p.name = std::move(name);
    p.binary = std::move(binary);
    p.grpc_port = FreeTcpPort();
    p.metrics_port = FreeTcpPort();
    return p;
  };
  s.key_directory_ = make("key-directory", PADLOCK_KEY_DIRECTORY_BIN);
  s.presence_ = make("presence", PADLOCK_PRESENCE_BIN);
  s.message_queue_ = make("message-queue", PADLOCK_MESSAGE_QUEUE_BIN);
  s.key_directory_.env["PADLOCK_POSTGRES_DSN"] = s.postgres_dsn_;
  s.key_directory_admin_port_ = FreeTcpPort();
  s.key_directory_.env["PADLOCK_ADMIN_PORT"] = absl::StrCat(s.key_directory_admin_port_);
  internal_env(s.key_directory_, "key-directory");
  internal_env(s.presence_, "presence");
  internal_env(s.message_queue_, "message-queue");
  s.message_queue_.env["PADLOCK_KEY_DIRECTORY_TARGET"] = s.key_directory_target();
  // Required (docs/PRIVACY.md); a fixed test value, the same for every message-queue.
  s.message_queue_.env["PADLOCK_DEDUPE_SECRET"] = std::string(64, 'd');
  std::string vapid_key_file;
  if (s.options_.notifier) {
    vapid_key_file = absl::StrCat(s.dir_.path(), "/vapid.pem");
    auto keygen = Subprocess::Start(
        {.argv = {"openssl", "ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out",
                  vapid_key_file},
         .log_path = absl::StrCat(s.dir_.path(), "/vapid-keygen.log")});
    if (!keygen.ok()) return keygen.status();
    auto done = keygen->Wait(absl::Seconds(30));
    if (!done.ok() || !WIFEXITED(*done) || WEXITSTATUS(*done) != 0) {
      return absl::InternalError(absl::StrCat("VAPID key generation failed: ", keygen->ReadLog()));
    }
    s.notifier_ = make("notifier", PADLOCK_NOTIFIER_BIN);
    s.notifier_.env["PADLOCK_VAPID_PRIVATE_KEY_FILE"] = vapid_key_file;
    internal_env(s.notifier_, "notifier");
    s.message_queue_.env["PADLOCK_NOTIFIER_TARGET"] = s.notifier_target();
    s.message_queue_.env["PADLOCK_PUSH_INTERVAL"] =
        absl::StrCat(absl::ToInt64Milliseconds(s.options_.push_interval), "ms");
  }
  std::vector<Process*> services = {&s.key_directory_, &s.presence_};
  if (s.options_.notifier) services.push_back(&s.notifier_);
  services.push_back(&s.message_queue_);
  for (Process* p : services) {
    for (const auto& [k, v] : s.options_.service_env) p->env[k] = v;
    if (p == &s.notifier_) {
      for (const auto& [k, v] : s.options_.notifier_env) p->env[k] = v;
    }
    if (absl::Status st = s.Launch(*p); !st.ok()) return st;
  }
  for (int i = 0; i < s.options_.gateways; ++i) {
    Process g = make(absl::StrCat("gateway-", i), PADLOCK_GATEWAY_BIN);
    g.env = {{"PADLOCK_TOKEN_SECRET", std::string(64, 'a')},
             {"PADLOCK_GATEWAY_ID", absl::StrCat("gw-", i)},
             {"PADLOCK_RATE_LIMIT_PROFILE", "test"},
             {"PADLOCK_TLS", "off"},
             {"PADLOCK_KEY_DIRECTORY_TARGET", s.key_directory_target()},
             {"PADLOCK_MESSAGE_QUEUE_TARGET", s.message_queue_target()},
             {"PADLOCK_PRESENCE_TARGET", s.presence_target()}};
    internal_env(g, "gateway");
    if (!vapid_key_file.empty()) g.env["PADLOCK_VAPID_KEY_FILE"] = vapid_key_file;
    for (const auto& [k, v] : s.options_.gateway_env) g.env[k] = v;
    s.gateways_.push_back(std::move(g));
    if (absl::Status st = s.Launch(s.gateways_.back()); !st.ok()) return st;
  }
  return stack;
}

std::map<std::string, std::string> PadlockStack::BaseEnv() const {
  return {{"PADLOCK_REDIS_ADDRS", redis_addresses()},
          {"PADLOCK_REDIS_MODE", cluster_ ? "cluster" : "standalone"},
          {"PADLOCK_READINESS_INTERVAL", "100ms"},
          {"PADLOCK_SHUTDOWN_GRACE", "5s"},
          {"PADLOCK_LOG_LEVEL", "info"}};
}

std::shared_ptr<grpc::ChannelCredentials> PadlockStack::ChannelCredentials(const Process& p) {
  auto tls = p.env.find("PADLOCK_TLS");
  auto cert = p.env.find("PADLOCK_TLS_CERT");
  if (tls == p.env.end() || tls->second != "on" || cert == p.env.end()) {
    return grpc::InsecureChannelCredentials();
  }
  // Tests use a self-signed certificate for 127.0.0.1: it is its own root.
  std::ifstream in(cert->second);
  std::stringstream pem;
  pem << in.rdbuf();
  grpc::SslCredentialsOptions options;
  options.pem_root_certs = pem.str();
  return grpc::SslCredentials(options);
}

std::shared_ptr<grpc::Channel> PadlockStack::HealthChannel(const Process& p) const {
  // Gateways serve devices (PADLOCK_TLS); the others are internal: health is open to every
  // certificate of the internal CA, so the operator's will do.
  if (p.binary == PADLOCK_GATEWAY_BIN) {
    return grpc::CreateChannel(Loopback(p.grpc_port), ChannelCredentials(p));
  }
  return InternalChannel(Loopback(p.grpc_port), "operator", p.name);
}

std::shared_ptr<grpc::Channel> PadlockStack::InternalChannel(const std::string& target,
                                                             const std::string& identity,
                                                             const std::string& server_name) const {
  runtime::InternalTls tls{.insecure = true};
  grpc::ChannelArguments args;
  if (!options_.internal_insecure) {
    auto loaded = runtime::InternalTlsFromDirectory(absl::StrCat(pki_dir_, "/", identity));
    // A test asking for an identity the stack did not generate is a bug in the test.
    if (!loaded.ok()) std::abort();
    tls = *std::move(loaded);
    args.SetSslTargetNameOverride(server_name);
  }
  return grpc::CreateCustomChannel(target, runtime::InternalChannelCredentials(tls), args);
}

std::shared_ptr<grpc::ChannelCredentials> PadlockStack::gateway_credentials(int i) const {
  return ChannelCredentials(gateways_.at(i));
}

absl::Status PadlockStack::Launch(Process& p) {
  std::map<std::string, std::string> env = BaseEnv();
  // Loopback only, as the local stack.
  env["PADLOCK_GRPC_ADDRESS"] = Loopback(p.grpc_port);
  env["PADLOCK_METRICS_HOST"] = "127.0.0.1";
  env["PADLOCK_METRICS_PORT"] = absl::StrCat(p.metrics_port);
  for (const auto& [k, v] : p.env) env[k] = v;
  // Append: a restarted process keeps its earlier log for failure messages.
  auto process = Subprocess::Start(
      {.argv = {p.binary}, .env = env, .log_path = absl::StrCat(dir_.path(), "/", p.name, ".log")});
  if (!process.ok()) return process.status();
  p.process = std::make_unique<Subprocess>(std::move(*process));
  if (!WaitFor([&] { return TcpPortOpen(p.grpc_port); }, options_.start_timeout)) {
    return absl::DeadlineExceededError(
        absl::StrCat(p.name, " never listened; log:\n", p.process->ReadLog()));
  }
  auto channel = HealthChannel(p);
  const bool ready = WaitFor(
      [&] {
        auto state = runtime::CheckHealth(channel, "", absl::Seconds(1));
        return state.ok() && *state == runtime::HealthState::kServing;
      },
      options_.start_timeout);
  if (!ready) {
    return absl::DeadlineExceededError(
        absl::StrCat(p.name, " never became ready; log:\n", p.process->ReadLog()));
  }
  return absl::OkStatus();
}

std::string PadlockStack::gateway_target(int i) const { return Loopback(gateways_.at(i).grpc_port); }
int PadlockStack::gateway_port(int i) const { return gateways_.at(i).grpc_port; }
int PadlockStack::gateway_metrics_port(int i) const { return gateways_.at(i).metrics_port; }
pid_t PadlockStack::gateway_pid(int i) const {
  const auto& p = gateways_.at(i).process;
  return p ? p->pid() : -1;
}
std::string PadlockStack::message_queue_target() const {
  return Loopback(message_queue_.grpc_port);
}
std::string PadlockStack::presence_target() const { return Loopback(presence_.grpc_port); }
std::string PadlockStack::key_directory_target() const {
  return Loopback(key_directory_.grpc_port);
}
std::string PadlockStack::key_directory_admin_target() const {
  return Loopback(key_directory_admin_port_);
}
std::string PadlockStack::notifier_target() const {
  return options_.notifier ? Loopback(notifier_.grpc_port) : std::string();
}
int PadlockStack::message_queue_metrics_port() const { return message_queue_.metrics_port; }

std::string PadlockStack::redis_addresses() const {
  if (cluster_) return absl::StrJoin(cluster_->addresses(), ",");
  return redis_->address();
}

absl::StatusOr<std::string> PadlockStack::RedisCliForKey(
    const std::string& key, const std::vector<std::string>& args) const {
  if (!cluster_) return redis_->Cli(args);
  auto slot = cluster_->KeySlot(key);
  if (!slot.ok()) return slot.status();
  auto owner = cluster_->OwnerOfSlot(*slot);
  if (!owner.ok()) return owner.status();
  return cluster_->Cli(*owner, args);
}

absl::StatusOr<std::vector<std::string>> PadlockStack::AllRedisKeys() const {
  std::vector<std::string> keys;
  auto collect = [&](absl::StatusOr<std::string> out) -> absl::Status {
    if (!out.ok()) return out.status();
    for (absl::string_view line : absl::StrSplit(*out, '\n', absl::SkipWhitespace())) {
      keys.emplace_back(line);
    }
    return absl::OkStatus();
  };
  if (!cluster_) {
    if (absl::Status s = collect(redis_->Cli({"KEYS", "*"})); !s.ok()) return s;
    return keys;
  }
  for (int node = 0; node < cluster_->size(); ++node) {
    if (absl::Status s = collect(cluster_->Cli(node, {"KEYS", "*"})); !s.ok()) return s;
  }
  return keys;
}

void PadlockStack::KillGateway(int i) {
  auto& p = gateways_.at(i).process;
  if (p) p->Kill();
}

void PadlockStack::KillService(std::string_view name) {
  for (Process* p : {&key_directory_, &presence_, &message_queue_}) {
    if (p->name == name && p->process) p->process->Kill();
  }
}

absl::StatusOr<int> PadlockStack::StopGateway(int i, int signal, absl::Duration timeout) {
  auto& p = gateways_.at(i).process;
  if (!p) return absl::FailedPreconditionError("gateway not started");
  return p->Stop(signal, timeout);
}

absl::Status PadlockStack::RestartGateway(int i) {
  Process& g = gateways_.at(i);
  if (g.process && g.process->running()) g.process->Kill();
  return Launch(g);
}

absl::Status PadlockStack::RestartService(std::string_view name) {
  for (Process* p : {&key_directory_, &presence_, &message_queue_}) {
    if (p->name != name) continue;
    if (p->process && p->process->running()) p->process->Kill();
    return Launch(*p);
  }
  return absl::NotFoundError(absl::StrCat("no internal service named ", std::string(name)));
}

pid_t PadlockStack::service_pid(std::string_view name) const {
  for (const Process* p : {&key_directory_, &presence_, &message_queue_}) {
    if (p->name == name && p->process) return p->process->pid();
  }
  return -1;
}

std::string PadlockStack::Logs() const {
  std::string out;
  auto add = [&](const Process& p) {
    if (p.process) absl::StrAppend(&out, "----- ", p.name, " -----\n", p.process->ReadLog());
  };
  add(key_directory_);
  add(presence_);
  add(message_queue_);
  add(notifier_);
  for (const auto& g : gateways_) add(g);
  return out;
}

}  // namespace padlock::testing
