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
#include "clients/sdk/gateway_client.h"
#include "clients/sdk/messenger.h"
#include "services/common/runtime/json_string.h"

namespace padlock::cli {
namespace {

using client::MessageStatus;
using runtime::JsonString;
using client::Messenger;
using client::MessengerEvent;

volatile std::sig_atomic_t g_interrupted = 0;
void OnSignal(int) { g_interrupted = 1; }

std::string Hex(std::string_view bytes) {
  static const char* kDigits = "0123456789abcdef";
  std::string out;
  for (unsigned char c : bytes) {
    out.push_back(kDigits[c >> 4]);
    out.push_back(kDigits[c & 15]);
  }
  return out;
}

// One JSON object per line: {"k": v, ...} with values already encoded.
class JsonLine {
 public:
  JsonLine& Str(std::string_view key, std::string_view value) {
    return Raw(key, JsonString(value));
  }
  JsonLine& Num(std::string_view key, int64_t value) { return Raw(key, absl::StrCat(value)); }
  JsonLine& Bool(std::string_view key, bool value) { return Raw(key, value ? "true" : "false"); }
  JsonLine& Raw(std::string_view key, std::string_view value) {
    body_ += absl::StrCat(body_.empty() ? "" : ",", JsonString(key), ":", std::string(value));
    return *this;
  }
  std::string str() const { return "{" + body_ + "}"; }

