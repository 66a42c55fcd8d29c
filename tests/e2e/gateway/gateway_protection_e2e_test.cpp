// The gateway's protections end to end, against the real binaries: TLS with the configured
// certificate, each rate limit tripping with its status, oversize sends refused while the stream
// lives on, the stream cap, and keepalive dropping a client that went silent.
#include <grpcpp/generic/generic_stub.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <functional>
#include <iostream>
#include <mutex>
#include <chrono>
#include <cstdlib>
#include <map>
#include <thread>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_split.h"
#include "absl/time/time.h"
#include "tests/e2e/gateway/e2e_client.h"
#include "tests/harness/stack.h"
#include "tests/harness/tcp_proxy.h"
#include "services/common/runtime/upstream_status.h"
#include "tests/unit/runtime/runtime_test_util.h"

namespace padlock::e2e {
namespace {

using testing::PadlockStack;
using testing::WaitFor;
using runtime::testing::ScrapeValue;
using ::testing::HasSubstr;

// Waits for one completion on `cq` (tags are unique per call below); false on timeout or !ok.
bool Next(grpc::CompletionQueue& cq, absl::Duration timeout = absl::Seconds(20)) {
  void* tag = nullptr;
  bool ok = false;
  const auto status = cq.AsyncNext(&tag, &ok, absl::ToChronoTime(absl::Now() + timeout));
  return status == grpc::CompletionQueue::GOT_EVENT && ok;
}

grpc::ByteBuffer Bytes(const std::string& bytes) {
  grpc::Slice slice(bytes);
  return grpc::ByteBuffer(&slice, 1);
}

// A unary call whose request is `bytes` as they are (no protobuf encoding).
grpc::Status RawUnary(const std::shared_ptr<grpc::Channel>& channel, const std::string& method,
                      const std::string& bytes) {
  grpc::GenericStub generic(channel);
  grpc::ClientContext context;
  context.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(20)));
  grpc::CompletionQueue cq;
  grpc::ByteBuffer response;
  grpc::Status status;
  auto call = generic.PrepareUnaryCall(&context, method, Bytes(bytes), &cq);
  call->StartCall();
  call->Finish(&response, &status, reinterpret_cast<void*>(1));
  if (!Next(cq)) status = grpc::Status(grpc::StatusCode::DEADLINE_EXCEEDED, "test: no answer");
  cq.Shutdown();
  void* tag;
  bool ok;
  while (cq.Next(&tag, &ok)) {
  }
  return status;
}

// A 10-byte varint that never ends: no protobuf parser accepts it.
const std::string kGarbage("\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff", 11);
// GetChallengeRequest{device: {user_id: "\xff\xfe"}}: a string field that is not UTF-8.
const std::string kInvalidUtf8Challenge("\x0a\x04\x0a\x02\xff\xfe", 6);

std::string MustToken(AccountOps& ops, const Account& account, uint32_t device) {
  auto token = ops.Login(account, device);
  EXPECT_TRUE(token.ok()) << token.status();
  return token.ok() ? *token : "";
}

// One gateway with small limits (production profile, limits set explicitly).
class GatewayLimitsTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    auto stack = PadlockStack::Start(
        {.gateways = 1,
         .gateway_env = {{"PADLOCK_RATE_LIMIT_PROFILE", "production"},
                         {"PADLOCK_REGISTER_BURST", "1000"},
                         {"PADLOCK_LOGIN_BURST", "1000"},
                         {"PADLOCK_SEND_BURST", "3"},
                         {"PADLOCK_SEND_RATE", "1"},
                         {"PADLOCK_MAX_SEND_BYTES", "4096"},
                         {"PADLOCK_MAX_STREAMS", "3"},
                         // The half-open flood below comes from 127.0.0.2; every other
                         // client of these tests from 127.0.0.1.
                         {"PADLOCK_MAX_CONNECTIONS_PER_ADDRESS", "200"},
                         {"PADLOCK_HANDSHAKE_TIMEOUT", "3s"},
                         // Short enough for the silent-client test to see a drop within
                         // seconds, long enough that a loaded machine's live clients (every
                         // other test here) always answer a ping in time.
                         {"PADLOCK_KEEPALIVE_TIME", "1s"},
                         {"PADLOCK_KEEPALIVE_TIMEOUT", "2s"}}});
    ASSERT_TRUE(stack.ok()) << stack.status();
    stack_ = stack->release();
  }
  static void TearDownTestSuite() {
    delete stack_;
    stack_ = nullptr;
  }
  void SetUp() override {
    ASSERT_NE(stack_, nullptr);
    ops_ = std::make_unique<AccountOps>(
        grpc::CreateChannel(stack_->gateway_target(), grpc::InsecureChannelCredentials()));
    // Streams of the previous test are gone before this one starts.
    ASSERT_TRUE(WaitFor([] { return Streams() == 0; }, absl::Seconds(10)));
  }
  void TearDown() override {
    if (HasFailure()) std::cerr << stack_->Logs().substr(0, 20000);
  }
  static double Streams() {
    return ScrapeValue(stack_->gateway_metrics_port(), "padlock_gateway_streams", {});
  }
  Account MustRegister(const std::string& name) {
    auto account = ops_->Register(name);
    EXPECT_TRUE(account.ok()) << account.status();
    return account.ok() ? *std::move(account) : Account{};
  }

  static PadlockStack* stack_;
  std::unique_ptr<AccountOps> ops_;
};
PadlockStack* GatewayLimitsTest::stack_ = nullptr;

