// The CLI's shared helpers (cli_context.h).
#include <cstdlib>
#include <optional>
#include <ostream>
#include <string>
#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "clients/cli/cli_context.h"
#include "clients/sdk/gateway_client.h"
#include "services/common/runtime/json_string.h"

namespace padlock::cli::internal {

using runtime::JsonString;

std::string Hex(std::string_view bytes) {
  static const char* kDigits = "0123456789abcdef";
  std::string out;
  for (unsigned char c : bytes) {
    out.push_back(kDigits[c >> 4]);
    out.push_back(kDigits[c & 15]);
  }
  return out;
}

JsonLine& JsonLine::Str(std::string_view key, std::string_view value) {
  return Raw(key, JsonString(value));
}
JsonLine& JsonLine::Num(std::string_view key, int64_t value) {
  return Raw(key, absl::StrCat(value));
}
JsonLine& JsonLine::Bool(std::string_view key, bool value) {
  return Raw(key, value ? "true" : "false");
}
JsonLine& JsonLine::Raw(std::string_view key, std::string_view value) {
  body_ += absl::StrCat(body_.empty() ? "" : ",", JsonString(key), ":", std::string(value));
  return *this;
}

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

absl::StatusOr<std::unique_ptr<Messenger>> OpenMessenger(const CliArgs& args, bool receive,
                                                         absl::Duration story_ttl) {
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

}  // namespace padlock::cli::internal
