#include "clients/cli/commands.h"

#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <iomanip>
#include <ostream>
#include <sstream>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "clients/cli/cli_context.h"
#include "clients/sdk/gateway_client.h"
#include "clients/sdk/messenger.h"
#include "services/common/runtime/json_string.h"

namespace padlock::cli {
namespace internal {

using runtime::JsonString;

namespace {

volatile std::sig_atomic_t g_interrupted = 0;
void OnSignal(int) { g_interrupted = 1; }

}  // namespace

int CmdRegister(Context& c) {
  if (c.args.positional.size() != 1) {
    c.err << "usage: padlock register USER [--invite TOKEN]\n";
    return kExitUsage;
  }
  auto m = OpenMessenger(c.args, true);
  if (!m.ok()) return Fail(c, m.status(), "register");
  const std::string& user = c.args.positional[0];
  auto invite = c.args.flags.find("invite");
  absl::Status status =
      (*m)->Register(user, invite == c.args.flags.end() ? "" : invite->second);
  if (absl::IsAlreadyExists(status) && (*m)->registered()) {
    return Fail(c, status, "register");
  }
  if (absl::IsAlreadyExists(status)) {
    return Fail(c, absl::AlreadyExistsError(absl::StrCat("the user id ", user, " is taken")),
                "register");
  }
  if (!status.ok()) return Fail(c, status, "register");
  if (c.args.json) {
    c.out << JsonLine().Str("registered", user).Num("device", 1).Str("home", c.args.home).str()
          << "\n";
  } else {
    c.out << "registered " << user << " (device 1) in " << c.args.home << "\n";
  }
  return kExitOk;
}

int CmdSend(Context& c) {
  if (c.args.positional.size() < 2) {
    c.err << "usage: padlock send USER TEXT...\n";
    return kExitUsage;
  }
  const std::string& peer = c.args.positional[0];
  std::string text = c.args.positional[1];
  for (size_t i = 2; i < c.args.positional.size(); ++i) text += " " + c.args.positional[i];
  // A send-only run leaves incoming envelopes in the inbox for `listen`.
  auto m = OpenMessenger(c.args, false);
  if (!m.ok()) return Fail(c, m.status(), "send");
  const absl::Duration timeout = FlagSeconds(c.args, "timeout", absl::Seconds(15));
  // Encrypted and queued first (durable outbox); then sent.
  absl::StatusOr<std::string> queued = (*m)->ComposeText(peer, text);
  if (!queued.ok()) return Fail(c, queued.status(), "send");
  // A changed security code holds the message (queued, encrypted to nobody) until the user
  // accepts the new keys: say so instead of waiting for a send that cannot happen.
  auto held = [&] {
    c.err << "padlock send: the security code with " << peer
          << " changed; the message is queued and held. Compare `padlock safety-number " << peer
          << "` with " << peer << " in person, then run `padlock accept-identity " << peer
          << "` to send it.\n";
    return kExitFailure;
  };
  if ((*m)->IdentityHeld(peer)) return held();
  absl::Status connected = ConnectWithUpkeep(c, **m, timeout);
  if (!connected.ok()) {
    const int code = Fail(c, connected, "send");
    c.err << "(the message is queued on this device and goes out with the next padlock command "
             "that connects)\n";
    return code;
  }
  absl::StatusOr<std::string> id = (*m)->AwaitSent(*queued, timeout);
  if (!id.ok() && (*m)->IdentityHeld(peer)) return held();  // found out from the server's answer
  if (!id.ok()) return Fail(c, id.status(), "send");
  if (c.args.json) {
    c.out << JsonLine().Str("sent", text).Str("to", peer).Str("message_id", Hex(*id)).str()
          << "\n";
  } else {
    c.out << "sent to " << peer << ": " << text << "\n";
  }
  return kExitOk;
}

int CmdListen(Context& c) {
  auto m = OpenMessenger(c.args, true);
  if (!m.ok()) return Fail(c, m.status(), "listen");
  const absl::Duration timeout = FlagSeconds(c.args, "timeout", absl::InfiniteDuration());
  int64_t count = -1;
  if (auto it = c.args.flags.find("count"); it != c.args.flags.end()) {
    if (!absl::SimpleAtoi(it->second, &count) || count < 0) {
      c.err << "padlock listen: --count needs a number\n";
      return kExitUsage;
    }
  }
  std::signal(SIGINT, OnSignal);
  std::signal(SIGTERM, OnSignal);
  if (absl::Status s = ConnectWithUpkeep(c, **m, std::min(timeout, absl::Seconds(15)));
      !s.ok()) {
    return Fail(c, s, "listen");
  }
  if (!c.args.json) c.err << "(listening as " << (*m)->account()->user_id << ")" << std::endl;
  const absl::Time deadline = absl::Now() + timeout;
  int64_t received = 0;
  bool stopped = false;
  while (!g_interrupted && !stopped && (count < 0 || received < count) && absl::Now() < deadline) {
    const absl::Duration slice = std::min(absl::Milliseconds(200), deadline - absl::Now());
    for (const MessengerEvent& e : (*m)->Pump(slice)) {
      PrintEvent(c, e);
      // --count counts what a user reads: messages and stories.
      if (e.kind == MessengerEvent::Kind::kMessage || e.kind == MessengerEvent::Kind::kStory) {
        ++received;
      }
      if (e.kind == MessengerEvent::Kind::kStopped) stopped = true;
    }
  }
  // Let the delivery receipts just queued go out before leaving (they stay queued otherwise).
  const absl::Time flush_deadline = absl::Now() + absl::Seconds(3);
  while (!stopped && absl::Now() < flush_deadline) {
    absl::StatusOr<size_t> queued = (*m)->OutboxSize();
    if (!queued.ok() || *queued == 0) break;
    for (const MessengerEvent& e : (*m)->Pump(absl::Milliseconds(100))) {
      if (e.kind == MessengerEvent::Kind::kMessage || e.kind == MessengerEvent::Kind::kStory) {
        PrintEvent(c, e);
      }
    }
  }
  if (count >= 0 && received < count) {
    c.err << "padlock listen: received " << received << " of " << count
          << " message(s) before the timeout\n";
    return kExitFailure;
  }
  return kExitOk;
}

int CmdHistory(Context& c) {
  auto m = OpenMessenger(c.args, true);
  if (!m.ok()) return Fail(c, m.status(), "history");
  const std::string peer = c.args.positional.empty() ? "" : c.args.positional[0];
  auto messages = (*m)->store().ListMessages(peer);
  if (!messages.ok()) return Fail(c, messages.status(), "history");
  for (const client::HistoryMessage& msg : *messages) {
    if (c.args.json) {
      c.out << JsonLine()
                   .Str("conversation", msg.conversation)
                   .Str("from", msg.sender_user_id)
                   .Num("device", msg.sender_device_id)
                   .Bool("outgoing", msg.outgoing)
                   .Str("text", msg.body)
                   .Str("status", StatusText(msg.status))
                   .Num("sent_at_ms", msg.sent_at_ms)
                   .Str("message_id", Hex(msg.message_id))
                   .str()
            << "\n";
    } else if (msg.outgoing) {
      c.out << "[" << TimeText(msg.sent_at_ms) << "] you → " << msg.conversation << ": "
            << msg.body << "  (" << StatusText(msg.status) << ")\n";
    } else {
      c.out << "[" << TimeText(msg.sent_at_ms) << "] " << msg.sender_user_id << ": " << msg.body
            << "\n";
    }
  }
  if (messages->empty() && !c.args.json) c.out << "(no messages)\n";
  return kExitOk;
}

int CmdRead(Context& c) {
  if (c.args.positional.size() != 1) {
    c.err << "usage: padlock read USER\n";
    return kExitUsage;
  }
  auto m = OpenMessenger(c.args, false);
  if (!m.ok()) return Fail(c, m.status(), "read");
  const absl::Duration timeout = FlagSeconds(c.args, "timeout", absl::Seconds(15));
  if (absl::Status s = (*m)->Connect(timeout); !s.ok()) return Fail(c, s, "read");
  absl::StatusOr<size_t> marked = (*m)->MarkRead(c.args.positional[0]);
  if (!marked.ok()) return Fail(c, marked.status(), "read");
  const absl::Time deadline = absl::Now() + timeout;
  while (absl::Now() < deadline) {
    absl::StatusOr<size_t> queued = (*m)->OutboxSize();
    if (!queued.ok() || *queued == 0) break;
    (*m)->Pump(absl::Milliseconds(100));
  }
  if (c.args.json) {
    c.out << JsonLine()
                 .Str("read", c.args.positional[0])
                 .Num("messages", static_cast<int64_t>(*marked))
                 .str()
          << "\n";
  } else {
    c.out << "marked " << *marked << " message(s) from " << c.args.positional[0]
          << " as read (read receipt sent)\n";
  }
  return kExitOk;
}

}  // namespace internal

using internal::CmdAcceptIdentity;
using internal::CmdDeleteAccount;
using internal::CmdDevices;
using internal::CmdGroup;
using internal::CmdHistory;
using internal::CmdLink;
using internal::CmdLinkApprove;
using internal::CmdListen;
using internal::CmdRead;
using internal::CmdRegister;
using internal::CmdSafetyNumber;
using internal::CmdSend;
using internal::CmdStatus;
using internal::CmdStory;
using internal::Context;


std::string Usage() {
  return R"(usage: padlock [--home DIR] [--gateway HOST:PORT] [--ca-file PEM] [--json] COMMAND ...

commands:
  register USER [--invite TOKEN]   create an account with this folder's device as its primary
  link USER [--timeout S]          (new, empty folder) link this device to USER's account
  link-approve CODE                (primary) approve a new device's link code
  send USER TEXT...  [--timeout S] encrypt and send a text (queued and retried until accepted)
  listen [--timeout S] [--count N] receive, print and acknowledge messages and stories (Ctrl-C
                                   to stop; --count N: stop after N of them)
  history [USER]                   the conversation(s) stored on this device
  read USER                        mark USER's messages read and send a read receipt
  devices [USER]                   the verified device list of your account (or USER's)
  devices unlink DEVICE_ID         (primary) remove a device; the server revokes it at once
  safety-number USER               the numbers to compare in person, per device of USER
  group create TITLE USER...       a group of you and USERs (Sender Keys; the server fans out)
  group send GROUP TEXT...         one ciphertext for every member device (GROUP: id or title)
  group add|remove GROUP USER      change members (removal rotates sender keys)
  group list                       the groups this device knows
  story post --to USER[,USER...] TEXT... [--ttl S]
                                   a story only those users see, gone after 24 h (or S s)
  story list                       stories not yet expired (received ones come with listen)
  accept-identity USER             trust USER's new keys after a "security code changed", and
                                   send the messages that were held for USER
  status                           account, gateway reachability, outbox, prekeys
  delete-account --yes yes         delete the account on the server and this folder's database
  help, --help                     this text

--home DIR        one identity per folder (default $PADLOCK_HOME, else ./.padlock-client)
--gateway H:P     the gateway (default $PADLOCK_GATEWAY, else 127.0.0.1:7400)
--ca-file PEM     use TLS, trusting this CA (default: plaintext)
--json            one JSON object per line instead of human output
$PADLOCK_PASSPHRASE  encrypts the local database (SQLCipher) when set

exit codes: 0 ok, 1 failure, 2 usage, 3 gateway unreachable, 4 rate limited, 5 unknown user
)";
}

absl::StatusOr<CliArgs> ParseArgs(const std::vector<std::string>& argv) {
  CliArgs args;
  if (const char* home = std::getenv("PADLOCK_HOME")) args.home = home;
  if (args.home.empty()) args.home = ".padlock-client";
  if (const char* gateway = std::getenv("PADLOCK_GATEWAY")) args.gateway = gateway;
  if (args.gateway.empty()) args.gateway = "127.0.0.1:7400";
  static const std::map<std::string, std::string*> kNone;
  for (size_t i = 0; i < argv.size(); ++i) {
    const std::string& a = argv[i];
    if (a == "--json") {
      args.json = true;
      continue;
    }
    if (a == "--help" || a == "-h") {
      args.command = "help";
      args.positional.clear();
      break;
    }
    if (a.size() > 2 && a.rfind("--", 0) == 0) {
      std::string name = a.substr(2);
      std::string value;
      if (const size_t eq = name.find('='); eq != std::string::npos) {
        value = name.substr(eq + 1);
        name = name.substr(0, eq);
      } else {
        if (i + 1 >= argv.size()) return absl::InvalidArgumentError(a + " needs a value");
        value = argv[++i];
      }
      if (name == "home") {
        args.home = value;
      } else if (name == "gateway") {
        args.gateway = value;
      } else if (name == "ca-file") {
        args.ca_file = value;
      } else if (name == "timeout" || name == "count" || name == "invite" || name == "yes" ||
                 name == "to" || name == "ttl") {
        args.flags[name] = value;
      } else {
        return absl::InvalidArgumentError("unknown option --" + name);
      }
      continue;
    }
    if (args.command.empty()) {
      args.command = a;
    } else {
      args.positional.push_back(a);
    }
  }
  if (args.command.empty()) return absl::InvalidArgumentError("no command given");
  return args;
}

int Run(const CliArgs& args, std::ostream& out, std::ostream& err) {
  Context c{args, out, err};
  if (args.command == "register") return CmdRegister(c);
  if (args.command == "send") return CmdSend(c);
  if (args.command == "listen") return CmdListen(c);
  if (args.command == "history") return CmdHistory(c);
  if (args.command == "read") return CmdRead(c);
  if (args.command == "link") return CmdLink(c);
  if (args.command == "link-approve") return CmdLinkApprove(c);
  if (args.command == "devices") return CmdDevices(c);
  if (args.command == "safety-number") return CmdSafetyNumber(c);
  if (args.command == "accept-identity") return CmdAcceptIdentity(c);
  if (args.command == "status") return CmdStatus(c);
  if (args.command == "delete-account") return CmdDeleteAccount(c);
  if (args.command == "group") return CmdGroup(c);
  if (args.command == "story") return CmdStory(c);
  if (args.command == "help") {
    out << Usage();
    return kExitOk;
  }
  err << "padlock: unknown command " << args.command << "\n\n" << Usage();
  return kExitUsage;
}

}  // namespace padlock::cli
