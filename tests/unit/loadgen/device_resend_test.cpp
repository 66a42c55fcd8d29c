// The load generator's reconnect-and-resend bookkeeping (bench/loadgen/device_stream.h), with a
// fake transport: what a device sends again after its stream broke.
#include <gtest/gtest.h>

#include <chrono>
#include <memory>
#include <thread>
#include <vector>

#include "bench/loadgen/device_stream.h"

namespace padlock::loadgen {
namespace {

// Records what the device asks of its transport; NextFrame is pulled by the test.
class FakeStream final : public StreamTransport {
 public:
  explicit FakeStream(Device* device) : device_(device) {}
  void Start() override { started = true; }
  void Wake() override {}
  void Close() override {}
  void Cancel() override {}
  // The request ids of every send frame the device has to write now.
  std::vector<uint64_t> DrainSends() {
    std::vector<uint64_t> ids;
    while (const v1::ClientFrame* frame = device_->NextFrame(scratch_)) {
      if (frame->has_send()) ids.push_back(frame->send().request_id());
    }
    return ids;
  }
  bool started = false;

 private:
  Device* const device_;
  FrameScratch scratch_;
};

DeviceAccount Account(const std::string& user) {
  return DeviceAccount{.user_id = user, .device_id = 1, .token = "token"};
}

// The resender thread reads the clock once per round and then visits every device; a send queued
// by another thread after that read is newer than the round's `now`; it must not count as older
// than the resend deadline (an unsigned underflow), or a reconnect gives it up at once: counted
// unaccepted and lost, and its window slot freed.
TEST(DeviceResend, SendQueuedAfterTheResenderReadItsClockIsResentNotGivenUp) {
  RunState run;
  run.resend = true;
  run.release = Release::kOnAccepted;
  run.resend_deadline_nanos = 30'000'000'000ull;
  std::vector<FakeStream*> streams;
  run.new_stream = [&](Device* device) {
    auto stream = std::make_unique<FakeStream>(device);
    streams.push_back(stream.get());
    return std::unique_ptr<StreamTransport>(std::move(stream));
  };
  run.devices.push_back(std::make_unique<Device>(&run, 0, Account("alice")));
  run.devices.push_back(std::make_unique<Device>(&run, 1, Account("bob")));
  Device& alice = *run.devices[0];
  streams.push_back(nullptr);  // index 0: the first stream, made by the test
  auto first = std::make_unique<FakeStream>(&alice);
  FakeStream* first_stream = first.get();
  alice.Connect(std::move(first));
  ASSERT_TRUE(first_stream->started);

  // The stream breaks: the device will reconnect after a backoff of at most 75 ms.
  alice.OnStreamEnd(14, "connection closed");
  // The resender's round starts at `round` (past the backoff); the send comes after it.
  const uint64_t round = NowNanos() + 200'000'000;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (NowNanos() <= round && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  ASSERT_GT(NowNanos(), round);
  alice.SendTo(1, NowNanos());
  ASSERT_EQ(run.awaiting_result.load(), 1);

  alice.Tick(round);

  ASSERT_EQ(streams.size(), 2u) << "the device did not reconnect";
  EXPECT_TRUE(streams[1]->started);
  EXPECT_EQ(run.reconnects.load(), 1u);
  // Still waiting for its result, and written again on the new stream.
  EXPECT_EQ(run.awaiting_result.load(), 1);
  EXPECT_EQ(run.in_flight.load(), 1);
  EXPECT_EQ(streams[1]->DrainSends(), std::vector<uint64_t>{1});
  EXPECT_EQ(run.resent.load(), 1u);
  EXPECT_EQ(alice.CountUnaccepted(), 1u);  // pending, not given up
  EXPECT_TRUE(run.first_failure.find("resend deadline") == std::string::npos)
      << run.first_failure;
  run.shutting_down = true;
}

}  // namespace
}  // namespace padlock::loadgen
