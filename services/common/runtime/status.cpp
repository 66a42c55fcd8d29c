#include "services/common/runtime/status.h"

#include <string>

#include "absl/strings/cord.h"

namespace padlock::runtime {

grpc::Status ToGrpcStatus(const absl::Status& status) {
  if (status.ok()) return grpc::Status::OK;
  const int raw = static_cast<int>(status.code());
  const grpc::StatusCode code = (raw > 0 && raw <= static_cast<int>(grpc::UNAUTHENTICATED))
                                    ? static_cast<grpc::StatusCode>(raw)
                                    : grpc::StatusCode::UNKNOWN;
  std::string message(status.message());
  if (auto details = status.GetPayload(kGrpcErrorDetailsPayloadUrl); details.has_value()) {
    return grpc::Status(code, std::move(message), std::string(*details));
  }
  return grpc::Status(code, std::move(message));
}

absl::Status FromGrpcStatus(const grpc::Status& status) {
  if (status.ok()) return absl::OkStatus();
  const int raw = static_cast<int>(status.error_code());
  const absl::StatusCode code = (raw > 0 && raw <= static_cast<int>(grpc::UNAUTHENTICATED))
                                    ? static_cast<absl::StatusCode>(raw)
                                    : absl::StatusCode::kUnknown;
  absl::Status result(code, status.error_message());
  if (!status.error_details().empty()) {
    result.SetPayload(kGrpcErrorDetailsPayloadUrl, absl::Cord(status.error_details()));
  }
  return result;
}

std::string_view GrpcCodeName(grpc::StatusCode code) {
  switch (code) {
    case grpc::StatusCode::OK:
      return "OK";
    case grpc::StatusCode::CANCELLED:
      return "CANCELLED";
    case grpc::StatusCode::UNKNOWN:
      return "UNKNOWN";
    case grpc::StatusCode::INVALID_ARGUMENT:
      return "INVALID_ARGUMENT";
    case grpc::StatusCode::DEADLINE_EXCEEDED:
      return "DEADLINE_EXCEEDED";
    case grpc::StatusCode::NOT_FOUND:
      return "NOT_FOUND";
    case grpc::StatusCode::ALREADY_EXISTS:
      return "ALREADY_EXISTS";
    case grpc::StatusCode::PERMISSION_DENIED:
      return "PERMISSION_DENIED";
    case grpc::StatusCode::RESOURCE_EXHAUSTED:
      return "RESOURCE_EXHAUSTED";
    case grpc::StatusCode::FAILED_PRECONDITION:
      return "FAILED_PRECONDITION";
    case grpc::StatusCode::ABORTED:
      return "ABORTED";
    case grpc::StatusCode::OUT_OF_RANGE:
      return "OUT_OF_RANGE";
    case grpc::StatusCode::UNIMPLEMENTED:
      return "UNIMPLEMENTED";
    case grpc::StatusCode::INTERNAL:
      return "INTERNAL";
    case grpc::StatusCode::UNAVAILABLE:
      return "UNAVAILABLE";
    case grpc::StatusCode::DATA_LOSS:
      return "DATA_LOSS";
    case grpc::StatusCode::UNAUTHENTICATED:
      return "UNAUTHENTICATED";
    default:
      return "UNKNOWN";
  }
}

}  // namespace padlock::runtime
