// GrpcDeviceDirectory against an in-process fake KeyDirectory (real gRPC on loopback).
#include "services/message_queue/grpc_device_directory.h"

#include <grpcpp/grpcpp.h>

#include <atomic>
#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "padlock/v1/key_directory.grpc.pb.h"

namespace padlock::message_queue {
namespace {

namespace v1 = padlock::v1;

class FakeKeyDirectory final : public v1::KeyDirectory::Service {
 public:
  grpc::Status GetDeviceLists(grpc::ServerContext*, const v1::GetDeviceListsRequest* request,
                              v1::GetDeviceListsResponse* response) override {
    ++calls;
    for (const std::string& user : request->user_ids()) {
      if (user != "bob") continue;
      v1::DeviceList* list = response->add_device_lists()->mutable_list();
      list->set_user_id("bob");
      list->set_version(version.load());
      for (uint32_t device : {1u, 3u}) {
        v1::DeviceListEntry* entry = list->add_devices();
        entry->set_device_id(device);
        entry->set_registration_id(200 + device);
      }
    }
    return grpc::Status::OK;
  }
  std::atomic<int> calls{0};
  std::atomic<uint64_t> version{4};
};

class GrpcDeviceDirectoryTest : public ::testing::Test {
 protected:
  void SetUp() override {
    grpc::ServerBuilder builder;
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port_);
    builder.RegisterService(&service_);
    server_ = builder.BuildAndStart();
    ASSERT_NE(server_, nullptr);
    channel_ = grpc::CreateChannel(absl::StrCat("127.0.0.1:", port_),
                                   grpc::InsecureChannelCredentials());
  }
  void TearDown() override {
    if (server_ != nullptr) server_->Shutdown();
  }

  FakeKeyDirectory service_;
  int port_ = 0;
  std::unique_ptr<grpc::Server> server_;
  std::shared_ptr<grpc::Channel> channel_;
};

TEST_F(GrpcDeviceDirectoryTest, ReturnsKnownUsersListsAndOmitsUnknownOnes) {
  GrpcDeviceDirectory directory(channel_, absl::Seconds(5));
  std::vector<std::string> users = {"bob", "nobody"};
  auto lists = directory.GetDeviceLists(users);
  ASSERT_TRUE(lists.ok()) << lists.status();
  ASSERT_EQ(lists->size(), 1u);
  const DeviceListInfo& bob = lists->at("bob");
  EXPECT_EQ(bob.version, 4u);
  ASSERT_EQ(bob.devices.size(), 2u);
  EXPECT_EQ(bob.devices[1].device_id, 3u);
  EXPECT_EQ(bob.devices[1].registration_id, 203u);
}

TEST_F(GrpcDeviceDirectoryTest, EveryCallAsksTheKeyDirectory) {
  // No cache: a change the key-directory answers with is seen by the very next call.
  GrpcDeviceDirectory directory(channel_, absl::Seconds(5));
  std::vector<std::string> users = {"bob"};
  ASSERT_EQ(directory.GetDeviceLists(users)->at("bob").version, 4u);
  service_.version = 5;
  EXPECT_EQ(directory.GetDeviceLists(users)->at("bob").version, 5u);
  EXPECT_EQ(service_.calls.load(), 2);
}

TEST_F(GrpcDeviceDirectoryTest, UnreachableKeyDirectoryIsUnavailable) {
  server_->Shutdown();
  server_.reset();
  GrpcDeviceDirectory directory(channel_, absl::Milliseconds(500));
  std::vector<std::string> users = {"bob"};
  auto lists = directory.GetDeviceLists(users);
  EXPECT_TRUE(lists.status().code() == absl::StatusCode::kUnavailable ||
              lists.status().code() == absl::StatusCode::kDeadlineExceeded)
      << lists.status();
}

}  // namespace
}  // namespace padlock::message_queue
