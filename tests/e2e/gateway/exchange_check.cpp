// padlock-exchange-check: a scripted two-user exchange against a running deployment (the composed
// stack in deploy/ci-checks.sh, or the local stack), through its public gateway address.
//
//   padlock-exchange-check --gateway HOST:PORT [--messages N] [--kill-command CMD]
//                          [--timeout-seconds S]
//
// Two fresh users register (real keys), log in and open device streams; they exchange a message
// each way; then the first sends N messages to the second, running CMD (e.g. `docker compose kill
// gateway-1`) half-way through. Streams that end are reopened (log in again, reconnect through the
// same address — the balancer picks a live gateway) and unanswered sends are sent again with the
// same message id, as a client does. Passes (exit 0) when every send was accepted and the receiver
// got every accepted message (duplicates of unacknowledged envelopes are allowed and removed by
// message id, as clients do). Payloads are opaque test bytes; the client SDK's CLI does the real
// encryption.
#include <grpcpp/grpcpp.h>

#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <memory>
#include <random>
#include <set>
#include <string>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "tests/e2e/gateway/e2e_client.h"

namespace padlock::e2e {
namespace {

struct Flags {
  std::string gateway;
  int messages = 200;
  std::string kill_command;
  int timeout_seconds = 120;
};

// A device that keeps a stream open, reopening it when it ends.
class Device {
 public:
  Device(AccountOps& ops, const Account& account) : ops_(ops), account_(account) {}
  bool Open(absl::Time deadline) {
    while (absl::Now() < deadline) {
      auto token = ops_.Login(account_, 1);
      if (token.ok()) {
        auto conn = DeviceConn::Open(ops_.stub(), *token);
        if (conn->WaitConnected(absl::Seconds(10))) {
          ++opens_;
          if (conn_) {
            for (const auto& e : conn_->Envelopes()) seen_.insert(e.ciphertext());
          }
          conn_ = std::move(conn);
          return true;
        }
      }
      absl::SleepFor(absl::Milliseconds(300));  // reconnect backoff (a tool, not a test)
    }
    return false;
  }
  DeviceConn& conn() { return *conn_; }
  int reconnects() const { return opens_ - 1; }
  bool alive() const { return conn_ && !conn_->ended(); }
  std::set<std::string> Received() const {
    std::set<std::string> all = seen_;
    if (conn_) {
      for (const auto& e : conn_->Envelopes()) all.insert(e.ciphertext());
    }
    return all;
  }

