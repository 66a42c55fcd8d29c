// The `padlock` binary end to end: register, send, listen (human and --json), history (also
// --json with hostile text), devices, safety-number, status, and its exit codes for an unknown
// user and an unreachable gateway.
#include <sys/wait.h>

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "clients/sdk/messenger.h"
#include "google/protobuf/struct.pb.h"
#include "google/protobuf/util/json_util.h"
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

// Every line of `output` parsed by protobuf's JSON parser (it refuses invalid UTF-8); a test
// failure for a line that is not valid JSON or holds a raw control character (RFC 8259 forbids
// them inside strings; this parser lets them through, so they are checked here).
std::vector<google::protobuf::Struct> ParseJsonLines(const std::string& output) {
  std::vector<google::protobuf::Struct> lines;
  const std::vector<std::string> split = absl::StrSplit(output, '\n', absl::SkipEmpty());
  for (const std::string& line : split) {
    for (unsigned char c : line) EXPECT_GE(c, 0x20) << "raw control character in: " << line;
    google::protobuf::Struct parsed;
    const auto status = google::protobuf::util::JsonStringToMessage(line, &parsed);
    EXPECT_TRUE(status.ok()) << status.ToString() << " in: " << line;
    lines.push_back(std::move(parsed));
  }
  return lines;
}

// A peer chooses the bytes of its text: invalid UTF-8 and control characters must not break the
// CLI's --json output (each invalid byte becomes U+FFFD, controls are escaped).
TEST_F(CliE2eTest, JsonHistoryStaysValidJsonWhateverThePeerSends) {
  const std::string alice = UniqueUser("cli-alice");
  const std::string bob = UniqueUser("cli-bob");
  ASSERT_EQ(Run(alice, {"register", alice}).exit_code, 0);
  const std::string text = std::string("bad \xFF\xC3 utf8, ctl \x01\x1b\x7f nul \0 end", 30);
  const std::string shown =
      "bad \xEF\xBF\xBD\xEF\xBF\xBD utf8, ctl \x01\x1b\x7f nul " + std::string(1, '\0') + " end";
  {
    MessengerOptions options;
    options.home = dir_.path() + "/" + bob;
    options.gateway.target = SharedStack()->gateway_target();
    absl::StatusOr<std::unique_ptr<Messenger>> m = Messenger::Open(options);
    ASSERT_TRUE(m.ok()) << m.status();
    ASSERT_TRUE((*m)->Register(bob).ok());
    const absl::Status connected = (*m)->Connect(absl::Seconds(20));
    ASSERT_TRUE(connected.ok()) << connected;
    absl::StatusOr<std::string> sent = (*m)->SendText(alice, text, absl::Seconds(30));
    ASSERT_TRUE(sent.ok()) << sent.status();
  }

  Result r = Run(alice, {"--json", "listen", "--count", "1", "--timeout", "30"});
  ASSERT_EQ(r.exit_code, 0) << r.output;
  std::vector<google::protobuf::Struct> lines = ParseJsonLines(r.output);
  int messages = 0;  // besides the message: queue_empty, the delivery receipt going out
  for (const google::protobuf::Struct& line : lines) {
    const auto event = line.fields().find("event");
    if (event == line.fields().end() || event->second.string_value() != "message") continue;
    ++messages;
    EXPECT_EQ(line.fields().at("text").string_value(), shown) << r.output;
  }
  EXPECT_EQ(messages, 1) << r.output;

  r = Run(alice, {"--json", "history", bob});
  ASSERT_EQ(r.exit_code, 0) << r.output;
  lines = ParseJsonLines(r.output);
  ASSERT_EQ(lines.size(), 1u) << r.output;
  EXPECT_EQ(lines[0].fields().at("from").string_value(), bob);
  EXPECT_EQ(lines[0].fields().at("text").string_value(), shown) << r.output;
  EXPECT_FALSE(lines[0].fields().at("outgoing").bool_value());
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
