// `padlock` subcommands for the account and its devices: link, link-approve, devices (and
// unlink), safety-number, accept-identity, delete-account, status.
#include <algorithm>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <iomanip>
#include <map>
#include <ostream>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "clients/cli/cli_context.h"
#include "clients/sdk/gateway_client.h"
#include "clients/sdk/messenger.h"
#include "services/common/runtime/json_string.h"

namespace padlock::cli::internal {

using runtime::JsonString;

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

}  // namespace padlock::cli::internal
