#pragma once
// Running the `padlock` binary (PADLOCK_CLI_BIN) against the shared stack (e2e_stack.h): one
// --home folder per user under the test's temp dir, output (stdout and stderr together) and exit
// code collected with a deadline.
#include <sys/wait.h>

#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "tests/e2e/clients/e2e_stack.h"
#include "tests/harness/harness.h"

namespace padlock::client::e2e {

struct CliResult {
  int exit_code = -1;
  std::string output;  // stdout and stderr together
};

inline bool Contains(const std::string& haystack, const std::string& needle) {
  return haystack.find(needle) != std::string::npos;
}

class CliFixture : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_NE(SharedStack(), nullptr); }

  // `padlock --home <dir>/<folder> --gateway <gateway or the stack's> args...`
  std::vector<std::string> Argv(const std::string& folder, std::vector<std::string> args,
                                const std::string& gateway = "") {
    std::vector<std::string> argv{PADLOCK_CLI_BIN, "--home", dir_.path() + "/" + folder,
                                  "--gateway",
                                  gateway.empty() ? SharedStack()->gateway_target() : gateway};
    argv.insert(argv.end(), args.begin(), args.end());
    return argv;
  }

  absl::StatusOr<padlock::testing::Subprocess> Start(const std::string& folder,
                                                     std::vector<std::string> args,
                                                     const std::string& gateway = "") {
    return padlock::testing::Subprocess::Start(
        {.argv = Argv(folder, std::move(args), gateway),
         .log_path = absl::StrCat(dir_.path(), "/run-", ++runs_, ".log")});
  }

  CliResult Run(const std::string& folder, std::vector<std::string> args,
                const std::string& gateway = "") {
    absl::StatusOr<padlock::testing::Subprocess> p = Start(folder, std::move(args), gateway);
    EXPECT_TRUE(p.ok()) << p.status();
    if (!p.ok()) return {};
    return Finish(*p);
  }

  // Waits (up to 60 s) for a started command.
  static CliResult Finish(padlock::testing::Subprocess& p) {
    absl::StatusOr<int> status = p.Wait(absl::Seconds(60));
    EXPECT_TRUE(status.ok()) << status.status();
    CliResult r;
    r.output = p.ReadLog();
    if (status.ok() && WIFEXITED(*status)) r.exit_code = WEXITSTATUS(*status);
    return r;
  }

  padlock::testing::TempDir dir_;
  int runs_ = 0;
};

}  // namespace padlock::client::e2e
