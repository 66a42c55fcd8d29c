// padlock-loadgen: see loadgen.h and docs/PERFORMANCE.md. Exit status 0 when the run completed
// with no loss, duplicate, refusal or stream failure; 1 when it completed unclean; 2 on a set-up
// error or bad flags.
#include <cstdio>
#include <fstream>

#include "bench/loadgen/loadgen.h"

int main(int argc, char** argv) {
  absl::StatusOr<padlock::loadgen::Options> options = padlock::loadgen::ParseFlags(argc, argv);
  if (!options.ok()) {
    if (options.status().message() != "help") {
      std::fprintf(stderr, "error: %s\n\n", std::string(options.status().message()).c_str());
    }
    std::fputs(padlock::loadgen::Usage().c_str(), stderr);
    return 2;
  }
  absl::StatusOr<padlock::loadgen::Report> report = padlock::loadgen::Run(*options);
  if (!report.ok()) {
    std::fprintf(stderr, "padlock-loadgen: %s\n", report.status().ToString().c_str());
    return 2;
  }
  std::fputs(padlock::loadgen::FormatTable(*report).c_str(), stdout);
  if (!options->json_path.empty()) {
    std::ofstream out(options->json_path);
    out << padlock::loadgen::FormatJson(*report);
    if (!out) {
      std::fprintf(stderr, "padlock-loadgen: cannot write %s\n", options->json_path.c_str());
      return 2;
    }
  }
  return report->Clean() ? 0 : 1;
}
