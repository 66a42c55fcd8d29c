#pragma once
// The `padlock` command line: argument parsing and the subcommands, on top of the SDK's
// Messenger. Kept apart from main() so that tests can parse arguments without running anything.

#include <iosfwd>
#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace padlock::cli {

// Exit codes (documented in `padlock help` and docs/CLIENT.md).
inline constexpr int kExitOk = 0;
inline constexpr int kExitFailure = 1;
inline constexpr int kExitUsage = 2;
inline constexpr int kExitUnreachable = 3;
inline constexpr int kExitRateLimited = 4;
inline constexpr int kExitUnknownUser = 5;

struct CliArgs {
  std::string home = {};
  std::string gateway = {};
  std::string ca_file = {};
  bool json = false;
  std::string command = {};
  std::vector<std::string> positional = {};
  std::map<std::string, std::string> flags = {};  // command flags: --timeout, --count, --invite
};

// Parses global flags (anywhere on the line), the command and its arguments. Defaults: --home
// from $PADLOCK_HOME (else ./.padlock-client), --gateway from $PADLOCK_GATEWAY (else
// 127.0.0.1:7400). InvalidArgument with a usage message for unknown flags or a missing value.
absl::StatusOr<CliArgs> ParseArgs(const std::vector<std::string>& argv);

// Runs the command; returns the process exit code. Human output (or JSON lines with --json) goes
// to `out`, errors to `err`.
int Run(const CliArgs& args, std::ostream& out, std::ostream& err);

// The usage text.
std::string Usage();

}  // namespace padlock::cli
