#include "services/message_queue/message_queue_service.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "services/common/runtime/status.h"
#include "services/common/runtime/unary.h"

namespace padlock::message_queue {

namespace v1 = padlock::v1;

MessageQueueService::MessageQueueService(Dispatcher* dispatcher,
                                         runtime::BoundedExecutor* executor)
    : dispatcher_(dispatcher), executor_(executor) {}

template <typename Work>
grpc::ServerUnaryReactor* MessageQueueService::Offload(grpc::CallbackServerContext* context,
                                                       Work work) {
  return runtime::OffloadUnary(context, *executor_, "message-queue", std::move(work));
}

grpc::ServerUnaryReactor* MessageQueueService::Enqueue(grpc::CallbackServerContext* context,
                                                       const v1::EnqueueRequest* request,
                                                       v1::EnqueueResponse* response) {
  return Offload(context, [this, request, response]() -> absl::Status {
    absl::StatusOr<v1::EnqueueResponse> result = dispatcher_->Enqueue(*request);
    if (!result.ok()) return result.status();
    *response = *std::move(result);
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* MessageQueueService::ReadInbox(grpc::CallbackServerContext* context,
                                                         const v1::ReadInboxRequest* request,
                                                         v1::ReadInboxResponse* response) {
  return Offload(context, [this, request, response]() -> absl::Status {
    absl::StatusOr<v1::ReadInboxResponse> result = dispatcher_->ReadInbox(*request);
    if (!result.ok()) return result.status();
    *response = *std::move(result);
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* MessageQueueService::Ack(grpc::CallbackServerContext* context,
                                                   const v1::AckRequest* request,
                                                   v1::AckResponse* response) {
  return Offload(context, [this, request, response]() -> absl::Status {
    absl::StatusOr<v1::AckResponse> result = dispatcher_->Ack(*request);
    if (!result.ok()) return result.status();
    *response = *std::move(result);
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* MessageQueueService::PurgeInbox(grpc::CallbackServerContext* context,
                                                          const v1::PurgeInboxRequest* request,
                                                          v1::PurgeInboxResponse* response) {
  return Offload(context, [this, request, response]() -> absl::Status {
    absl::StatusOr<uint64_t> removed = dispatcher_->Purge(request->device());
    if (!removed.ok()) return removed.status();
    response->set_removed(*removed);
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* MessageQueueService::GetInboxInfo(
    grpc::CallbackServerContext* context, const v1::GetInboxInfoRequest* request,
    v1::GetInboxInfoResponse* response) {
  return Offload(context, [this, request, response]() -> absl::Status {
    absl::StatusOr<InboxInfo> info = dispatcher_->Info(request->device());
    if (!info.ok()) return info.status();
    response->set_depth(info->depth);
    response->set_last_sequence(info->last_sequence);
    response->set_bytes(info->bytes);
    return absl::OkStatus();
  });
}

}  // namespace padlock::message_queue
