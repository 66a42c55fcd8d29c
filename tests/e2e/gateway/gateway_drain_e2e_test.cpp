// SIGTERM on a gateway holding many streams: every connected stream must get Closing{REASON_DRAIN}
// as its last frame and then end OK; a stream still starting up may instead end UNAVAILABLE
// ("draining"), never with a transport fault. Real binaries (tests/harness/stack.h), one gateway.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <csignal>
#include <iostream>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "tests/e2e/gateway/e2e_client.h"
#include "tests/harness/stack.h"

namespace padlock::e2e {
namespace {

using testing::PadlockStack;

constexpr int kStreams = 100;

struct Outcome {
  std::map<std::string, int> by_status;  // "OK", "UNAVAILABLE", ...
  int closing_last = 0;                  // Closing{DRAIN} was the last frame
  int not_ended = 0;
  std::string example;  // one stream that did not end OK after Closing
};

std::string CodeName(grpc::StatusCode code) {
  switch (code) {
    case grpc::StatusCode::OK: return "OK";
    case grpc::StatusCode::CANCELLED: return "CANCELLED";
    case grpc::StatusCode::UNKNOWN: return "UNKNOWN";
    case grpc::StatusCode::DEADLINE_EXCEEDED: return "DEADLINE_EXCEEDED";
    case grpc::StatusCode::RESOURCE_EXHAUSTED: return "RESOURCE_EXHAUSTED";
    case grpc::StatusCode::UNAVAILABLE: return "UNAVAILABLE";
    case grpc::StatusCode::INTERNAL: return "INTERNAL";
    default: return absl::StrCat("code ", static_cast<int>(code));
  }
}

Outcome Collect(const std::vector<std::unique_ptr<DeviceConn>>& conns) {
  Outcome out;
  for (const auto& conn : conns) {
    std::optional<grpc::Status> ended = conn->WaitEnded(absl::Seconds(30));
    if (!ended.has_value()) {
      ++out.not_ended;
      continue;
    }
    ++out.by_status[CodeName(ended->error_code())];
    const std::vector<pb::ServerFrame> frames = conn->Frames();
    const bool closing_last = !frames.empty() && frames.back().has_closing() &&
                              frames.back().closing().reason() == pb::Closing::REASON_DRAIN;
    if (closing_last) ++out.closing_last;
    if ((!closing_last || !ended->ok()) && out.example.empty()) {
      out.example = absl::StrCat(CodeName(ended->error_code()), " \"", ended->error_message(),
                                 "\" after ", frames.size(), " frames, last ",
                                 frames.empty() ? "none" : frames.back().ShortDebugString());
    }
  }
  return out;
}

void Print(const char* what, const Outcome& out) {
  std::cout << what << ":";
  for (const auto& [status, count] : out.by_status) std::cout << " " << status << "=" << count;
  std::cout << " closing_last=" << out.closing_last << " not_ended=" << out.not_ended
            << std::endl;
}

class GatewayDrainE2eTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto stack = PadlockStack::Start({.gateways = 1});
    ASSERT_TRUE(stack.ok()) << stack.status();
    stack_ = *std::move(stack);
    ops_ = std::make_unique<AccountOps>(
        grpc::CreateChannel(stack_->gateway_target(), stack_->gateway_credentials()));
    for (int i = 0; i < kStreams; ++i) {
      auto account = ops_->Register(absl::StrCat("drain.", i));
      ASSERT_TRUE(account.ok()) << account.status();
      accounts_.push_back(*std::move(account));
    }
  }
  void TearDown() override {
    if (HasFailure() && stack_ != nullptr) std::cerr << stack_->Logs().substr(0, 30000);
  }

  std::unique_ptr<PadlockStack> stack_;
  std::unique_ptr<AccountOps> ops_;
  std::vector<Account> accounts_;
};

TEST_F(GatewayDrainE2eTest, EveryConnectedStreamGetsClosingThenOk) {
  std::vector<std::unique_ptr<DeviceConn>> conns;
  for (size_t i = 0; i < accounts_.size(); ++i) {
    // Half on stream revision 1, half on 2 (outcomes riding on other frames).
    conns.push_back(DeviceConn::Open(ops_->stub(), accounts_[i].primary_token,
                                     {.auto_ack = true, .revision = i % 2 == 0 ? 1u : 2u}));
  }
  for (auto& conn : conns) ASSERT_TRUE(conn->WaitConnected().has_value());
  for (auto& conn : conns) ASSERT_TRUE(conn->WaitQueueEmpty());
  // Traffic while draining: every device sends to the next one just before the signal, so
  // sends are in flight and deliveries and acks are on the wire when the drain starts.
  for (int round = 0; round < 5; ++round) {
    for (int i = 0; i < kStreams; ++i) {
      conns[i]->Send(OneToOne(accounts_[i], 1, accounts_[(i + 1) % kStreams],
                              absl::StrCat("drain-", round, "-", i)));
    }
  }
  auto stopped = stack_->StopGateway(0, SIGTERM);
  ASSERT_TRUE(stopped.ok()) << stopped.status();
  EXPECT_TRUE(WIFEXITED(*stopped) && WEXITSTATUS(*stopped) == 0) << *stopped;
  Outcome out = Collect(conns);
  Print("drain of 100 connected streams", out);
  EXPECT_EQ(out.not_ended, 0);
  EXPECT_EQ(out.by_status["OK"], kStreams) << out.example;
  EXPECT_EQ(out.closing_last, kStreams) << out.example;
}

// Streams opened right before SIGTERM, some still starting up (token checked, presence not yet
// told): each ends either like a connected one (Closing, OK) or UNAVAILABLE "draining"; none
// with a transport fault (INTERNAL, CANCELLED, UNKNOWN).
TEST_F(GatewayDrainE2eTest, StreamsStillStartingEndCleanly) {
  std::vector<std::unique_ptr<DeviceConn>> conns;
  for (const Account& account : accounts_) {
    conns.push_back(DeviceConn::Open(ops_->stub(), account.primary_token));
  }
  auto stopped = stack_->StopGateway(0, SIGTERM);
  ASSERT_TRUE(stopped.ok()) << stopped.status();
  EXPECT_TRUE(WIFEXITED(*stopped) && WEXITSTATUS(*stopped) == 0) << *stopped;
  Outcome out = Collect(conns);
  Print("drain of 100 starting streams", out);
  EXPECT_EQ(out.not_ended, 0);
  EXPECT_EQ(out.by_status["OK"] + out.by_status["UNAVAILABLE"], kStreams) << out.example;
  EXPECT_EQ(out.closing_last, out.by_status["OK"]) << out.example;
}

}  // namespace
}  // namespace padlock::e2e
