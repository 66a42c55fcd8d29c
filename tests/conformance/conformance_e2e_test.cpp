// The behaviour part of the conformance suite in CI: padlock-conformance (the program a
// third-party client author runs) against a whole stack started by the test harness. It must
// print no FAIL and exit 0. Run twice: the default e2e stack (plaintext, test limits), and a
// gateway with TLS and the production rate-limit profile — the way a deployment serves it, with
// the program's --ca-file. And once against a stack configured against the documented limits,
// where it must say FAIL.
#include <sys/wait.h>

#include <cstdlib>
#include <iostream>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "tests/harness/harness.h"
#include "tests/harness/stack.h"

namespace padlock::conformance {
namespace {

using padlock::testing::PadlockStack;
using padlock::testing::Subprocess;
using padlock::testing::TempDir;

class ConformanceE2eTest : public ::testing::Test {
 protected:
  void TearDown() override {
    if (HasFailure() && stack_ != nullptr) std::cerr << stack_->Logs().substr(0, 20000);
  }

  // Runs padlock-conformance against the stack's gateway; its output. `exit_code`: what the
  // program must exit with.
  std::string RunConformance(const std::vector<std::string>& extra, int exit_code = 0) {
    std::vector<std::string> argv{PADLOCK_CONFORMANCE_BIN, "--gateway",
                                  stack_->gateway_target()};
    argv.insert(argv.end(), extra.begin(), extra.end());
    absl::StatusOr<Subprocess> p =
        Subprocess::Start({.argv = argv, .log_path = dir_.path() + "/conformance.log"});
    EXPECT_TRUE(p.ok()) << p.status();
    if (!p.ok()) return "";
    absl::StatusOr<int> status = p->Wait(absl::Seconds(240));
    const std::string output = p->ReadLog();
    std::cout << output;
    EXPECT_TRUE(status.ok()) << status.status();
    if (status.ok()) {
      EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == exit_code)
          << "exit status " << *status;
    }
    return output;
  }

  TempDir dir_;
  std::unique_ptr<PadlockStack> stack_;
};

void ExpectEveryCheckPassed(const std::string& output) {
  EXPECT_EQ(output.find("FAIL"), std::string::npos);
  EXPECT_NE(output.find("all checks passed"), std::string::npos);
  // The program ran its checks (a run that stopped early would print few "ok" lines).
  size_t oks = 0;
  for (size_t at = output.find("\nok "); at != std::string::npos;
       at = output.find("\nok ", at + 1)) {
    ++oks;
  }
  EXPECT_GE(oks, 25u);
}

TEST_F(ConformanceE2eTest, TheStackConformsToTheDocumentedContract) {
  auto stack = PadlockStack::Start();
  ASSERT_TRUE(stack.ok()) << stack.status();
  stack_ = *std::move(stack);
  ExpectEveryCheckPassed(RunConformance({}));
}

TEST_F(ConformanceE2eTest, ConformsOverTlsWithProductionLimits) {
  const std::string cert = dir_.path() + "/cert.pem";
  const std::string key = dir_.path() + "/key.pem";
  const std::string command = absl::StrCat(
      "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 1 "
      "-subj /CN=localhost -addext subjectAltName=IP:127.0.0.1,DNS:localhost -keyout ",
      key, " -out ", cert, " 2>/dev/null");
  ASSERT_EQ(std::system(command.c_str()), 0);
  auto stack = PadlockStack::Start({.gateway_env = {{"PADLOCK_TLS", "on"},
                                                    {"PADLOCK_TLS_CERT", cert},
                                                    {"PADLOCK_TLS_KEY", key},
                                                    {"PADLOCK_RATE_LIMIT_PROFILE", "production"}}});
  ASSERT_TRUE(stack.ok()) << stack.status();
  stack_ = *std::move(stack);
  ExpectEveryCheckPassed(RunConformance({"--ca-file", cert}));
}

// The suite can fail: a deployment whose message-queue takes per-device ciphertexts up to 128 KiB
// disagrees with PROTOCOL.md's 64 KiB, and exactly that check says FAIL.
TEST_F(ConformanceE2eTest, ReportsAServerThatDisagreesWithTheDocumentedLimit) {
  auto stack = PadlockStack::Start({.service_env = {{"PADLOCK_MAX_CIPHERTEXT_BYTES", "131072"}}});
  ASSERT_TRUE(stack.ok()) << stack.status();
  stack_ = *std::move(stack);
  const std::string output = RunConformance({}, /*exit_code=*/1);
  EXPECT_NE(output.find("FAIL Send: a per-device ciphertext over 64 KiB is refused "
                        "INVALID_ARGUMENT"),
            std::string::npos);
  EXPECT_NE(output.find("1 check(s) failed"), std::string::npos);
}

}  // namespace
}  // namespace padlock::conformance
