#pragma once
// What the `padlock` subcommands share (commands*.cpp): the context of one run, error and event
// printing, and opening the device's Messenger. Internal to the CLI.

#include <cstdint>
#include <memory>
#include <ostream>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "clients/cli/commands.h"
#include "clients/sdk/messenger.h"

namespace padlock::cli::internal {

using client::MessageStatus;
using client::Messenger;
using client::MessengerEvent;

// Lower-case hex of `bytes`.
std::string Hex(std::string_view bytes);

// One JSON object per line: {"k": v, ...} with values already encoded.
class JsonLine {
 public:
  JsonLine& Str(std::string_view key, std::string_view value);
  JsonLine& Num(std::string_view key, int64_t value);
  JsonLine& Bool(std::string_view key, bool value);
  JsonLine& Raw(std::string_view key, std::string_view value);
  std::string str() const { return "{" + body_ + "}"; }

 private:
  std::string body_;
};

// Local time of a Unix-millisecond timestamp ("--:--:--" for none).
std::string TimeText(int64_t ms);
std::string StatusText(MessageStatus status);

struct Context {
  const CliArgs& args;
  std::ostream& out;
  std::ostream& err;
};

// Prints `status` as a clear error and returns the exit code for it.
int Fail(Context& c, const absl::Status& status, std::string_view what);
absl::StatusOr<std::unique_ptr<Messenger>> OpenMessenger(
    const CliArgs& args, bool receive, absl::Duration story_ttl = absl::Hours(24));
// Connects, then does the device's upkeep that needs the server (signed-prekey rotation); an
// upkeep failure is only a warning.
absl::Status ConnectWithUpkeep(Context& c, Messenger& m, absl::Duration timeout);
// The flag `name` in seconds, or `def` when absent or invalid.
absl::Duration FlagSeconds(const CliArgs& args, const std::string& name, absl::Duration def);
// Prints one messenger event (a JSON line with --json).
void PrintEvent(Context& c, const MessengerEvent& e);

// The subcommands (docs/CLIENT.md), each returning the exit code.
int CmdRegister(Context& c);
int CmdSend(Context& c);
int CmdListen(Context& c);
int CmdHistory(Context& c);
int CmdRead(Context& c);
int CmdLink(Context& c);
int CmdLinkApprove(Context& c);
int CmdDevices(Context& c);
int CmdSafetyNumber(Context& c);
int CmdAcceptIdentity(Context& c);
int CmdStatus(Context& c);
int CmdDeleteAccount(Context& c);
int CmdGroup(Context& c);
int CmdStory(Context& c);

}  // namespace padlock::cli::internal
