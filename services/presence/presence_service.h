#pragma once
// The gRPC face of the presence service: validates requests, converts proto ↔ domain types, calls
// the logic and maps absl::Status to grpc::Status (services/common/runtime/status.h).

#include "padlock/v1/presence.grpc.pb.h"

namespace padlock::presence {

// padlock.v1.Presence: every rpc answers UNIMPLEMENTED until the presence issue (#5) fills it in —
// never a fake success. The class exists so that main() registers the real service name, so health,
// reflection and metrics already cover it. Thread-safe (stateless).
class PresenceService final : public padlock::v1::Presence::CallbackService {};

}  // namespace padlock::presence