 private:
  AccountOps& ops_;
  const Account& account_;
  std::unique_ptr<DeviceConn> conn_;
  std::set<std::string> seen_;
  int opens_ = 0;
};

// A channel of its own (its own TCP connection): behind an L4 balancer the two users then sit on
// different gateways (haproxy `leastconn`), so killing one gateway always cuts one of them off.
std::shared_ptr<grpc::Channel> OwnChannel(const std::string& target, int index) {
  grpc::ChannelArguments args;
  args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  args.SetInt("padlock.exchange_check.channel", index);
  return grpc::CreateCustomChannel(target, grpc::InsecureChannelCredentials(), args);
}

int Run(const Flags& flags) {
  const absl::Time deadline = absl::Now() + absl::Seconds(flags.timeout_seconds);
  AccountOps alice_ops(OwnChannel(flags.gateway, 1));
  AccountOps bob_ops(OwnChannel(flags.gateway, 2));
  std::mt19937_64 random(std::random_device{}());
  const std::string tag = absl::StrCat(random() % 1000000);
  // Registered without logging in: the streams below log in themselves, retrying until the
  // deadline, so a login rate limit left by whatever ran just before (the CLI demo's logins from
  // the same address) only delays the check instead of failing it.
  auto alice = alice_ops.Register(absl::StrCat("alice-", tag), /*login=*/false);
  auto bob = bob_ops.Register(absl::StrCat("bob-", tag), /*login=*/false);
  if (!alice.ok() || !bob.ok()) {
    std::cerr << "register failed: " << (alice.ok() ? bob.status() : alice.status()) << "\n";
    return 1;
  }
  Device a(alice_ops, *alice), b(bob_ops, *bob);
  if (!a.Open(deadline) || !b.Open(deadline)) {
    std::cerr << "could not open device streams\n";
    return 1;
  }
  std::cout << "registered " << alice->user << " and " << bob->user << "; streams open\n";

  // Sends `payload` until accepted, reopening the sender's stream when it ends.
  auto send = [&](Device& from, const Account& from_account, const Account& to,
                  const std::string& payload) -> bool {
    while (absl::Now() < deadline) {
      if (!from.alive() && !from.Open(deadline)) return false;
      const uint64_t id = from.conn().Send(OneToOne(from_account, 1, to, payload));
      auto result = from.conn().Result(id, absl::Seconds(10));
      if (result && result->has_accepted()) return true;
      if (result && result->has_refused() &&
          result->refused().code() != static_cast<int>(grpc::StatusCode::UNAVAILABLE)) {
        std::cerr << "send refused: " << result->DebugString() << "\n";
        return false;
      }
      from.conn().Cancel();  // no answer or UNAVAILABLE: reconnect and send the same again
      from.Open(deadline);
    }
    return false;
  };
  auto wait_received = [&](Device& to, const std::set<std::string>& expected) {
    while (absl::Now() < deadline) {
      if (!to.alive()) to.Open(deadline);
      std::set<std::string> got = to.Received();
      bool all = true;
      for (const auto& p : expected) all = all && got.contains(p);
      if (all) return true;
      absl::SleepFor(absl::Milliseconds(50));
    }
    return false;
  };

  if (!send(a, *alice, *bob, "hello bob") || !wait_received(b, {"hello bob"}) ||
      !send(b, *bob, *alice, "hello alice") || !wait_received(a, {"hello alice"})) {
    std::cerr << "the first exchange failed\n";
    return 1;
  }
  std::cout << "exchanged a message each way\n";

  std::set<std::string> accepted;
  for (int i = 0; i < flags.messages; ++i) {
    if (i == flags.messages / 2 && !flags.kill_command.empty()) {
      std::cout << "running: " << flags.kill_command << "\n" << std::flush;
      if (std::system(flags.kill_command.c_str()) != 0) {
        std::cerr << "kill command failed\n";
        return 1;
      }
    }
    const std::string payload = absl::StrCat("message ", i);
    if (!send(a, *alice, *bob, payload)) {
      std::cerr << "send " << i << " never accepted\n";
      return 1;
    }
    accepted.insert(payload);
  }
  if (!wait_received(b, accepted)) {
    std::set<std::string> got = b.Received();
    int missing = 0;
    for (const auto& p : accepted) missing += got.contains(p) ? 0 : 1;
    std::cerr << missing << " of " << accepted.size() << " accepted messages never arrived\n";
    return 1;
  }
  std::cout << "all " << accepted.size() << " accepted messages arrived; streams reopened: alice "
            << a.reconnects() << ", bob " << b.reconnects() << "\n";
  if (!flags.kill_command.empty() && a.reconnects() + b.reconnects() == 0) {
    std::cerr << "no stream was on the killed gateway: the failover was not exercised\n";
    return 1;
  }
  return 0;
}

}  // namespace
}  // namespace padlock::e2e

int main(int argc, char** argv) {
  padlock::e2e::Flags flags;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    auto value = [&]() -> std::string { return i + 1 < argc ? argv[++i] : ""; };
    if (arg == "--gateway") {
      flags.gateway = value();
    } else if (arg == "--messages") {
      if (!absl::SimpleAtoi(value(), &flags.messages)) flags.messages = -1;
    } else if (arg == "--kill-command") {
      flags.kill_command = value();
    } else if (arg == "--timeout-seconds") {
      if (!absl::SimpleAtoi(value(), &flags.timeout_seconds)) flags.timeout_seconds = -1;
    } else {
      std::cerr << "unknown argument " << arg << "\n";
      return 2;
    }
  }
  if (flags.gateway.empty() || flags.messages < 1 || flags.timeout_seconds < 1) {
    std::cerr << "usage: padlock-exchange-check --gateway HOST:PORT [--messages N] "
                 "[--kill-command CMD] [--timeout-seconds S]\n";
    return 2;
  }
  return padlock::e2e::Run(flags);
}
