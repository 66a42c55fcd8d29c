// padlock: the command-line Padlock client. Composition root only; see commands.h.
#include <iostream>
#include <string>
#include <vector>

#include "clients/cli/commands.h"

int main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  absl::StatusOr<padlock::cli::CliArgs> parsed = padlock::cli::ParseArgs(args);
  if (!parsed.ok()) {
    std::cerr << "padlock: " << parsed.status().message() << "\n\n" << padlock::cli::Usage();
    return padlock::cli::kExitUsage;
  }
  return padlock::cli::Run(*parsed, std::cout, std::cerr);
}
