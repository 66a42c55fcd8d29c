#pragma once
// The device streams' narrow views of the message-queue (InboxClient) and presence
// (PresenceClient), so that the stream hub, the streams and the pumps can run on fakes. The gRPC
// implementations forward each call to the service's stub, adding nothing per call but the
// virtual call.
//
// Asynchronous calls start one rpc on `context` (which carries its deadline) and call `done`
// exactly once with the rpc's status, on a gRPC thread, possibly before they return; `context`,
// `request` and `response` must stay alive until then. Blocking calls wait for the answer: run
// them on the executor, never on a gRPC reaction. Every method is thread-safe.

#include <grpcpp/grpcpp.h>

#include <functional>
#include <memory>
#include <utility>

#include "padlock/v1/message_queue.grpc.pb.h"
#include "padlock/v1/presence.grpc.pb.h"

namespace padlock::gateway {

using UpstreamDone = std::function<void(grpc::Status)>;

class InboxClient {
 public:
  virtual ~InboxClient() = default;
  virtual void Enqueue(grpc::ClientContext* context, const padlock::v1::EnqueueRequest* request,
                       padlock::v1::EnqueueResponse* response, UpstreamDone done) = 0;
  virtual void ReadInbox(grpc::ClientContext* context,
                         const padlock::v1::ReadInboxRequest* request,
                         padlock::v1::ReadInboxResponse* response, UpstreamDone done) = 0;
  virtual void Ack(grpc::ClientContext* context, const padlock::v1::AckRequest* request,
                   padlock::v1::AckResponse* response, UpstreamDone done) = 0;
};

class PresenceClient {
 public:
  virtual ~PresenceClient() = default;
  // Asynchronous.
  virtual void Disconnect(grpc::ClientContext* context,
                          const padlock::v1::DisconnectRequest* request,
                          padlock::v1::DisconnectResponse* response, UpstreamDone done) = 0;
  virtual void Heartbeat(grpc::ClientContext* context, const padlock::v1::HeartbeatRequest* request,
                         padlock::v1::HeartbeatResponse* response, UpstreamDone done) = 0;
  // Blocking.
  virtual grpc::Status Connect(grpc::ClientContext* context,
                               const padlock::v1::ConnectRequest& request,
                               padlock::v1::ConnectResponse* response) = 0;
  virtual grpc::Status Subscribe(grpc::ClientContext* context,
                                 const padlock::v1::SubscribeRequest& request,
                                 padlock::v1::SubscribeResponse* response) = 0;
  virtual grpc::Status SetVisibility(grpc::ClientContext* context,
                                     const padlock::v1::SetVisibilityRequest& request,
                                     padlock::v1::SetVisibilityResponse* response) = 0;
};

// InboxClient over padlock.v1.MessageQueue on `channel`.
class GrpcInboxClient final : public InboxClient {
 public:
  explicit GrpcInboxClient(std::shared_ptr<grpc::Channel> channel)
      : stub_(padlock::v1::MessageQueue::NewStub(std::move(channel))) {}
  void Enqueue(grpc::ClientContext* context, const padlock::v1::EnqueueRequest* request,
               padlock::v1::EnqueueResponse* response, UpstreamDone done) override {
    stub_->async()->Enqueue(context, request, response, std::move(done));
  }
  void ReadInbox(grpc::ClientContext* context, const padlock::v1::ReadInboxRequest* request,
                 padlock::v1::ReadInboxResponse* response, UpstreamDone done) override {
    stub_->async()->ReadInbox(context, request, response, std::move(done));
  }
  void Ack(grpc::ClientContext* context, const padlock::v1::AckRequest* request,
           padlock::v1::AckResponse* response, UpstreamDone done) override {
    stub_->async()->Ack(context, request, response, std::move(done));
  }

 private:
  const std::unique_ptr<padlock::v1::MessageQueue::Stub> stub_;
};

// PresenceClient over padlock.v1.Presence on `channel`.
class GrpcPresenceClient final : public PresenceClient {
 public:
  explicit GrpcPresenceClient(std::shared_ptr<grpc::Channel> channel)
      : stub_(padlock::v1::Presence::NewStub(std::move(channel))) {}
  void Disconnect(grpc::ClientContext* context, const padlock::v1::DisconnectRequest* request,
                  padlock::v1::DisconnectResponse* response, UpstreamDone done) override {
    stub_->async()->Disconnect(context, request, response, std::move(done));
  }
  void Heartbeat(grpc::ClientContext* context, const padlock::v1::HeartbeatRequest* request,
                 padlock::v1::HeartbeatResponse* response, UpstreamDone done) override {
    stub_->async()->Heartbeat(context, request, response, std::move(done));
  }
  grpc::Status Connect(grpc::ClientContext* context, const padlock::v1::ConnectRequest& request,
                       padlock::v1::ConnectResponse* response) override {
    return stub_->Connect(context, request, response);
  }
  grpc::Status Subscribe(grpc::ClientContext* context, const padlock::v1::SubscribeRequest& request,
                         padlock::v1::SubscribeResponse* response) override {
    return stub_->Subscribe(context, request, response);
  }
  grpc::Status SetVisibility(grpc::ClientContext* context,
                             const padlock::v1::SetVisibilityRequest& request,
                             padlock::v1::SetVisibilityResponse* response) override {
    return stub_->SetVisibility(context, request, response);
  }

 private:
  const std::unique_ptr<padlock::v1::Presence::Stub> stub_;
};

}  // namespace padlock::gateway
