#pragma once
// The one place where absl::Status and grpc::Status are converted. Codes map one to one (both
// follow google.rpc.Code); an absl code outside 0..16 becomes UNKNOWN. The message is kept. Rich
// error details travel too: grpc::Status::error_details() (a serialized google.rpc.Status) is
// carried as the absl payload kGrpcErrorDetailsPayloadUrl and put back on the way out.

#include <grpcpp/support/status.h>

#include <string_view>

#include "absl/status/status.h"

namespace padlock::runtime {

inline constexpr char kGrpcErrorDetailsPayloadUrl[] =
    "type.googleapis.com/google.rpc.Status";

grpc::Status ToGrpcStatus(const absl::Status& status);
absl::Status FromGrpcStatus(const grpc::Status& status);

// "OK", "CANCELLED", ..., "UNAUTHENTICATED" (the names used in metrics labels); "UNKNOWN" for
// codes outside the enum.
std::string_view GrpcCodeName(grpc::StatusCode code);

}  // namespace padlock::runtime