TEST_F(GatewayLimitsTest, OversizeSendIsRefusedAndTheStreamLivesOn) {
  Account alice = MustRegister("alice.oversize");
  Account bob = MustRegister("bob.oversize");
  auto a1 = DeviceConn::Open(ops_->stub(), MustToken(*ops_, alice, 1));
  ASSERT_TRUE(a1->WaitConnected());
  auto big = a1->Result(a1->Send(OneToOne(alice, 1, bob, std::string(5000, 'x'))));
  ASSERT_TRUE(big.has_value());
  ASSERT_TRUE(big->has_refused()) << big->DebugString();
  EXPECT_EQ(big->refused().code(), static_cast<int>(grpc::StatusCode::INVALID_ARGUMENT));
  EXPECT_NE(big->refused().message().find("exceeds the limit of 4096"), std::string::npos);
  auto small = a1->Result(a1->Send(OneToOne(alice, 1, bob, "small.oversize")));
  ASSERT_TRUE(small.has_value());
  EXPECT_TRUE(small->has_accepted()) << small->DebugString();
  EXPECT_FALSE(a1->ended());
}

// VmRSS of `pid` in bytes (0 when unreadable).
double RssBytes(pid_t pid) {
  std::ifstream status(absl::StrCat("/proc/", pid, "/status"));
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind("VmRSS:", 0) == 0) return std::stod(line.substr(6)) * 1024;
  }
  return 0;
}

// One address holding thousands of TCP connections that never speak HTTP/2. Beyond
// the per-address cap they are closed at once, within it at the handshake deadline; a client
// from another address is served during and after; the memory goes back. PADLOCK_FLOOD_COUNT
// sets the number (default 2 000; the 25 000 of the issue by hand, see docs/GATEWAY.md).
TEST_F(GatewayLimitsTest, HalfOpenFloodFromOneAddressLeavesOthersServed) {
  const char* env_count = std::getenv("PADLOCK_FLOOD_COUNT");
  const int count = env_count != nullptr ? std::atoi(env_count) : 2000;
  const int port = stack_->gateway_port();
  const int metrics = stack_->gateway_metrics_port();
  auto refused = [&] {
    return ScrapeValue(metrics, "padlock_connections_refused_total", {{"reason", "per_address"}});
  };
  const double refused_before = refused();
  auto accepted = [&] { return ScrapeValue(metrics, "padlock_connections_accepted_total", {}); };
  const double accepted_before = accepted();
  const double open_before = ScrapeValue(metrics, "padlock_connections_open", {});
  const double rss_before = RssBytes(stack_->gateway_pid());
  padlock::testing::TempDir dir;
  padlock::testing::Subprocess::Options options;
  options.argv = {"python3", HALF_OPEN_FLOOD_PATH, "--port", std::to_string(port), "--count",
                  std::to_string(count), "--source", "127.0.0.2", "--hold", "170"};
  options.log_path = dir.path() + "/flood.log";
  auto flood = padlock::testing::Subprocess::Start(std::move(options));
  ASSERT_TRUE(flood.ok()) << flood.status();
  // Every flood connection is either refused (beyond 200 open from 127.0.0.2) or admitted (and
  // closed at the 3 s handshake deadline, which makes room for later ones of a slow flood).
  auto handled = [&] { return refused() - refused_before + accepted() - accepted_before; };
  ASSERT_TRUE(WaitFor([&] { return handled() >= count / 2; }, absl::Seconds(120)))
      << handled() << " handled; " << flood->ReadLog();
  // During: a client from another address registers and logs in as usual.
  Account alice = MustRegister("alice.flood");
  EXPECT_FALSE(MustToken(*ops_, alice, 1).empty());
  ASSERT_TRUE(WaitFor([&] { return handled() >= count; }, absl::Seconds(120)))
      << handled() << " handled; " << flood->ReadLog();
  const double rss_during = RssBytes(stack_->gateway_pid());
  const double open_during = ScrapeValue(metrics, "padlock_connections_open", {});
  EXPECT_LE(open_during, open_before + 200 + 2);
  EXPECT_GE(refused() - refused_before, std::min(count - 200, count / 2));
  // The admitted 200 never spoke: the handshake deadline closes them, the flooder then exits.
  auto exited = flood->Wait(absl::Seconds(180));
  ASSERT_TRUE(exited.ok()) << exited.status();
  const std::string report = flood->ReadLog();
  EXPECT_THAT(report, HasSubstr(absl::StrCat("\"opened\": ", count, ",")));
  EXPECT_THAT(report, HasSubstr(absl::StrCat("\"closed_by_server\": ", count, ",")));
  ASSERT_TRUE(WaitFor(
      [&] { return ScrapeValue(metrics, "padlock_connections_open", {}) <= open_before + 1; },
      absl::Seconds(10)));
  // After: new connections are accepted and served. A channel of its own: ops_'s idle
  // connection may have been dropped by this suite's 1 s keepalive meanwhile (nobody polls an
  // idle synchronous channel to answer the pings), and a shared subchannel would reuse it.
  grpc::ChannelArguments args;
  args.SetInt("padlock.test.fresh_connection", 1);
  auto fresh = grpc::CreateCustomChannel(stack_->gateway_target(),
                                         grpc::InsecureChannelCredentials(), args);
  AccountOps after(fresh);
  const auto challenge = after.Challenge("alice.flood", 1);
  EXPECT_TRUE(challenge.ok()) << challenge.status();
  const double rss_after = RssBytes(stack_->gateway_pid());
  std::cerr << "half-open flood: " << count << " connections from 127.0.0.2; " << report
            << "gateway connections open during " << open_during << "; RSS before " << rss_before / 1048576 << " MiB, during "
            << rss_during / 1048576 << " MiB, after " << rss_after / 1048576 << " MiB\n";
  // "Near baseline": what the 200 admitted connections held is back, within allocator slack.
  EXPECT_LT(rss_after, rss_before + 16.0 * 1048576);
}

