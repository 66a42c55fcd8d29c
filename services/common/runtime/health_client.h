#pragma once
// A client for grpc.health.v1.Health/Check without generated code (the request and response are
// one field each, encoded here), so that no binary has to link a second copy of health.proto.
// Used by padlock-healthcheck and by tests.

#include <grpcpp/channel.h>

#include <memory>
#include <string_view>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace padlock::runtime {

// grpc.health.v1.HealthCheckResponse.ServingStatus.
enum class HealthState { kUnknown = 0, kServing = 1, kNotServing = 2, kServiceUnknown = 3 };

// "UNKNOWN", "SERVING", "NOT_SERVING", "SERVICE_UNKNOWN".
std::string_view HealthStateName(HealthState state);

// Asks `channel` for the status of `service` ("" = the server as a whole), failing fast when the
// server cannot be reached. Returns the state, or the call's error: NotFound when the server does
// not know `service`, Unavailable when it cannot be reached, DeadlineExceeded after `timeout`,
// Internal for a malformed response.
absl::StatusOr<HealthState> CheckHealth(const std::shared_ptr<grpc::Channel>& channel,
                                        std::string_view service, absl::Duration timeout);

}  // namespace padlock::runtime