 private:
  std::string body_;
};

std::string TimeText(int64_t ms) {
  if (ms <= 0) return "--:--:--";
  return absl::FormatTime("%Y-%m-%d %H:%M:%S", absl::FromUnixMillis(ms), absl::LocalTimeZone());
}

std::string StatusText(MessageStatus status) {
  switch (status) {
    case MessageStatus::kPending: return "queued";
    case MessageStatus::kSent: return "sent";
    case MessageStatus::kDelivered: return "delivered";
    case MessageStatus::kRead: return "read";
    case MessageStatus::kFailed: return "failed";
    case MessageStatus::kUnsupported: return "not supported by the recipient's app";
  }
  return "unknown";
}

struct Context {
  const CliArgs& args;
  std::ostream& out;
  std::ostream& err;
};

// Prints `status` as a clear error and returns the exit code for it.
int Fail(Context& c, const absl::Status& status, std::string_view what) {
  int code = kExitFailure;
  std::string text;
  const std::string detail(status.message());
  switch (status.code()) {
    case absl::StatusCode::kUnavailable:
    case absl::StatusCode::kDeadlineExceeded:
      code = kExitUnreachable;
      text = absl::StrCat("cannot reach the gateway at ", c.args.gateway,
                          " (is the stack up? `scripts/padlock up`): ", detail);
      if (absl::IsDeadlineExceeded(status) && what == "send") text = detail;
      break;
    case absl::StatusCode::kResourceExhausted: {
      code = kExitRateLimited;
      std::optional<absl::Duration> wait = client::RetryAfter(status);
      text = wait.has_value()
                 ? absl::StrCat("rate limited by the server; try again in ",
                                (absl::ToInt64Milliseconds(*wait) + 999) / 1000, " s (",
                                detail, ")")
                 : absl::StrCat("rate limited by the server; try again later (", detail, ")");
      break;
    }
    case absl::StatusCode::kNotFound:
      code = kExitUnknownUser;
      text = detail;
      break;
    case absl::StatusCode::kUnauthenticated:
      text = absl::StrCat("the server does not accept this device's identity (account deleted, "
                          "device unlinked, or a different server?): ", detail);
      break;
    default:
      text = detail;
  }
  if (c.args.json) {
    c.err << JsonLine()
                 .Str("error", text)
                 .Str("command", what)
                 .Str("code", absl::StatusCodeToString(status.code()))
                 .str()
          << "\n";
  } else {
    c.err << "padlock " << what << ": " << text << "\n";
  }
  return code;
}

absl::StatusOr<std::unique_ptr<Messenger>> OpenMessenger(
    const CliArgs& args, bool receive, absl::Duration story_ttl = absl::Hours(24)) {
  client::MessengerOptions options;
  options.home = args.home;
  if (const char* passphrase = std::getenv("PADLOCK_PASSPHRASE")) options.passphrase = passphrase;
  options.gateway.target = args.gateway;
  options.gateway.ca_file = args.ca_file;
  options.receive = receive;
  options.story_ttl = story_ttl;
  return Messenger::Open(std::move(options));
}

// Connects, then does the device's upkeep that needs the server: rotating the signed prekey when
// it is due (MessengerOptions::signed_prekey_rotation). An upkeep failure is only a warning: the
// command itself can go on, and the next connecting command tries again.
absl::Status ConnectWithUpkeep(Context& c, Messenger& m, absl::Duration timeout) {
  if (absl::Status s = m.Connect(timeout); !s.ok()) return s;
  absl::StatusOr<bool> rotated = m.RotateSignedPreKeyIfDue();
  if (!rotated.ok()) {
    c.err << "(warning: signed prekey rotation failed, retried next time: "
          << rotated.status().message() << ")\n";
  } else if (*rotated && !c.args.json) {
    c.err << "(rotated the signed prekey: now id " << m.account()->signed_prekey_id << ")\n";
  }
  return absl::OkStatus();
}

absl::Duration FlagSeconds(const CliArgs& args, const std::string& name, absl::Duration def) {
  auto it = args.flags.find(name);
  double seconds = 0;
  if (it == args.flags.end() || !absl::SimpleAtod(it->second, &seconds) || seconds < 0) return def;
  return absl::Seconds(seconds);
}

void PrintEvent(Context& c, const MessengerEvent& e) {
  using Kind = MessengerEvent::Kind;
  if (c.args.json) {
    JsonLine line;
    switch (e.kind) {
      case Kind::kMessage:
        line.Str("event", "message").Str("from", e.peer).Num("device", e.peer_device)
            .Bool("outgoing", e.outgoing)
            .Str("conversation", e.conversation).Str("text", e.text)
            .Str("message_id", Hex(e.message_id))
            .Num("sent_at_ms", static_cast<int64_t>(e.sent_at_ms))
            .Num("sequence", static_cast<int64_t>(e.sequence));
        break;
      case Kind::kReceipt: {
        std::string ids = "[";
        for (size_t i = 0; i < e.message_ids.size(); ++i) {
          ids += (i ? "," : "") + JsonString(Hex(e.message_ids[i]));
        }
        line.Str("event", "receipt").Str("from", e.peer).Str("status", StatusText(e.receipt_status))
            .Raw("message_ids", ids + "]");
        break;
      }
      case Kind::kGap:
        line.Str("event", "gap").Num("first_sequence", static_cast<int64_t>(e.gap.first_sequence()))
            .Num("last_sequence", static_cast<int64_t>(e.gap.last_sequence()));
        break;
      case Kind::kRejected:
        line.Str("event", "rejected").Str("from", e.peer).Num("device", e.peer_device)
            .Str("detail", e.detail);
        break;
      case Kind::kSent: line.Str("event", "sent").Str("message_id", Hex(e.message_id)); break;
      case Kind::kSendFailed:
        line.Str("event", "send_failed").Str("message_id", Hex(e.message_id))
            .Str("detail", e.detail);
        break;
      case Kind::kDisconnected: line.Str("event", "disconnected").Str("detail", e.detail); break;
      case Kind::kStopped: line.Str("event", "stopped").Str("detail", e.detail); break;
      case Kind::kQueueEmpty: line.Str("event", "queue_empty"); break;
      case Kind::kPreKeysReplenished:
        line.Str("event", "prekeys_replenished").Str("detail", e.detail);
        break;
      case Kind::kConnected: line.Str("event", "connected").Str("detail", e.detail); break;
      case Kind::kTyping:
        line.Str("event", "typing").Str("from", e.peer).Bool("typing", e.text == "1");
        break;
      case Kind::kGroupUpdated:
        line.Str("event", "group_updated").Str("group", e.conversation).Str("detail", e.detail);
        break;
      case Kind::kStory:
        line.Str("event", "story").Str("from", e.peer).Num("device", e.peer_device)
            .Bool("outgoing", e.outgoing).Str("text", e.text)
            .Str("message_id", Hex(e.message_id))
            .Num("sent_at_ms", static_cast<int64_t>(e.sent_at_ms))
            .Num("expires_at_ms", e.expires_at_ms);
        break;
      case Kind::kIdentityChanged:
        line.Str("event", "identity_changed").Str("from", e.peer).Num("device", e.peer_device)
            .Str("detail", e.detail);
        break;
      case Kind::kUnsupported: {
        std::string ids = "[";
        for (size_t i = 0; i < e.message_ids.size(); ++i) {
          ids += (i ? "," : "") + JsonString(Hex(e.message_ids[i]));
        }
        line.Str("event", "unsupported").Str("from", e.peer).Num("device", e.peer_device)
            .Raw("message_ids", ids + "]").Str("detail", e.detail);
        break;
      }
      case Kind::kUnsupportedContent:
        line.Str("event", "unsupported_content").Str("from", e.peer).Num("device", e.peer_device)
            .Str("message_id", Hex(e.message_id)).Str("detail", e.detail);
        break;
      case Kind::kError: line.Str("event", "error").Str("detail", e.detail); break;
    }
    c.out << line.str() << std::endl;
    return;
  }
  switch (e.kind) {
    case Kind::kTyping:
      c.out << "… " << e.peer << (e.text == "1" ? " is typing" : " stopped typing") << std::endl;
      break;
    case Kind::kGroupUpdated:
      c.out << "* group " << e.detail << std::endl;
      break;
    case Kind::kStory:
      c.out << "[" << TimeText(static_cast<int64_t>(e.sent_at_ms)) << "] story from "
            << (e.outgoing ? absl::StrCat("you (device ", e.peer_device, ")") : e.peer) << ": "
            << e.text << "  (until " << TimeText(e.expires_at_ms) << ")" << std::endl;
      break;
    case Kind::kIdentityChanged:
      c.out << "! security code with " << e.peer << " (device " << e.peer_device
            << ") changed: " << e.detail << "; messages to " << e.peer
            << " are held — compare `padlock safety-number " << e.peer
            << "`, then `padlock accept-identity " << e.peer << "`" << std::endl;
      break;
    case Kind::kMessage:
      if (e.conversation.rfind("group:", 0) == 0) {
        c.out << "[" << TimeText(static_cast<int64_t>(e.sent_at_ms)) << "] "
              << (e.outgoing ? absl::StrCat("you (device ", e.peer_device, ")") : e.peer)
              << " in " << e.detail << ": " << e.text << std::endl;
      } else if (!e.outgoing) {
        c.out << "[" << TimeText(static_cast<int64_t>(e.sent_at_ms)) << "] " << e.peer << ": "
              << e.text << std::endl;
      } else {  // a copy of our own message sent from another device
        c.out << "[" << TimeText(static_cast<int64_t>(e.sent_at_ms)) << "] you (device "
              << e.peer_device << ") → " << e.conversation << ": " << e.text << std::endl;
      }
      break;
    case Kind::kReceipt:
      c.out << "✓ " << e.peer << " " << StatusText(e.receipt_status) << " "
            << e.message_ids.size() << " message(s)" << std::endl;
      break;
    case Kind::kGap:
      c.out << "! " << (e.gap.last_sequence() - e.gap.first_sequence() + 1)
            << " message(s) expired before this device fetched them (sequence "
            << e.gap.first_sequence() << "–" << e.gap.last_sequence() << ")" << std::endl;
      break;
    case Kind::kRejected:
      c.out << "! message from " << e.peer << ":" << e.peer_device << " rejected: " << e.detail
            << std::endl;
      break;
    case Kind::kSendFailed:
      c.out << "! a queued message could not be sent: " << e.detail << std::endl;
      break;
    case Kind::kUnsupported:
      c.out << "! " << e.peer << ":" << e.peer_device << " cannot show " << e.message_ids.size()
            << " of your message(s): " << e.detail << std::endl;
      break;
    case Kind::kUnsupportedContent:
      c.out << "! " << e.peer << ":" << e.peer_device << " sent something this app cannot show ("
            << e.detail << "); they were told" << std::endl;
      break;
    case Kind::kDisconnected:
      c.err << "(disconnected: " << e.detail << "; reconnecting)" << std::endl;
      break;
    case Kind::kStopped:
      c.err << "(connection closed: " << e.detail << ")" << std::endl;
      break;
    case Kind::kError:
      c.err << "! " << e.detail << std::endl;
      break;
    default:
      break;
  }
}

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

int CmdLink(Context& c) {
  if (c.args.positional.size() != 1) {
    c.err << "usage: padlock link USER [--timeout S]   (in a new, empty --home folder)\n";
    return kExitUsage;
  }
  auto m = OpenMessenger(c.args, true);
  if (!m.ok()) return Fail(c, m.status(), "link");
  absl::StatusOr<std::string> code = (*m)->CreateLinkRequest(c.args.positional[0]);
  if (!code.ok()) return Fail(c, code.status(), "link");
  if (c.args.json) {
    c.out << JsonLine().Str("link_code", *code).str() << std::endl;
  } else {
    c.out << "link code: " << *code << "\n"
          << "on the primary device of " << c.args.positional[0]
          << " run:  padlock link-approve <code>" << std::endl;
  }
  const absl::Duration timeout = FlagSeconds(c.args, "timeout", absl::Seconds(300));
  if (absl::Status s = (*m)->CompleteLink(timeout); !s.ok()) {
    if (absl::IsDeadlineExceeded(s)) {  // not a network fault: the primary has not approved
      c.err << "padlock link: not approved yet by the primary device; approve the code there "
               "(padlock link-approve CODE), then run this command again (the code stays the "
               "same)\n";
      return kExitFailure;
    }
    return Fail(c, s, "link");
  }
  auto account = (*m)->account();
  if (!account.ok()) return Fail(c, account.status(), "link");
  if (c.args.json) {
    c.out << JsonLine().Str("linked", account->user_id).Num("device", account->device_id).str()
          << std::endl;
  } else {
    c.out << "linked: this folder is now " << account->user_id << " device "
          << account->device_id << std::endl;
  }
  return kExitOk;
}

int CmdLinkApprove(Context& c) {
  if (c.args.positional.size() != 1) {
    c.err << "usage: padlock link-approve CODE   (on the primary device)\n";
    return kExitUsage;
  }
  auto m = OpenMessenger(c.args, false);
  if (!m.ok()) return Fail(c, m.status(), "link-approve");
  absl::StatusOr<uint32_t> device = (*m)->ApproveLink(c.args.positional[0]);
  if (!device.ok()) return Fail(c, device.status(), "link-approve");
  if (c.args.json) {
    c.out << JsonLine().Num("linked_device", *device).str() << "\n";
  } else {
    c.out << "approved: the new device is device " << *device
          << " (published a new signed device list)\n";
  }
  return kExitOk;
}

int CmdUnlink(Context& c, Messenger& m) {
  uint32_t device = 0;
  if (c.args.positional.size() != 2 || !absl::SimpleAtoi(c.args.positional[1], &device) ||
      device == 0) {
    c.err << "usage: padlock devices unlink DEVICE_ID   (on the primary; see padlock devices)\n";
    return kExitUsage;
  }
  absl::Status s = m.UnlinkDevice(device);
  if (absl::IsNotFound(s)) {  // a device, not a user: not exit code 5
    c.err << "padlock devices unlink: " << s.message() << " (see padlock devices)\n";
    return kExitFailure;
  }
  if (!s.ok()) return Fail(c, s, "devices unlink");
  auto account = m.account();
  auto list = m.store().LoadVerifiedDeviceList(account->user_id);
  const int64_t version = list.ok() && list->has_value() ? static_cast<int64_t>((*list)->version)
                                                         : -1;
  if (c.args.json) {
    c.out << JsonLine().Num("unlinked_device", device).Num("list_version", version).str()
          << "\n";
  } else {
    c.out << "unlinked device " << device << " (published device list version " << version
          << "; the server has revoked it)\n";
  }
  return kExitOk;
}

int CmdDevices(Context& c) {
  auto m = OpenMessenger(c.args, true);
  if (!m.ok()) return Fail(c, m.status(), "devices");
  auto account = (*m)->account();
  if (!account.ok()) return Fail(c, account.status(), "devices");
  if (!c.args.positional.empty() && c.args.positional[0] == "unlink") return CmdUnlink(c, **m);
  if (c.args.positional.size() > 1) {
    c.err << "usage: padlock devices [USER] | devices unlink DEVICE_ID\n";
    return kExitUsage;
  }
  const std::string user = c.args.positional.empty() ? account->user_id : c.args.positional[0];
  auto list = (*m)->RefreshDeviceList(user);
  if (!list.ok()) return Fail(c, list.status(), "devices");
  if (!c.args.json) {
    c.out << user << ": device list version " << list->list().version()
          << " (signature verified)\n";
  }
  for (const auto& d : list->list().devices()) {
    const bool self = user == account->user_id && d.device_id() == account->device_id;
    if (c.args.json) {
      c.out << JsonLine()
                   .Str("user", user)
                   .Num("device", d.device_id())
                   .Num("registration_id", d.registration_id())
                   .Str("identity_key", Hex(d.identity_key()))
                   .Bool("this_device", self)
                   .Num("list_version", static_cast<int64_t>(list->list().version()))
                   .str()
            << "\n";
    } else {
      c.out << "  device " << d.device_id() << (d.device_id() == 1 ? " (primary)" : "")
            << (self ? " (this device)" : "") << "  registration id " << d.registration_id()
            << "  key " << Hex(d.identity_key()).substr(0, 16) << "…\n";
    }
  }
  return kExitOk;
}

int CmdSafetyNumber(Context& c) {
  if (c.args.positional.size() != 1) {
    c.err << "usage: padlock safety-number USER\n";
    return kExitUsage;
  }
  auto m = OpenMessenger(c.args, true);
  if (!m.ok()) return Fail(c, m.status(), "safety-number");
  const std::string& peer = c.args.positional[0];
  auto numbers = (*m)->SafetyNumbers(peer);
  if (!numbers.ok()) return Fail(c, numbers.status(), "safety-number");
  for (const auto& [device, digits] : *numbers) {
    if (c.args.json) {
      c.out << JsonLine().Str("user", peer).Num("device", device).Str("safety_number", digits).str()
            << "\n";
      continue;
    }
    // Two lines of six groups of five digits, as Signal shows them.
    c.out << "safety number with " << peer << " device " << device << ":\n";
    for (size_t line = 0; line < digits.size(); line += 30) {
      c.out << "   ";
      for (size_t i = line; i < std::min(line + 30, digits.size()); i += 5) {
        c.out << " " << digits.substr(i, 5);
      }
      c.out << "\n";
    }
  }
  return kExitOk;
}

int CmdAcceptIdentity(Context& c) {
  if (c.args.positional.size() != 1) {
    c.err << "usage: padlock accept-identity USER\n";
    return kExitUsage;
  }
  const std::string& peer = c.args.positional[0];
  // Receiving off: envelopes (held ones included) stay in the inbox for `listen`.
  auto m = OpenMessenger(c.args, false);
  if (!m.ok()) return Fail(c, m.status(), "accept-identity");
  if (absl::Status s = (*m)->AcceptIdentity(peer); !s.ok()) {
    return Fail(c, s, "accept-identity");
  }
  c.out << "now trusting the current keys of " << peer << "\n";
  // The messages that were held go out now (re-encrypted for the changed devices only).
  absl::StatusOr<size_t> queued = (*m)->OutboxSize();
  if (!queued.ok() || *queued == 0) return kExitOk;
  const absl::Duration timeout = FlagSeconds(c.args, "timeout", absl::Seconds(15));
  if (absl::Status s = ConnectWithUpkeep(c, **m, timeout); s.ok()) {
    (void)(*m)->FlushOutbox();
    for (const absl::Time deadline = absl::Now() + timeout; absl::Now() < deadline;) {
      absl::StatusOr<size_t> left = (*m)->OutboxSize();
      if (!left.ok() || *left == 0) break;
      (*m)->Pump(absl::Milliseconds(200));
    }
  }
  absl::StatusOr<size_t> left = (*m)->OutboxSize();
  if (left.ok() && *left > 0) {
    c.err << "(" << *left << " queued message(s) not sent yet; they go out with the next padlock "
             "command that connects)\n";
  } else {
    c.out << "sent " << *queued << " queued message(s)\n";
  }
  return kExitOk;
}

// A group named by its 32-hex-digit id or its (unique) title.
absl::StatusOr<std::string> FindGroup(Messenger& m, const std::string& name) {
  auto groups = m.store().ListGroups();
  if (!groups.ok()) return groups.status();
  std::vector<std::string> matches;
  for (const client::GroupRecord& g : *groups) {
    if (Hex(g.group_id) == name || g.title == name) matches.push_back(g.group_id);
  }
  if (matches.empty()) {
    return absl::NotFoundError(absl::StrCat("no group ", name, " on this device"));
  }
  if (matches.size() > 1) {
    return absl::InvalidArgumentError(absl::StrCat("several groups are called ", name,
                                                   ": use the id (padlock group list)"));
  }
  return matches[0];
}

int CmdGroup(Context& c) {
  const std::vector<std::string>& p = c.args.positional;
  const std::string sub = p.empty() ? "" : p[0];
  auto m = OpenMessenger(c.args, false);  // leave incoming envelopes for `listen`
  if (!m.ok()) return Fail(c, m.status(), "group");
  if (sub == "list") {
    auto groups = (*m)->store().ListGroups();
    if (!groups.ok()) return Fail(c, groups.status(), "group");
    for (const client::GroupRecord& g : *groups) {
      std::string members;
      for (const std::string& u : g.members) members += (members.empty() ? "" : ", ") + u;
      if (c.args.json) {
        c.out << JsonLine().Str("group", Hex(g.group_id)).Str("title", g.title)
                     .Str("members", members).str() << "\n";
      } else {
        c.out << Hex(g.group_id) << "  " << g.title << "  (" << members << ")\n";
      }
    }
    if (groups->empty() && !c.args.json) c.out << "(no groups)\n";
    return kExitOk;
  }
  const absl::Duration timeout = FlagSeconds(c.args, "timeout", absl::Seconds(15));
  if (absl::Status s = ConnectWithUpkeep(c, **m, timeout); !s.ok()) return Fail(c, s, "group");
  if (sub == "create" && p.size() >= 3) {
    std::vector<std::string> members(p.begin() + 2, p.end());
    auto id = (*m)->CreateGroup(p[1], members);
    if (!id.ok()) return Fail(c, id.status(), "group create");
    (*m)->Pump(absl::Seconds(2));  // let the updates go out
    if (c.args.json) {
      c.out << JsonLine().Str("group", Hex(*id)).Str("title", p[1]).str() << "\n";
    } else {
      c.out << "created group " << p[1] << " (" << Hex(*id) << ")\n";
    }
    return kExitOk;
  }
  if ((sub == "add" || sub == "remove") && p.size() == 3) {
    auto id = FindGroup(**m, p[1]);
    if (!id.ok()) return Fail(c, id.status(), "group");
    absl::Status s = sub == "add" ? (*m)->AddGroupMember(*id, p[2])
                                  : (*m)->RemoveGroupMember(*id, p[2]);
    if (!s.ok()) return Fail(c, s, "group " + sub);
    (*m)->Pump(absl::Seconds(2));
    c.out << (sub == "add" ? "added " : "removed ") << p[2] << "\n";
    return kExitOk;
  }
  if (sub == "send" && p.size() >= 3) {
    auto id = FindGroup(**m, p[1]);
    if (!id.ok()) return Fail(c, id.status(), "group send");
    std::string text = p[2];
    for (size_t i = 3; i < p.size(); ++i) text += " " + p[i];
    auto sent = (*m)->SendGroupText(*id, text, timeout);
    if (!sent.ok()) return Fail(c, sent.status(), "group send");
    c.out << "sent to group " << p[1] << ": " << text << "\n";
    return kExitOk;
  }
  c.err << "usage: padlock group create TITLE USER... | send GROUP TEXT... | add GROUP USER | "
           "remove GROUP USER | list\n";
  return kExitUsage;
}

// A comma-separated list of users ("alice,bob"); empty names are dropped.
std::vector<std::string> SplitUsers(const std::string& list) {
  std::vector<std::string> out;
  size_t start = 0;
  while (start <= list.size()) {
    size_t comma = list.find(',', start);
    if (comma == std::string::npos) comma = list.size();
    if (comma > start) out.push_back(list.substr(start, comma - start));
    start = comma + 1;
  }
  return out;
}

int CmdStory(Context& c) {
  const std::vector<std::string>& p = c.args.positional;
  const std::string sub = p.empty() ? "" : p[0];
  const char* kUsage =
      "usage: padlock story post --to USER[,USER...] [--ttl S] TEXT... | story list\n";
  if (sub == "list" && p.size() == 1) {
    auto m = OpenMessenger(c.args, false);
    if (!m.ok()) return Fail(c, m.status(), "story list");
    auto stories = (*m)->ListStories();
    if (!stories.ok()) return Fail(c, stories.status(), "story list");
    for (const client::StoryRecord& st : *stories) {
      std::string audience;
      for (const std::string& u : st.audience) audience += (audience.empty() ? "" : ",") + u;
      if (c.args.json) {
        c.out << JsonLine().Str("story", Hex(st.message_id)).Str("from", st.sender_user_id)
                     .Num("device", st.sender_device_id).Bool("outgoing", st.outgoing)
                     .Str("text", st.text).Num("posted_at_ms", st.posted_at_ms)
                     .Num("expires_at_ms", st.expires_at_ms).Str("to", audience).str()
              << "\n";
      } else {
        c.out << "[" << TimeText(st.posted_at_ms) << "] "
              << (st.outgoing ? std::string("you") : st.sender_user_id)
              << (audience.empty() ? "" : " → " + audience) << ": " << st.text << "  (until "
              << TimeText(st.expires_at_ms) << ")\n";
      }
    }
    if (stories->empty() && !c.args.json) {
      c.out << "(no stories; received ones arrive with padlock listen)\n";
    }
    return kExitOk;
  }
  if (sub != "post" || p.size() < 2) {
    c.err << kUsage;
    return kExitUsage;
  }
  auto to = c.args.flags.find("to");
  const std::vector<std::string> audience =
      to == c.args.flags.end() ? std::vector<std::string>{} : SplitUsers(to->second);
  if (audience.empty()) {
    c.err << "padlock story post: say who may see it with --to USER[,USER...]\n" << kUsage;
    return kExitUsage;
  }
  std::string text = p[1];
  for (size_t i = 2; i < p.size(); ++i) text += " " + p[i];
  int64_t ttl_seconds = 86400;
  if (auto ttl = c.args.flags.find("ttl"); ttl != c.args.flags.end()) {
    if (!absl::SimpleAtoi(ttl->second, &ttl_seconds) || ttl_seconds <= 0 ||
        ttl_seconds > 86400) {
      c.err << "padlock story post: --ttl takes seconds, 1 to 86400 (the default)\n";
      return kExitUsage;
    }
  }
  // Leaves incoming envelopes for `listen`.
  auto m = OpenMessenger(c.args, false, absl::Seconds(ttl_seconds));
  if (!m.ok()) return Fail(c, m.status(), "story post");
  const absl::Duration timeout = FlagSeconds(c.args, "timeout", absl::Seconds(15));
  absl::StatusOr<std::string> queued = (*m)->ComposeStory(audience, text);
  if (!queued.ok()) return Fail(c, queued.status(), "story post");
  if (absl::Status s = ConnectWithUpkeep(c, **m, timeout); !s.ok()) {
    const int code = Fail(c, s, "story post");
    c.err << "(the story is queued on this device and goes out with the next padlock command "
             "that connects)\n";
    return code;
  }
  absl::StatusOr<std::string> id = (*m)->AwaitSent(*queued, timeout);
  if (!id.ok()) return Fail(c, id.status(), "story post");
  if (c.args.json) {
    c.out << JsonLine().Str("story", Hex(*id)).Str("to", to->second).Str("text", text).str()
          << "\n";
  } else {
    c.out << "posted a story to " << to->second << ": " << text << "\n";
  }
  return kExitOk;
}

int CmdDeleteAccount(Context& c) {
  if (c.args.flags.count("yes") == 0 || c.args.flags.at("yes") != "yes") {
    c.err << "padlock delete-account: this deletes the account on the server for good (keys, "
             "device list, inboxes) and this folder's database; confirm with --yes yes\n";
    return kExitUsage;
  }
  auto m = OpenMessenger(c.args, true);
  if (!m.ok()) return Fail(c, m.status(), "delete-account");
  auto account = (*m)->account();
  if (!account.ok()) return Fail(c, account.status(), "delete-account");
  auto deleted = (*m)->gateway().DeleteAccount();
  if (!deleted.ok()) return Fail(c, deleted.status(), "delete-account");
  m->reset();
  for (const char* suffix : {"", "-wal", "-shm"}) {
    std::remove((c.args.home + "/padlock.db" + suffix).c_str());
  }
  if (c.args.json) {
    c.out << JsonLine().Str("deleted", account->user_id).str() << "\n";
  } else {
    c.out << "deleted account " << account->user_id << " and this folder's database\n";
  }
  return kExitOk;
}

int CmdStatus(Context& c) {
  auto m = OpenMessenger(c.args, true);
  if (!m.ok()) return Fail(c, m.status(), "status");
  auto account = (*m)->account();
  auto outbox = (*m)->OutboxSize();
  auto prekeys = (*m)->store().CountPreKeys();
  auto messages = (*m)->store().ListMessages("");
  auto stories = (*m)->ListStories();
  auto signed_prekeys = (*m)->store().ListSignedPreKeys();
  int64_t signed_prekey_created_ms = 0;  // 0: age not recorded yet (the next connect records it)
  if (account.ok() && signed_prekeys.ok()) {
    for (const client::SignedPreKeyInfo& k : *signed_prekeys) {
      if (k.id == account->signed_prekey_id) signed_prekey_created_ms = k.created_at_ms;
    }
  }
  absl::Status login = account.ok() ? (*m)->gateway().Login() : account.status();
  if (c.args.json) {
    JsonLine line;
    line.Str("home", c.args.home).Str("gateway", c.args.gateway).Bool("registered", account.ok());
    if (account.ok()) line.Str("user", account->user_id).Num("device", account->device_id);
    line.Bool("logged_in", login.ok());
    if (!login.ok()) line.Str("login_error", std::string(login.message()));
    line.Num("outbox", outbox.ok() ? static_cast<int64_t>(*outbox) : -1)
        .Num("local_prekeys", prekeys.ok() ? *prekeys : -1)
        .Num("messages", messages.ok() ? static_cast<int64_t>(messages->size()) : -1)
        .Num("stories", stories.ok() ? static_cast<int64_t>(stories->size()) : -1);
    if (account.ok()) {
      line.Num("signed_prekey_id", account->signed_prekey_id)
          .Num("signed_prekey_created_at_ms", signed_prekey_created_ms);
    }
    c.out << line.str() << "\n";
  } else {
    c.out << "home:      " << c.args.home << "\n";
    if (account.ok()) {
      c.out << "account:   " << account->user_id << " (device " << account->device_id << ")\n";
    } else {
      c.out << "account:   not registered (padlock register USER)\n";
    }
    c.out << "gateway:   " << c.args.gateway << " — "
          << (login.ok() ? "reachable, logged in" : std::string(login.message())) << "\n";
    if (outbox.ok()) c.out << "outbox:    " << *outbox << " message(s) waiting to be sent\n";
    if (prekeys.ok()) c.out << "prekeys:   " << *prekeys << " one-time prekeys held locally\n";
    if (messages.ok()) c.out << "history:   " << messages->size() << " message(s)\n";
    if (stories.ok()) c.out << "stories:   " << stories->size() << " not yet expired\n";
    if (account.ok()) {
      c.out << "signed prekey: id " << account->signed_prekey_id;
      if (signed_prekey_created_ms > 0) {
        c.out << ", made " << TimeText(signed_prekey_created_ms) << " (rotated after 7 days)";
      }
      c.out << "\n";
    }
  }
  if (!account.ok()) return kExitFailure;
  if (!login.ok()) return Fail(c, login, "status");
  return kExitOk;
}

}  // namespace

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