// gRPC alone answers an unparsable unary request UNIMPLEMENTED with an empty message.
TEST_F(GatewayLimitsTest, GarbageUnaryRequestIsInvalidArgumentWithAReason) {
  auto channel = grpc::CreateChannel(stack_->gateway_target(), grpc::InsecureChannelCredentials());
  for (const std::string& bytes : {kGarbage, kInvalidUtf8Challenge}) {
    const grpc::Status status = RawUnary(channel, "/padlock.v1.Gateway/GetChallenge", bytes);
    EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << status.error_message();
    EXPECT_THAT(status.error_message(), HasSubstr("malformed request"));
    EXPECT_THAT(status.error_message(), HasSubstr("/padlock.v1.Gateway/GetChallenge"));
  }
  // protobuf's complaint about the invalid UTF-8 is a JSON line of the gateway's, not plain text.
  ASSERT_TRUE(WaitFor(
      [] { return stack_->Logs().find("\"source\":\"protobuf\"") != std::string::npos; },
      absl::Seconds(10)));
  EXPECT_THAT(stack_->Logs(), ::testing::Not(HasSubstr("[libprotobuf")));
}

// A frame gRPC cannot parse ends the stream INVALID_ARGUMENT, not OK: a buggy client told OK
// would reconnect and send it again forever.
TEST_F(GatewayLimitsTest, GarbageFrameOnConnectEndsTheStreamWithInvalidArgument) {
  Account alice = MustRegister("alice.garbage");
  auto channel = grpc::CreateChannel(stack_->gateway_target(), grpc::InsecureChannelCredentials());
  grpc::GenericStub generic(channel);
  grpc::ClientContext context;
  Authorize(context, MustToken(*ops_, alice, 1));
  context.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(30)));
  grpc::CompletionQueue cq;
  auto call = generic.PrepareCall(&context, "/padlock.v1.Gateway/Connect", &cq);
  call->StartCall(reinterpret_cast<void*>(1));
  ASSERT_TRUE(Next(cq));
  call->Write(Bytes(kGarbage), reinterpret_cast<void*>(2));
  Next(cq);  // the server may already have ended the call: either outcome is fine
  grpc::ByteBuffer frame;
  for (int i = 0; i < 100; ++i) {
    call->Read(&frame, reinterpret_cast<void*>(3));
    if (!Next(cq)) break;
  }
  grpc::Status status;
  call->Finish(&status, reinterpret_cast<void*>(4));
  ASSERT_TRUE(Next(cq));
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << status.error_message();
  EXPECT_THAT(status.error_message(), HasSubstr("malformed client frame"));
  cq.Shutdown();
  void* tag;
  bool ok;
  while (cq.Next(&tag, &ok)) {
  }
}

