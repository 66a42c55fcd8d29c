// AckPump over a fake InboxClient (upstream_clients.h): what reaches the message-queue when the
// queue answers a batch of acks with a failure. No servers; the fake answers each call inline,
// as a gRPC completion may.

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <prometheus/counter.h>

#include <deque>
#include <string>
#include <utility>
#include <vector>

#include "services/gateway/stream_metrics.h"
#include "services/gateway/stream_pumps.h"
#include "services/gateway/stream_settings.h"
#include "services/gateway/upstream_clients.h"

namespace padlock::gateway {
namespace {

namespace v1 = padlock::v1;

// Answers each Ack with the next of `answers` (OK when none are left) and records the requests.
class FakeInbox final : public InboxClient {
 public:
  std::deque<grpc::Status> answers;
  std::vector<v1::AckRequest> acks;

  void Enqueue(grpc::ClientContext*, const v1::EnqueueRequest*, v1::EnqueueResponse*,
               UpstreamDone done) override {
    done(grpc::Status(grpc::StatusCode::UNIMPLEMENTED, "not in this test"));
  }
  void ReadInbox(grpc::ClientContext*, const v1::ReadInboxRequest*, v1::ReadInboxResponse*,
                 UpstreamDone done) override {
    done(grpc::Status(grpc::StatusCode::UNIMPLEMENTED, "not in this test"));
  }
  void Ack(grpc::ClientContext*, const v1::AckRequest* request, v1::AckResponse*,
           UpstreamDone done) override {
    acks.push_back(*request);
    grpc::Status status = grpc::Status::OK;
    if (!answers.empty()) {
      status = answers.front();
      answers.pop_front();
    }
    done(status);
  }
};

google::protobuf::RepeatedPtrField<v1::DeviceAck> BobAcksUpTo(const std::string& server_id) {
  google::protobuf::RepeatedPtrField<v1::DeviceAck> acks;
  v1::DeviceAck* ack = acks.Add();
  ack->mutable_device()->set_user_id("bob");
  ack->mutable_device()->set_device_id(2);
  ack->set_up_to_server_id(server_id);
  return acks;
}

class AckPumpTest : public ::testing::Test {
 protected:
  StreamSettings settings_;
  StreamMetrics metrics_{nullptr};
  FakeInbox inbox_;
  AckPump pump_{&settings_, &inbox_, &metrics_};
};

TEST_F(AckPumpTest, RetriesABatchOnceWithTheSameAcksWhenTheQueueIsUnavailable) {
  inbox_.answers = {grpc::Status(grpc::StatusCode::UNAVAILABLE, "queue restarting")};
  pump_.Submit(BobAcksUpTo("1-7"));
  ASSERT_EQ(inbox_.acks.size(), 2u);
  EXPECT_EQ(inbox_.acks[1].SerializeAsString(), inbox_.acks[0].SerializeAsString());
  EXPECT_EQ(inbox_.acks[1].acks(0).up_to_server_id(), "1-7");
  EXPECT_EQ(metrics_.acks->Value(), 1);
  EXPECT_EQ(metrics_.ack_failures->Value(), 0);
  EXPECT_TRUE(pump_.Idle());
}

TEST_F(AckPumpTest, GivesUpAfterTheRetryFailsToo) {
  inbox_.answers = {grpc::Status(grpc::StatusCode::DEADLINE_EXCEEDED, "slow"),
                    grpc::Status(grpc::StatusCode::UNAVAILABLE, "down")};
  pump_.Submit(BobAcksUpTo("1-7"));
  EXPECT_EQ(inbox_.acks.size(), 2u);
  EXPECT_EQ(metrics_.acks->Value(), 0);
  EXPECT_EQ(metrics_.ack_failures->Value(), 1);
  EXPECT_TRUE(pump_.Idle());
}

TEST_F(AckPumpTest, DoesNotRetryARefusedBatch) {
  inbox_.answers = {grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "too many ids")};
  pump_.Submit(BobAcksUpTo("1-7"));
  EXPECT_EQ(inbox_.acks.size(), 1u);
  EXPECT_EQ(metrics_.ack_failures->Value(), 1);
  EXPECT_TRUE(pump_.Idle());
}

}  // namespace
}  // namespace padlock::gateway
