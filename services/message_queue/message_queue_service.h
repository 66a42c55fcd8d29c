#pragma once
// The gRPC face of the message-queue service: runs the Dispatcher and maps absl::Status to
// grpc::Status (services/common/runtime/status.h). Per-send problems are outcomes inside the
// EnqueueResponse, not rpc errors.
//
// Threading: the callback API; every rpc runs on a BoundedExecutor (Redis and key-directory calls
// block), never on a gRPC callback thread. A full executor queue answers RESOURCE_EXHAUSTED.

#include "padlock/v1/message_queue.grpc.pb.h"
#include "services/common/runtime/executor.h"
#include "services/message_queue/dispatcher.h"

namespace padlock::message_queue {

// padlock.v1.MessageQueue. Thread-safe; `dispatcher` and `executor` must outlive the server.
class MessageQueueService final : public padlock::v1::MessageQueue::CallbackService {
 public:
  MessageQueueService(Dispatcher* dispatcher, runtime::BoundedExecutor* executor);

  grpc::ServerUnaryReactor* Enqueue(grpc::CallbackServerContext* context,
                                    const padlock::v1::EnqueueRequest* request,
                                    padlock::v1::EnqueueResponse* response) override;
  grpc::ServerUnaryReactor* ReadInbox(grpc::CallbackServerContext* context,
                                      const padlock::v1::ReadInboxRequest* request,
                                      padlock::v1::ReadInboxResponse* response) override;
  grpc::ServerUnaryReactor* Ack(grpc::CallbackServerContext* context,
                                const padlock::v1::AckRequest* request,
                                padlock::v1::AckResponse* response) override;
  grpc::ServerUnaryReactor* PurgeInbox(grpc::CallbackServerContext* context,
                                       const padlock::v1::PurgeInboxRequest* request,
                                       padlock::v1::PurgeInboxResponse* response) override;
  grpc::ServerUnaryReactor* GetInboxInfo(grpc::CallbackServerContext* context,
                                         const padlock::v1::GetInboxInfoRequest* request,
                                         padlock::v1::GetInboxInfoResponse* response) override;

 private:
  // Runs `work` (returning absl::Status) on the executor and finishes with its status.
  template <typename Work>
  grpc::ServerUnaryReactor* Offload(grpc::CallbackServerContext* context, Work work);

  Dispatcher* const dispatcher_;
  runtime::BoundedExecutor* const executor_;
};

}  // namespace padlock::message_queue