// The other way a read ends — the client half-closes — still ends the stream OK.
TEST_F(GatewayLimitsTest, HalfCloseStillEndsTheStreamOk) {
  Account alice = MustRegister("alice.halfclose");
  grpc::ClientContext context;
  Authorize(context, MustToken(*ops_, alice, 1));
  context.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(30)));
  auto stream = ops_->stub().Connect(&context);
  pb::ServerFrame frame;
  bool connected = false;
  while (!connected && stream->Read(&frame)) connected = frame.has_connected();
  ASSERT_TRUE(connected);
  ASSERT_TRUE(stream->WritesDone());
  while (stream->Read(&frame)) {
  }
  const grpc::Status status = stream->Finish();
  EXPECT_TRUE(status.ok()) << status.error_code() << " " << status.error_message();
}

TEST_F(GatewayLimitsTest, PerDeviceSendRateRefusesWithRetryAfter) {
  Account alice = MustRegister("alice.rate");
  Account bob = MustRegister("bob.rate");
  auto a1 = DeviceConn::Open(ops_->stub(), MustToken(*ops_, alice, 1));
  ASSERT_TRUE(a1->WaitConnected());
  std::vector<uint64_t> ids;
  for (int i = 0; i < 5; ++i) ids.push_back(a1->Send(OneToOne(alice, 1, bob, absl::StrCat("r", i))));
  int accepted = 0, limited = 0;
  for (uint64_t id : ids) {
    auto r = a1->Result(id);
    ASSERT_TRUE(r.has_value());
    if (r->has_accepted()) ++accepted;
    if (r->has_refused()) {
      EXPECT_EQ(r->refused().code(), static_cast<int>(grpc::StatusCode::RESOURCE_EXHAUSTED));
      EXPECT_GT(r->refused().retry_after_ms(), 0u);
      ++limited;
    }
  }
  // The burst of 3, plus at most one token per second refilled while the five sends arrive (the
  // slowest rate the gateway accepts): on a loaded machine that can be one more.
  EXPECT_GE(accepted, 3);
  EXPECT_GE(limited, 1);
  EXPECT_EQ(accepted + limited, 5);
  EXPECT_FALSE(a1->ended());
  EXPECT_GE(ScrapeValue(stack_->gateway_metrics_port(), "padlock_gateway_sends_rate_limited_total",
                        {}),
            2.0);
}

