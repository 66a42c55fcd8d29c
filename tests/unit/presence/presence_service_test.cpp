// PresenceService over an in-process gRPC channel (no network), with the in-memory store:
// validation, status mapping and the retry-after trailer.
#include "services/presence/presence_service.h"

#include <grpcpp/grpcpp.h>

#include <memory>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/fakes/manual_clock.h"
#include "tests/fakes/in_memory_presence_store.h"

namespace padlock::presence {
namespace {

using ::testing::HasSubstr;
namespace v1 = padlock::v1;

class ServiceTest : public ::testing::Test {
 protected:
  ServiceTest() {
    StoreTimings timings;
    timings.rate_burst = 1;
    timings.rate_refill_ms = 2500;
    store_ = std::make_unique<testing::InMemoryPresenceStore>(timings);
    PresenceOptions options;
    options.max_subscriptions = 3;
    registry_ = std::make_unique<PresenceRegistry>(options, store_.get(), &publisher_, &clock_,
                                                   nullptr);
    ServiceLimits limits;
    limits.max_subscribe_ids = 4;
    service_ = std::make_unique<PresenceService>(registry_.get(), &executor_, limits);
    grpc::ServerBuilder builder;
    builder.RegisterService(service_.get());
    server_ = builder.BuildAndStart();
    stub_ = v1::Presence::NewStub(server_->InProcessChannel(grpc::ChannelArguments()));
  }
  ~ServiceTest() override {
    server_->Shutdown();
    executor_.Shutdown();
  }

  padlock::testing::ManualClock clock_{1'700'000'000'000};
  testing::RecordingPublisher publisher_;
  std::unique_ptr<testing::InMemoryPresenceStore> store_;
  std::unique_ptr<PresenceRegistry> registry_;
  runtime::BoundedExecutor executor_{"presence-test", 2, 16};
  std::unique_ptr<PresenceService> service_;
  std::unique_ptr<grpc::Server> server_;
  std::unique_ptr<v1::Presence::Stub> stub_;
};

v1::DeviceAddress Address(const std::string& user, uint32_t device) {
  v1::DeviceAddress a;
  a.set_user_id(user);
  a.set_device_id(device);
  return a;
}

TEST_F(ServiceTest, ConnectReturnsEpochsAndDisconnectReportsCurrency) {
  v1::ConnectRequest req;
  *req.mutable_device() = Address("alice", 1);
  req.set_gateway_id("gw-1");
  v1::ConnectResponse first, second;
  grpc::ClientContext c1, c2;
  ASSERT_TRUE(stub_->Connect(&c1, req, &first).ok());
  ASSERT_TRUE(stub_->Connect(&c2, req, &second).ok());
  EXPECT_EQ(first.epoch(), 1u);
  EXPECT_EQ(second.epoch(), 2u);
  v1::DisconnectRequest d;
  *d.mutable_device() = Address("alice", 1);
  d.set_epoch(first.epoch());
  v1::DisconnectResponse out;
  grpc::ClientContext c3;
  ASSERT_TRUE(stub_->Disconnect(&c3, d, &out).ok());
  EXPECT_FALSE(out.was_current());
}

TEST_F(ServiceTest, InvalidFieldsAreNamed) {
  v1::ConnectRequest req;
  *req.mutable_device() = Address("Not Valid", 1);
  req.set_gateway_id("gw-1");
  v1::ConnectResponse resp;
  grpc::ClientContext c1;
  grpc::Status s = stub_->Connect(&c1, req, &resp);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(s.error_message(), HasSubstr("device.user_id"));

  *req.mutable_device() = Address("alice", 0);
  grpc::ClientContext c2;
  s = stub_->Connect(&c2, req, &resp);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(s.error_message(), HasSubstr("device.device_id"));

  *req.mutable_device() = Address("alice", 1);
  req.set_gateway_id("gw|1");
  grpc::ClientContext c3;
  s = stub_->Connect(&c3, req, &resp);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(s.error_message(), HasSubstr("gateway_id"));

  req.set_gateway_id("gw-1");
  req.set_visibility(static_cast<v1::PresenceVisibility>(7));
  grpc::ClientContext c4;
  s = stub_->Connect(&c4, req, &resp);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(s.error_message(), HasSubstr("visibility"));

  v1::HeartbeatRequest hb;
  hb.set_gateway_id("gw-1");
  v1::DeviceConnection* conn = hb.add_connections();
  *conn->mutable_device() = Address("alice", 1);
  v1::HeartbeatResponse hb_resp;
  grpc::ClientContext c5;
  s = stub_->Heartbeat(&c5, hb, &hb_resp);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(s.error_message(), HasSubstr("connections[0].epoch"));

  v1::QueryRequest q;
  *q.mutable_requester() = Address("bob", 1);
  q.add_user_ids("ok.user");
  q.add_user_ids("{evil}");
  v1::QueryResponse q_resp;
  grpc::ClientContext c6;
  s = stub_->Query(&c6, q, &q_resp);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(s.error_message(), HasSubstr("user_ids[1]"));
}

TEST_F(ServiceTest, SubscriptionLimitIsResourceExhausted) {
  v1::SubscribeRequest req;
  *req.mutable_subscriber() = Address("bob", 1);
  for (const char* u : {"u01", "u02", "u03", "u04"}) req.add_user_ids(u);
  v1::SubscribeResponse resp;
  grpc::ClientContext c1;
  grpc::Status s = stub_->Subscribe(&c1, req, &resp);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  req.add_user_ids("u05");  // over the request cap: refused before deduplication
  grpc::ClientContext c2;
  EXPECT_EQ(stub_->Subscribe(&c2, req, &resp).error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
}

TEST_F(ServiceTest, RateLimitedSubscribeCarriesRetryAfterTrailer) {
  v1::SubscribeRequest req;
  *req.mutable_subscriber() = Address("bob", 1);
  req.add_user_ids("alice");
  v1::SubscribeResponse resp;
  grpc::ClientContext c1;
  ASSERT_TRUE(stub_->Subscribe(&c1, req, &resp).ok());
  ASSERT_EQ(resp.current_size(), 1);
  EXPECT_FALSE(resp.current(0).online());
  grpc::ClientContext c2;
  grpc::Status s = stub_->Subscribe(&c2, req, &resp);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_THAT(s.error_message(), HasSubstr("retry after 2500 ms"));
  auto trailer = c2.GetServerTrailingMetadata().find(kRetryAfterMetadata);
  ASSERT_NE(trailer, c2.GetServerTrailingMetadata().end());
  EXPECT_EQ(std::string(trailer->second.data(), trailer->second.size()), "2500");
}

TEST_F(ServiceTest, StoreDownIsUnavailable) {
  store_->SetUnavailable(true);
  v1::QueryRequest q;
  *q.mutable_requester() = Address("bob", 1);
  q.add_user_ids("alice");
  v1::QueryResponse resp;
  grpc::ClientContext c;
  EXPECT_EQ(stub_->Query(&c, q, &resp).error_code(), grpc::StatusCode::UNAVAILABLE);
}

}  // namespace
}  // namespace padlock::presence
