// `padlock link` and `link-approve` from one address stay within the login limits: a `link` that
// polled login too often while it waited for approval would trip the per-address limit and give up
// on RESOURCE_EXHAUSTED, and `link-approve` would fail too. Here the gateway runs the production
// rate-limit profile (login and challenge: 30 per address, then one per 2 s) and both commands run
// from one address (127.0.0.1): the waiting `link` stays under the limits and both succeed.
#include <sys/wait.h>

#include <iostream>
#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "tests/harness/harness.h"
#include "tests/harness/stack.h"
#include "tests/unit/runtime/runtime_test_util.h"

namespace padlock::client::e2e {
namespace {

using padlock::testing::PadlockStack;
using padlock::testing::Subprocess;
using padlock::testing::WaitFor;
using padlock::runtime::testing::ScrapeValue;

class LinkLimitsE2eTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto stack = PadlockStack::Start(
        {.gateway_env = {{"PADLOCK_RATE_LIMIT_PROFILE", "production"}}});
    ASSERT_TRUE(stack.ok()) << stack.status();
    stack_ = *std::move(stack);
  }
  void TearDown() override {
    if (HasFailure() && stack_ != nullptr) std::cerr << stack_->Logs().substr(0, 20000);
  }

  absl::StatusOr<Subprocess> Start(const std::string& folder, std::vector<std::string> args) {
    std::vector<std::string> argv{PADLOCK_CLI_BIN, "--home", dir_.path() + "/" + folder,
                                  "--gateway", stack_->gateway_target()};
    argv.insert(argv.end(), args.begin(), args.end());
    return Subprocess::Start(
        {.argv = argv, .log_path = absl::StrCat(dir_.path(), "/run-", ++runs_, ".log")});
  }
  // Runs a command to its end (60 s at most); exit code (-1 when it did not exit) and output.
  std::pair<int, std::string> Run(const std::string& folder, std::vector<std::string> args) {
    absl::StatusOr<Subprocess> p = Start(folder, std::move(args));
    EXPECT_TRUE(p.ok()) << p.status();
    if (!p.ok()) return {-1, ""};
    absl::StatusOr<int> status = p->Wait(absl::Seconds(60));
    EXPECT_TRUE(status.ok()) << status.status();
    const int code = status.ok() && WIFEXITED(*status) ? WEXITSTATUS(*status) : -1;
    return {code, p->ReadLog()};
  }
  double Metric(const std::string& name, const std::map<std::string, std::string>& labels) {
    return ScrapeValue(stack_->gateway_metrics_port(), name, labels);
  }

  std::unique_ptr<PadlockStack> stack_;
  padlock::testing::TempDir dir_;
  int runs_ = 0;
};

TEST_F(LinkLimitsE2eTest, LinkWaitsUnderTheLoginLimitAndApproveFromTheSameAddressWorks) {
  auto [registered, register_out] = Run("alice", {"register", "alice.link"});
  ASSERT_EQ(registered, 0) << register_out;

  absl::StatusOr<Subprocess> link =
      Start("alice-laptop", {"--json", "link", "alice.link", "--timeout", "120"});
  ASSERT_TRUE(link.ok()) << link.status();
  std::string code;
  ASSERT_TRUE(WaitFor(
      [&] {
        const std::string log = link->ReadLog();
        const size_t at = log.find("\"link_code\":\"");
        if (at == std::string::npos) return false;
        const size_t end = log.find('"', at + 13);
        if (end == std::string::npos) return false;
        code = log.substr(at + 13, end - at - 13);
        return true;
      },
      absl::Seconds(30)))
      << link->ReadLog();

  // Let it wait unapproved for 6 login attempts: the old loop made ~90 in that time (15 a
  // second) and spent the address's burst of 30 within two seconds.
  const absl::Time waiting_since = absl::Now();
  ASSERT_TRUE(WaitFor(
      [&] { return Metric("padlock_gateway_logins_total", {{"result", "failed"}}) >= 6; },
      absl::Seconds(60)))
      << link->ReadLog();
  const double waited_s = absl::ToDoubleSeconds(absl::Now() - waiting_since);
  const double failed = Metric("padlock_gateway_logins_total", {{"result", "failed"}});
  EXPECT_EQ(Metric("padlock_gateway_address_limited_total", {{"limit", "login"}}), 0);
  EXPECT_EQ(Metric("padlock_gateway_address_limited_total", {{"limit", "challenge"}}), 0);
  // One attempt per 2 s (the first at once): fewer than one a second, whatever the machine.
  EXPECT_LE(failed, waited_s + 2) << "waited " << waited_s << " s";

  auto [approved, approve_out] = Run("alice", {"link-approve", code});
  ASSERT_EQ(approved, 0) << approve_out;
  absl::StatusOr<int> linked = link->Wait(absl::Seconds(60));
  ASSERT_TRUE(linked.ok()) << linked.status() << link->ReadLog();
  ASSERT_TRUE(WIFEXITED(*linked) && WEXITSTATUS(*linked) == 0) << link->ReadLog();
  EXPECT_NE(link->ReadLog().find("\"device\":2"), std::string::npos) << link->ReadLog();
  EXPECT_EQ(Metric("padlock_gateway_address_limited_total", {{"limit", "login"}}), 0);
  EXPECT_EQ(Metric("padlock_gateway_address_limited_total", {{"limit", "challenge"}}), 0);
  std::cout << "link under the production login limit: " << failed
            << " failed login attempts while waiting " << waited_s
            << " s, then approved and linked as device 2; login/challenge refusals: 0"
            << std::endl;
}

}  // namespace
}  // namespace padlock::client::e2e