TEST_F(GatewayLimitsTest, StreamCapRefusesTheNextStream) {
  std::vector<std::unique_ptr<DeviceConn>> open;
  for (int i = 0; i < 3; ++i) {
    Account a = MustRegister(absl::StrCat("cap", i));
    open.push_back(DeviceConn::Open(ops_->stub(), MustToken(*ops_, a, 1)));
    ASSERT_TRUE(open.back()->WaitConnected());
  }
  Account extra = MustRegister("cap.extra");
  auto refused = DeviceConn::Open(ops_->stub(), MustToken(*ops_, extra, 1));
  auto status = refused->WaitEnded();
  ASSERT_TRUE(status.has_value());
  EXPECT_EQ(status->error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_NE(status->error_message().find("maximum of 3 streams"), std::string::npos);
  // One closes: the next one gets in.
  open.pop_back();
  ASSERT_TRUE(WaitFor([] { return Streams() == 2; }, absl::Seconds(10)));
  auto admitted = DeviceConn::Open(ops_->stub(), MustToken(*ops_, extra, 1));
  EXPECT_TRUE(admitted->WaitConnected().has_value());
}

TEST_F(GatewayLimitsTest, KeepaliveDropsASilentClient) {
  Account alice = MustRegister("alice.silent");
  testing::TcpProxy proxy(stack_->gateway_port());
  AccountOps via_proxy(grpc::CreateChannel(absl::StrCat("127.0.0.1:", proxy.port()),
                                           grpc::InsecureChannelCredentials()));
  auto conn = DeviceConn::Open(via_proxy.stub(), MustToken(*ops_, alice, 1));
  ASSERT_TRUE(conn->WaitConnected());
  ASSERT_EQ(Streams(), 1.0);
  proxy.Freeze();  // the client stops answering anything, pings included
  EXPECT_TRUE(WaitFor([] { return Streams() == 0; }, absl::Seconds(15)))
      << "the gateway kept a silent client's stream";
}

// Per-address limits on registration and login (Redis token buckets shared by replicas), and the
// key-directory's claim limits per requester and per target, passed through with retry-after.
TEST(GatewayAddressLimitsTest, RegistrationLoginAndClaimLimitsTripWithRetryAfter) {
  auto stack = PadlockStack::Start({.gateway_env = {{"PADLOCK_RATE_LIMIT_PROFILE", "production"},
                                                    {"PADLOCK_REGISTER_BURST", "3"},
                                                    {"PADLOCK_LOGIN_BURST", "4"},
                                                    {"PADLOCK_LOGIN_REFILL", "1h"}},
                                    .service_env = {{"PADLOCK_CLAIMS_PER_REQUESTER_BURST", "2"},
                                                    {"PADLOCK_CLAIMS_PER_TARGET_BURST", "2"}}});
  ASSERT_TRUE(stack.ok()) << stack.status();
  AccountOps ops(
      grpc::CreateChannel((*stack)->gateway_target(), grpc::InsecureChannelCredentials()));
  auto alice = ops.Register("alice.limits");  // register 1, login 1
  ASSERT_TRUE(alice.ok()) << alice.status();
  auto bob = ops.Register("bob.limits");  // register 2, login 2
  ASSERT_TRUE(bob.ok()) << bob.status();
  auto carol = ops.Register("carol.limits");  // register 3, login 3
  ASSERT_TRUE(carol.ok()) << carol.status();
  auto dave = ops.Register("dave.limits");  // register 4: over
  EXPECT_EQ(dave.status().code(), absl::StatusCode::kResourceExhausted) << dave.status();
  EXPECT_TRUE(ops.Login(*alice, 1).ok());  // login 4
  auto over = ops.Login(*alice, 1);        // login 5: over
  EXPECT_EQ(over.status().code(), absl::StatusCode::kResourceExhausted) << over.status();
  EXPECT_NE(std::string(over.status().message()).find("retry after"), std::string::npos);

  auto claim = [&](const Account& requester, const Account& target) {
    pb::GatewayClaimBundlesRequest request;
    request.set_user_id(target.user);
    pb::ClaimBundlesResponse response;
    grpc::ClientContext context;
    Authorize(context, requester.primary_token);
    grpc::Status status = ops.stub().ClaimBundles(&context, request, &response);
    std::string retry_after;
    const auto& trailers = context.GetServerTrailingMetadata();
    if (auto it = trailers.find("retry-after-ms"); it != trailers.end()) {
      retry_after.assign(it->second.data(), it->second.size());
    }
    return std::pair{status, retry_after};
  };
  // Per target: bob can be claimed twice (by anyone), then not.
  EXPECT_TRUE(claim(*alice, *bob).first.ok());
  EXPECT_TRUE(claim(*carol, *bob).first.ok());
  auto [target_limited, target_retry] = claim(*alice, *bob);
  EXPECT_EQ(target_limited.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_FALSE(target_retry.empty());
  // Per requester: bob may claim twice (different targets), then not.
  EXPECT_TRUE(claim(*bob, *alice).first.ok());
  EXPECT_TRUE(claim(*bob, *carol).first.ok());
  auto [requester_limited, requester_retry] = claim(*bob, *carol);
  EXPECT_EQ(requester_limited.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_FALSE(requester_retry.empty());
}

namespace {

// Challenge keys and used_memory of the stack's one redis-server.
size_t ChallengeKeys(const PadlockStack& stack) {
  auto keys = stack.AllRedisKeys();
  EXPECT_TRUE(keys.ok()) << keys.status();
  if (!keys.ok()) return 0;
  return static_cast<size_t>(std::count_if(keys->begin(), keys->end(), [](const std::string& k) {
    return k.rfind("gateway:challenge:", 0) == 0;
  }));
}

int64_t RedisUsedMemory(const PadlockStack& stack) {
  auto info = stack.RedisCliForKey("x", {"INFO", "memory"});
  EXPECT_TRUE(info.ok()) << info.status();
  if (!info.ok()) return -1;
  for (absl::string_view line : absl::StrSplit(*info, '\n')) {
    if (absl::ConsumePrefix(&line, "used_memory:")) {
      int64_t bytes = -1;
      EXPECT_TRUE(absl::SimpleAtoi(absl::StripAsciiWhitespace(line), &bytes)) << line;
      return bytes;
    }
  }
  ADD_FAILURE() << "no used_memory in INFO memory";
  return -1;
}

}  // namespace

// A challenge flood must not fill Redis. GetChallenge is limited per
// address (the production limit: 30, then one per 2 s) and a device id holds at most one
// challenge, so 20 000 calls from one address leave a handful of keys.
TEST(GatewayAddressLimitsTest, ChallengeFloodFromOneAddressIsLimitedAndRedisStaysSmall) {
  auto stack = PadlockStack::Start({.gateway_env = {{"PADLOCK_RATE_LIMIT_PROFILE", "production"},
                                                    {"PADLOCK_CHALLENGE_BURST", "30"},
                                                    {"PADLOCK_CHALLENGE_REFILL", "2s"}}});
  ASSERT_TRUE(stack.ok()) << stack.status();
  PadlockStack& s = **stack;
  constexpr double kBurst = 30;
  constexpr double kPerSecond = 0.5;
  auto channel = grpc::CreateChannel(s.gateway_target(), grpc::InsecureChannelCredentials());
  auto stub = pb::Gateway::NewStub(channel);

  // One device asking again and again holds one challenge (within the burst: 10 calls).
  for (int i = 0; i < 10; ++i) {
    pb::GetChallengeRequest request;
    request.mutable_device()->set_user_id("same.device");
    request.mutable_device()->set_device_id(1);
    pb::GetChallengeResponse response;
    grpc::ClientContext context;
    context.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(20)));
    ASSERT_TRUE(stub->GetChallenge(&context, request, &response).ok());
  }
  EXPECT_EQ(ChallengeKeys(s), 1u);

  const int64_t memory_before = RedisUsedMemory(s);
  constexpr int kCalls = 20000;
  constexpr int kInFlight = 256;
  struct Call {
    grpc::ClientContext context;
    pb::GetChallengeRequest request;
    pb::GetChallengeResponse response;
  };
  std::mutex mu;
  std::condition_variable done_cv;
  int started = 0, done = 0, accepted = 0, limited = 0, limited_without_retry = 0, other = 0;
  int64_t min_retry_ms = INT64_MAX, max_retry_ms = 0;
  std::string other_example;
  std::function<void()> start_one;
  start_one = [&] {
    int index;
    {
      std::lock_guard lock(mu);
      if (started == kCalls) return;
      index = started++;
    }
    auto* call = new Call;
    // A new device id each call: what an attacker filling Redis would do.
    call->request.mutable_device()->set_user_id(absl::StrCat("flood.", index));
    call->request.mutable_device()->set_device_id(1);
    call->context.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(60)));
    stub->async()->GetChallenge(
        &call->context, &call->request, &call->response, [&, call](grpc::Status status) {
          int64_t retry_ms = -1;
          const auto& trailers = call->context.GetServerTrailingMetadata();
          if (auto it = trailers.find("retry-after-ms"); it != trailers.end()) {
            if (!absl::SimpleAtoi(absl::string_view(it->second.data(), it->second.size()),
                                  &retry_ms)) {
              retry_ms = -1;
            }
          }
          delete call;
          start_one();
          // Last: once `done` reaches kCalls the test may return, so nothing of its stack is
          // touched after this block (notified under the lock, for the same reason).
          std::lock_guard lock(mu);
          if (status.ok()) {
            ++accepted;
          } else if (status.error_code() == grpc::StatusCode::RESOURCE_EXHAUSTED) {
            ++limited;
            if (retry_ms <= 0) ++limited_without_retry;
            min_retry_ms = std::min(min_retry_ms, retry_ms);
            max_retry_ms = std::max(max_retry_ms, retry_ms);
          } else {
            ++other;
            if (other_example.empty()) {
              other_example = absl::StrCat(status.error_code(), " ", status.error_message());
            }
          }
          ++done;
          done_cv.notify_all();
        });
  };
  const absl::Time start = absl::Now();
  for (int i = 0; i < kInFlight; ++i) start_one();
  {
    std::unique_lock lock(mu);
    ASSERT_TRUE(done_cv.wait_for(lock, std::chrono::minutes(3), [&] { return done == kCalls; }))
        << done << " of " << kCalls << " answered";
  }
  const double elapsed = absl::ToDoubleSeconds(absl::Now() - start);
  const size_t keys = ChallengeKeys(s);
  const int64_t memory_after = RedisUsedMemory(s);
  std::cout << "challenge flood: calls=" << kCalls << " accepted=" << accepted
            << " refused=" << limited << " other=" << other << " elapsed_s=" << elapsed
            << " retry_after_ms=[" << min_retry_ms << "," << max_retry_ms << "]"
            << " challenge_keys=" << keys << " used_memory_before=" << memory_before
            << " after=" << memory_after << " delta=" << (memory_after - memory_before)
            << std::endl;

  EXPECT_EQ(other, 0) << other_example;
  EXPECT_EQ(accepted + limited, kCalls);
  // The bucket held at most `burst` (the 10 calls above took some of it) and refilled at 0.5/s.
  const double allowed = kBurst + kPerSecond * elapsed + 1;
  EXPECT_LE(accepted, allowed);
  EXPECT_GE(limited, kCalls - static_cast<int>(allowed));
  EXPECT_EQ(limited_without_retry, 0);
  EXPECT_GT(min_retry_ms, 0);
  // One key per accepted call at most (plus the device above): tens, not thousands.
  EXPECT_LE(keys, static_cast<size_t>(accepted) + 1);
  EXPECT_LE(keys, static_cast<size_t>(allowed) + 1);
  // Before the limit, 20 000 keys of ~150 bytes of data each (several MB with Redis' overhead).
  EXPECT_LT(memory_after - memory_before, 1 << 20);
  EXPECT_EQ(ScrapeValue(s.gateway_metrics_port(), "padlock_gateway_address_limited_total",
                        {{"limit", "challenge"}}),
            static_cast<double>(limited));
}

