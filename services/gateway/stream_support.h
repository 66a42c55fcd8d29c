#pragma once
// Small helpers shared by the device stream, its hub and the pumps.

#include <grpcpp/grpcpp.h>

#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "padlock/v1/common.pb.h"
#include "services/gateway/session_token.h"

namespace padlock::gateway {

// gRPC measures deadlines against the real clock, so this one reads it (not the hub's clock).
inline void SetDeadline(grpc::ClientContext& context, absl::Duration deadline) {
  context.set_deadline(absl::ToChronoTime(absl::Now() + deadline));
}

inline padlock::v1::DeviceAddress Address(const SessionClaims& claims) {
  padlock::v1::DeviceAddress address;
  address.set_user_id(claims.user_id);
  address.set_device_id(claims.device_id);
  return address;
}

}  // namespace padlock::gateway
