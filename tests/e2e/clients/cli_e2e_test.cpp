// The `padlock` binary end to end: register, send, listen (human and --json), history, devices,
// safety-number, status, and its exit codes for an unknown user and an unreachable gateway.
#include <sys/wait.h>

#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "clients/sdk/messenger.h"
#include "gtest/gtest.h"
#include "tests/e2e/clients/cli_fixture.h"
#include "tests/e2e/clients/e2e_stack.h"
#include "tests/harness/harness.h"

namespace padlock::client::e2e {
namespace {

using Result = CliResult;

class CliE2eTest : public CliFixture {};

TEST_F(CliE2eTest, RegisterSendListenHistory) {
  const std::string alice = UniqueUser("cli-alice");
  const std::string bob = UniqueUser("cli-bob");
  Result r = Run(alice, {"register", alice});
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_TRUE(Contains(r.output, "registered " + alice)) << r.output;
  ASSERT_EQ(Run(bob, {"register", bob}).exit_code, 0);

  r = Run(alice, {"send", bob, "hello", "from", "the", "cli"});
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_TRUE(Contains(r.output, "sent to " + bob)) << r.output;
  ASSERT_EQ(Run(alice, {"send", bob, "second line"}).exit_code, 0);

  r = Run(bob, {"--json", "listen", "--count", "2", "--timeout", "30"});
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const size_t first = r.output.find("\"text\":\"hello from the cli\"");
  const size_t second = r.output.find("\"text\":\"second line\"");
  ASSERT_NE(first, std::string::npos) << r.output;
  ASSERT_NE(second, std::string::npos) << r.output;
  EXPECT_LT(first, second);
  EXPECT_TRUE(Contains(r.output, "\"from\":\"" + alice + "\"")) << r.output;

  r = Run(bob, {"history", alice});
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_TRUE(Contains(r.output, alice + ": hello from the cli")) << r.output;

  // Alice's delivery receipts arrive when she listens.
  r = Run(alice, {"listen", "--timeout", "3"});
  EXPECT_EQ(r.exit_code, 0) << r.output;
  r = Run(alice, {"history", bob});
  EXPECT_TRUE(Contains(r.output, "you → " + bob + ": second line  (delivered)")) << r.output;

  // Bob reads them: a read receipt raises the status once more on alice's device.
  r = Run(bob, {"read", alice});
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_TRUE(Contains(r.output, "marked 2 message(s)")) << r.output;
  ASSERT_EQ(Run(alice, {"listen", "--timeout", "3"}).exit_code, 0);
  r = Run(alice, {"history", bob});
  EXPECT_TRUE(Contains(r.output, "you → " + bob + ": second line  (read)")) << r.output;

  r = Run(bob, {"devices"});
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_TRUE(Contains(r.output, "device 1 (primary) (this device)")) << r.output;

  Result a = Run(alice, {"--json", "safety-number", bob});
  Result b = Run(bob, {"--json", "safety-number", alice});
  ASSERT_EQ(a.exit_code, 0) << a.output;
  ASSERT_EQ(b.exit_code, 0) << b.output;
  const size_t at = a.output.find("\"safety_number\":\"");
  ASSERT_NE(at, std::string::npos);
  const std::string digits = a.output.substr(at + 17, 60);
  EXPECT_TRUE(Contains(b.output, digits)) << a.output << b.output;  // both sides agree

  r = Run(alice, {"status"});
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_TRUE(Contains(r.output, "reachable, logged in")) << r.output;
}

TEST_F(CliE2eTest, ChangedSecurityCodeHoldsTheSendUntilAccepted) {
  const std::string alice = UniqueUser("cli-alice");
  const std::string bob = UniqueUser("cli-bob");
  ASSERT_EQ(Run(alice, {"register", alice}).exit_code, 0);
  ASSERT_EQ(Run(bob, {"register", bob}).exit_code, 0);
  ASSERT_EQ(Run(alice, {"send", bob, "before"}).exit_code, 0);
  ASSERT_EQ(Run(bob, {"listen", "--count", "1", "--timeout", "30"}).exit_code, 0);

  // Bob reinstalls: a new identity key for his primary, in a new folder (SDK; the CLI has no
  // command for it).
  {
    MessengerOptions old_install;
    old_install.home = dir_.path() + "/" + bob;
    old_install.gateway.target = SharedStack()->gateway_target();
    absl::StatusOr<std::unique_ptr<Messenger>> opened = Messenger::Open(old_install);
    ASSERT_TRUE(opened.ok()) << opened.status();
    MessengerOptions fresh = old_install;
    fresh.home = dir_.path() + "/" + bob + "-new";
    absl::StatusOr<std::unique_ptr<Messenger>> changed = (*opened)->ChangeIdentity(fresh);
    ASSERT_TRUE(changed.ok()) << changed.status();
  }

  // Alice's send is held, with what to do; nothing reaches bob's new install.
  Result r = Run(alice, {"send", bob, "held until accepted"});
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_TRUE(Contains(r.output, "security code with " + bob + " changed")) << r.output;
  EXPECT_TRUE(Contains(r.output, "padlock accept-identity " + bob)) << r.output;
  r = Run(bob + "-new", {"--json", "listen", "--timeout", "2"});
  EXPECT_FALSE(Contains(r.output, "held until accepted")) << r.output;

  // Accepting sends what was held; bob's new install reads it.
  r = Run(alice, {"accept-identity", bob});
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_TRUE(Contains(r.output, "now trusting the current keys of " + bob)) << r.output;
  EXPECT_TRUE(Contains(r.output, "sent 1 queued message(s)")) << r.output;
  r = Run(bob + "-new", {"--json", "listen", "--count", "1", "--timeout", "30"});
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_TRUE(Contains(r.output, "\"text\":\"held until accepted\"")) << r.output;
}

TEST_F(CliE2eTest, ClearErrorsAndExitCodes) {
  const std::string alice = UniqueUser("cli-alice");
  ASSERT_EQ(Run(alice, {"register", alice}).exit_code, 0);
  Result r = Run(alice, {"send", "no-such-user", "hi"});
  EXPECT_EQ(r.exit_code, 5) << r.output;
  EXPECT_TRUE(Contains(r.output, "no-such-user is unknown")) << r.output;

  r = Run(alice, {"send", "someone-else", "x"},
          absl::StrCat("127.0.0.1:", padlock::testing::FreeTcpPort()));
  EXPECT_EQ(r.exit_code, 3) << r.output;
  EXPECT_TRUE(Contains(r.output, "cannot reach the gateway")) << r.output;

  r = Run(alice, {"register", alice});
  EXPECT_NE(r.exit_code, 0);
  EXPECT_TRUE(Contains(r.output, "already registered")) << r.output;

  r = Run(alice, {"frobnicate"});
  EXPECT_EQ(r.exit_code, 2) << r.output;

  // delete-account needs an explicit confirmation, then the server forgets the account.
  EXPECT_EQ(Run(alice, {"delete-account"}).exit_code, 2);
  r = Run(alice, {"delete-account", "--yes", "yes"});
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_TRUE(Contains(r.output, "deleted account " + alice)) << r.output;
  const std::string bob = UniqueUser("cli-bob");
  ASSERT_EQ(Run(bob, {"register", bob}).exit_code, 0);
  r = Run(bob, {"send", alice, "are you gone?"});
  EXPECT_EQ(r.exit_code, 5) << r.output;  // unknown user now
}

}  // namespace
}  // namespace padlock::client::e2e