// TLS on the public port with the configured certificate: a client trusting it logs in and
// streams; a plaintext client gets nowhere.
TEST(GatewayTlsTest, ServesTlsWithTheConfiguredCertificate) {
  testing::TempDir dir;
  const std::string cert = dir.path() + "/cert.pem";
  const std::string key = dir.path() + "/key.pem";
  const std::string command = absl::StrCat(
      "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 1 "
      "-subj /CN=localhost -addext subjectAltName=IP:127.0.0.1,DNS:localhost -keyout ",
      key, " -out ", cert, " 2>/dev/null");
  ASSERT_EQ(std::system(command.c_str()), 0);
  auto stack = PadlockStack::Start(
      {.gateway_env = {{"PADLOCK_TLS", "on"}, {"PADLOCK_TLS_CERT", cert}, {"PADLOCK_TLS_KEY", key}}});
  ASSERT_TRUE(stack.ok()) << stack.status();
  AccountOps tls(grpc::CreateChannel((*stack)->gateway_target(), (*stack)->gateway_credentials()));
  auto alice = tls.Register("alice.tls");
  ASSERT_TRUE(alice.ok()) << alice.status();
  auto conn = DeviceConn::Open(tls.stub(), alice->primary_token);
  EXPECT_TRUE(conn->WaitConnected().has_value());

  AccountOps plain(
      grpc::CreateChannel((*stack)->gateway_target(), grpc::InsecureChannelCredentials()));
  pb::GetChallengeRequest request;
  request.mutable_device()->set_user_id("alice.tls");
  request.mutable_device()->set_device_id(1);
  pb::GetChallengeResponse response;
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
  EXPECT_EQ(plain.stub().GetChallenge(&context, request, &response).error_code(),
            grpc::StatusCode::UNAVAILABLE);
}

