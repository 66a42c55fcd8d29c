#pragma once
// The gRPC face of the gateway service: validates requests, converts proto ↔ domain types, calls
// the logic and maps absl::Status to grpc::Status (services/common/runtime/status.h).

#include "padlock/v1/gateway.grpc.pb.h"

namespace padlock::gateway {

// padlock.v1.Gateway: every rpc answers UNIMPLEMENTED until the gateway issue (#6) fills it in —
// never a fake success. The class exists so that main() registers the real service name, so health,
// reflection and metrics already cover it. Thread-safe (stateless).
class GatewayService final : public padlock::v1::Gateway::CallbackService {};

}  // namespace padlock::gateway
