// Memory admission end to end: 40 devices that never read, each sent large envelopes
// at the production send rate limit, against a Redis with a small maxmemory. The full inboxes'
// senders are refused RESOURCE_EXHAUSTED with a retry-after; nobody else's send, login or connect
// fails for lack of Redis memory; Redis never reaches maxmemory; and once the readers read, every
// accepted envelope is delivered, exactly once.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <atomic>
#include <iostream>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "services/message_queue/redis_memory_monitor.h"
#include "tests/e2e/gateway/e2e_client.h"
#include "tests/harness/stack.h"
#include "tests/unit/runtime/runtime_test_util.h"

namespace padlock::e2e {
namespace {

using runtime::testing::ScrapeValue;
using testing::PadlockStack;
using testing::WaitFor;
using ::testing::HasSubstr;

constexpr int kSinks = 40;
constexpr size_t kEnvelopeBytes = 60 * 1024;
constexpr uint64_t kMaxMemory = 48ull << 20;

class MemoryAdmissionTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto stack = PadlockStack::Start(
        {.gateways = 1,
         // Registrations and logins relaxed (the test makes 80+ accounts from one address);
         // sends at the production per-device rate limit.
         .gateway_env = {{"PADLOCK_SEND_BURST", "200"}, {"PADLOCK_SEND_RATE", "50"}},
         // Marks and the pressure cap scaled to a 48 MiB Redis (production: 4 MiB inboxes).
         .service_env = {{"PADLOCK_REDIS_MEMORY_POLL", "100ms"},
                         {"PADLOCK_INBOX_PRESSURE_BYTES", "262144"},
                         {"PADLOCK_MEMORY_RETRY_AFTER", "2s"}}});
    ASSERT_TRUE(stack.ok()) << stack.status();
    stack_ = *std::move(stack);
    ASSERT_TRUE(stack_->redis_server()
                    ->Cli({"CONFIG", "SET", "maxmemory", absl::StrCat(kMaxMemory),
                           "maxmemory-policy", "noeviction"})
                    .ok());
    ops_ = std::make_unique<AccountOps>(
        grpc::CreateChannel(stack_->gateway_target(), grpc::InsecureChannelCredentials()));
  }
  void TearDown() override {
    if (HasFailure() && stack_ != nullptr) std::cerr << stack_->Logs().substr(0, 20000);
  }

  Account MustRegister(const std::string& name) {
    auto account = ops_->Register(name);
    EXPECT_TRUE(account.ok()) << account.status();
    return account.ok() ? *std::move(account) : Account{};
  }
  std::string MustToken(const Account& account) {
    auto token = ops_->Login(account, 1);
    EXPECT_TRUE(token.ok()) << token.status();
    return token.ok() ? *token : "";
  }
  uint64_t UsedMemory() {
    auto info = stack_->redis_server()->Cli({"INFO", "memory"});
    if (!info.ok()) return 0;
    absl::StatusOr<message_queue::RedisMemory> memory = message_queue::ParseInfoMemory(*info);
    return memory.ok() ? memory->used_bytes : 0;
  }

  std::unique_ptr<PadlockStack> stack_;
  std::unique_ptr<AccountOps> ops_;
};