// Client-visible errors carry no internal addresses (… ipv4:127.0.0.1:17430). gRPC's own
// failure messages name the peer; every path that forwards an upstream failure to a device
// must show a clean message. Its own stack: the test kills services.
TEST(GatewayUpstreamFailureTest, ClientVisibleErrorsNameNoInternalAddress) {
  auto started = PadlockStack::Start({.gateways = 1});
  ASSERT_TRUE(started.ok()) << started.status();
  std::unique_ptr<PadlockStack> stack = *std::move(started);
  AccountOps ops(grpc::CreateChannel(stack->gateway_target(), grpc::InsecureChannelCredentials()));
  auto alice = ops.Register("alice.upstream");
  auto bob = ops.Register("bob.upstream");
  ASSERT_TRUE(alice.ok() && bob.ok());
  auto a1 = DeviceConn::Open(ops.stub(), alice->primary_token);
  ASSERT_TRUE(a1->WaitConnected());
  std::vector<std::pair<std::string, std::string>> seen;  // (path, message)

  // message-queue gone: the send is refused retryably.
  stack->KillService("message-queue");
  auto result = a1->Result(a1->Send(OneToOne(*alice, 1, *bob, "upstream.1")), absl::Seconds(30));
  ASSERT_TRUE(result.has_value());
  ASSERT_TRUE(result->has_refused()) << result->DebugString();
  EXPECT_EQ(result->refused().code(), static_cast<int>(grpc::StatusCode::UNAVAILABLE));
  seen.emplace_back("send", result->refused().message());

  // presence gone: a new stream is refused.
  stack->KillService("presence");
  auto b1 = DeviceConn::Open(ops.stub(), bob->primary_token);
  auto ended = b1->WaitEnded(absl::Seconds(30));
  ASSERT_TRUE(ended.has_value());
  EXPECT_FALSE(ended->ok());
  seen.emplace_back("connect", ended->error_message());

  // key-directory gone: relays and logins fail.
  stack->KillService("key-directory");
  {
    grpc::ClientContext context;
    Authorize(context, alice->primary_token);
    context.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(30)));
    pb::GetDeviceListRequest request;
    request.set_user_id("bob.upstream");
    pb::GetDeviceListResponse response;
    const grpc::Status status = ops.stub().GetDeviceList(&context, request, &response);
    EXPECT_FALSE(status.ok());
    seen.emplace_back("get_device_list", status.error_message());
  }
  {
    auto challenge = ops.Challenge("alice.upstream", 1);
    ASSERT_TRUE(challenge.ok()) << challenge.status();
    auto login = ops.Login(*alice, 1);
    EXPECT_FALSE(login.ok());
    seen.emplace_back("login", std::string(login.status().message()));
  }

  for (const auto& [path, message] : seen) {
    EXPECT_FALSE(runtime::ContainsNetworkAddress(message)) << path << ": " << message;
    EXPECT_THAT(message, ::testing::Not(HasSubstr("127.0.0.1"))) << path;
    EXPECT_FALSE(message.empty()) << path;
  }
  if (::testing::Test::HasFailure()) std::cerr << stack->Logs().substr(0, 20000);
}

