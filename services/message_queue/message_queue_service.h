#pragma once
// The gRPC face of the message-queue service: validates requests, converts proto ↔ domain types,
// calls the logic and maps absl::Status to grpc::Status (services/common/runtime/status.h).

#include "padlock/v1/message_queue.grpc.pb.h"

namespace padlock::message_queue {

// padlock.v1.MessageQueue: every rpc answers UNIMPLEMENTED until the message-queue issue (#4) fills
// it in — never a fake success. The class exists so that main() registers the real service name, so
// health, reflection and metrics already cover it. Thread-safe (stateless).
class MessageQueueService final : public padlock::v1::MessageQueue::CallbackService {};

}  // namespace padlock::message_queue