TEST_F(MemoryAdmissionTest, FullInboxesAreRefusedWithRetryAfterAndEveryoneElseIsServed) {
  std::vector<Account> sinks, senders;
  for (int i = 0; i < kSinks; ++i) {
    sinks.push_back(MustRegister(absl::StrCat("sink", i)));
    senders.push_back(MustRegister(absl::StrCat("flooder", i)));
  }
  Account alice = MustRegister("alice.mem");
  Account bob = MustRegister("bob.mem");
  ASSERT_FALSE(HasFailure());
  std::vector<std::unique_ptr<DeviceConn>> streams;
  for (const Account& sender : senders) {
    streams.push_back(DeviceConn::Open(ops_->stub(), MustToken(sender), {.revision = 2}));
    ASSERT_TRUE(streams.back()->WaitConnected());
  }
  auto alice_stream = DeviceConn::Open(ops_->stub(), MustToken(alice), {.revision = 2});
  auto bob_stream = DeviceConn::Open(ops_->stub(), MustToken(bob));
  ASSERT_TRUE(alice_stream->WaitConnected() && bob_stream->WaitConnected());

  // Each flooder sends 60 KiB envelopes to its sink, one in flight, as fast as the rate limit
  // lets it (it waits out the rate limit's retry-after, as a client does), until it is refused
  // for lack of room.
  std::vector<std::vector<std::string>> accepted(kSinks);  // message ids per sink
  std::vector<pb::Refusal> room_refusals(kSinks);
  std::atomic<int> other_failures{0};
  std::atomic<int> finished{0};  // flooders done (each writes only its own slots above)
  std::vector<std::thread> flooders;
  const absl::Time deadline = absl::Now() + absl::Seconds(120);
  for (int i = 0; i < kSinks; ++i) {
    flooders.emplace_back([&, i] {
      struct Done {
        std::atomic<int>& finished;
        ~Done() { ++finished; }
      } done{finished};
      for (int n = 0; absl::Now() < deadline; ++n) {
        pb::OutgoingMessage m =
            OneToOne(senders[i], 1, sinks[i], std::string(kEnvelopeBytes, static_cast<char>(n)));
        m.set_message_id(MessageId(absl::StrCat("flood ", i, " ", n)));
        std::optional<pb::SendResult> r = streams[i]->Result(streams[i]->Send(m));
        if (!r.has_value()) {
          ++other_failures;
          return;
        }
        if (r->has_accepted()) {
          accepted[i].push_back(m.message_id());
          continue;
        }
        if (r->has_refused() &&
            r->refused().code() == static_cast<int>(grpc::StatusCode::RESOURCE_EXHAUSTED) &&
            absl::StrContains(r->refused().message(), "send rate limit")) {
          absl::SleepFor(absl::Milliseconds(r->refused().retry_after_ms()));
          --n;  // a message id that was never stored may be used again
          continue;
        }
        if (r->has_refused()) room_refusals[i] = r->refused();
        if (!r->has_refused() ||
            r->refused().code() != static_cast<int>(grpc::StatusCode::RESOURCE_EXHAUSTED)) {
          ++other_failures;
        }
        return;
      }
    });
  }

  // Meanwhile, and after: an unrelated pair keeps talking, and new users sign up and connect.
  int normal_sent = 0;
  std::vector<std::string> normal_failures;
  auto talk = [&](int n) {
    for (int k = 0; k < n; ++k, ++normal_sent) {
      pb::OutgoingMessage m = OneToOne(alice, 1, bob, absl::StrCat("hello ", normal_sent));
      m.set_message_id(MessageId(absl::StrCat("normal ", normal_sent)));
      std::optional<pb::SendResult> r = alice_stream->Result(alice_stream->Send(m));
      if (!r.has_value() || !r->has_accepted()) {
        normal_failures.push_back(r.has_value() ? r->DebugString() : "no result");
      }
    }
  };
  int newcomers = 0;
  auto newcomer = [&] {
    auto account = ops_->Register(absl::StrCat("newcomer", newcomers++));
    if (!account.ok()) return normal_failures.push_back(account.status().ToString());
    auto token = ops_->Login(*account, 1);
    if (!token.ok()) return normal_failures.push_back(token.status().ToString());
    auto stream = DeviceConn::Open(ops_->stub(), *token);
    if (!stream->WaitConnected()) normal_failures.push_back("newcomer's stream did not connect");
  };
  uint64_t peak_memory = 0;
  while (absl::Now() < deadline) {
    talk(5);
    newcomer();
    peak_memory = std::max(peak_memory, UsedMemory());
    if (finished.load() == kSinks) break;
  }
  for (std::thread& t : flooders) t.join();
  talk(20);
  newcomer();
  peak_memory = std::max(peak_memory, UsedMemory());

  size_t total = 0;
  for (int i = 0; i < kSinks; ++i) total += accepted[i].size();
  std::cout << "flooded: " << total << " envelopes of " << kEnvelopeBytes << " bytes accepted for "
            << kSinks << " sinks; peak used_memory " << peak_memory << " of " << kMaxMemory
            << "; normal sends " << normal_sent << ", newcomers " << newcomers << "\n";
  EXPECT_EQ(other_failures.load(), 0);
  for (int i = 0; i < kSinks; ++i) {
    EXPECT_EQ(room_refusals[i].code(), static_cast<int>(grpc::StatusCode::RESOURCE_EXHAUSTED))
        << "sink " << i;
    EXPECT_EQ(room_refusals[i].retry_after_ms(), 2000u) << room_refusals[i].DebugString();
    EXPECT_THAT(room_refusals[i].message(), HasSubstr("storage")) << "sink " << i;
  }
  EXPECT_THAT(normal_failures, ::testing::IsEmpty());
  EXPECT_LT(peak_memory, kMaxMemory) << "Redis reached maxmemory";
  auto errors = stack_->redis_server()->Cli({"INFO", "errorstats"});
  ASSERT_TRUE(errors.ok()) << errors.status();
  EXPECT_THAT(*errors, ::testing::Not(HasSubstr("errorstat_OOM"))) << "Redis refused a write";
  // The flood stopped at the pressure mark (60 %), not at the hard caps.
  EXPECT_GT(total * kEnvelopeBytes, kMaxMemory / 4);
  EXPECT_GT(ScrapeValue(stack_->message_queue_metrics_port(), "padlock_envelopes_refused_total",
                        {{"reason", "memory_pressure"}}),
            0);
  EXPECT_TRUE(bob_stream->WaitEnvelopes(static_cast<size_t>(normal_sent)));

  // The readers read: every accepted envelope arrives, once.
  for (int i = 0; i < kSinks; ++i) {
    auto sink = DeviceConn::Open(ops_->stub(), MustToken(sinks[i]));
    ASSERT_TRUE(sink->WaitConnected());
    ASSERT_TRUE(sink->WaitQueueEmpty(absl::Seconds(60))) << "sink " << i;
    std::vector<std::string> got;
    for (const pb::Envelope& e : sink->Envelopes()) got.push_back(e.message_id());
    EXPECT_EQ(got, accepted[i]) << "sink " << i;
  }
  // Read and acked, the memory is free again: the first flooder's sends are admitted.
  EXPECT_TRUE(WaitFor(
      [&] {
        pb::OutgoingMessage m = OneToOne(senders[0], 1, sinks[0], "after");
        m.set_message_id(MessageId(absl::StrCat("after ", absl::ToUnixNanos(absl::Now()))));
        std::optional<pb::SendResult> r = streams[0]->Result(streams[0]->Send(m));
        return r.has_value() && r->has_accepted();
      },
      absl::Seconds(30)));
}

}  // namespace
}  // namespace padlock::e2e