// A message-queue kill under load must not flood the log with identical warnings: with the log
// rate limit, every second after the kill holds fewer than 100 lines,
// each one JSON.
TEST(GatewayUpstreamFailureTest, MessageQueueKillUnderLoadLogsUnderAHundredLinesPerSecond) {
  auto started = PadlockStack::Start({.gateways = 1});
  ASSERT_TRUE(started.ok()) << started.status();
  std::unique_ptr<PadlockStack> stack = *std::move(started);
  AccountOps ops(grpc::CreateChannel(stack->gateway_target(), grpc::InsecureChannelCredentials()));
  auto bob = ops.Register("bob.load");
  ASSERT_TRUE(bob.ok()) << bob.status();
  constexpr int kSenders = 8;
  std::vector<Account> senders;
  std::vector<std::unique_ptr<DeviceConn>> conns;
  for (int i = 0; i < kSenders; ++i) {
    auto account = ops.Register(absl::StrCat("sender", i, ".load"));
    ASSERT_TRUE(account.ok()) << account.status();
    senders.push_back(*std::move(account));
    conns.push_back(DeviceConn::Open(ops.stub(), senders.back().primary_token));
    ASSERT_TRUE(conns.back()->WaitConnected());
  }
  std::atomic<bool> stop{false};
  std::atomic<int64_t> sent{0};
  std::vector<std::thread> load;
  for (int i = 0; i < kSenders; ++i) {
    load.emplace_back([&, i] {
      // Closed loop, one send in flight per sender: load that the test process cannot let run
      // away from the gateway it measures.
      for (int n = 0; !stop.load(); ++n) {
        const uint64_t id =
            conns[i]->Send(OneToOne(senders[i], 1, *bob, absl::StrCat("load.", i, ".", n)));
        sent.fetch_add(1);
        if (!conns[i]->Result(id, absl::Seconds(10)).has_value()) break;
      }
    });
  }
  ASSERT_TRUE(WaitFor([&] { return sent.load() >= 2000; }, absl::Seconds(30)));
  const absl::Time killed = absl::Now();
  stack->KillService("message-queue");
  ASSERT_TRUE(WaitFor([&] { return absl::Now() - killed >= absl::Seconds(5); },
                      absl::Seconds(10)));
  stop = true;
  for (auto& t : load) t.join();
  const int64_t sent_total = sent.load();

  const std::string logs = stack->Logs();
  const size_t begin = logs.find("----- gateway-0 -----\n");
  ASSERT_NE(begin, std::string::npos);
  std::map<int64_t, int> per_second;
  int lines = 0;
  int64_t suppressed = 0;
  for (absl::string_view line : absl::StrSplit(absl::string_view(logs).substr(begin), '\n')) {
    if (line.empty() || line.front() != '{') continue;
    auto parsed = runtime::testing::ParseJsonObject(std::string_view(line.data(), line.size()));
    ASSERT_TRUE(parsed.has_value()) << "not JSON: " << line;
    absl::Time ts;
    std::string error;
    ASSERT_TRUE(absl::ParseTime(absl::RFC3339_full, parsed->at("ts"), &ts, &error)) << error;
    if (ts < killed) continue;
    ++lines;
    ++per_second[absl::ToUnixSeconds(ts)];
    if (parsed->at("msg") == "suppressed similar lines") {
      suppressed += std::stoll(parsed->at("suppressed"));
    }
  }
  int busiest = 0;
  for (const auto& [second, n] : per_second) busiest = std::max(busiest, n);
  std::cerr << "message-queue kill under load (" << sent_total << " sends): " << lines
            << " gateway lines in the 5 s after, busiest second " << busiest << ", "
            << suppressed << " lines suppressed\n";
  EXPECT_GT(lines, 0);  // the failure is logged
  EXPECT_LT(busiest, 100);
}

}  // namespace
}  // namespace padlock::e2e
