#include "services/common/runtime/status.h"

#include "absl/strings/cord.h"
#include "gtest/gtest.h"

namespace padlock::runtime {
namespace {

TEST(Status, MapsEveryCodeToGrpcAndBack) {
  const std::vector<std::pair<absl::StatusCode, grpc::StatusCode>> pairs = {
      {absl::StatusCode::kCancelled, grpc::StatusCode::CANCELLED},
      {absl::StatusCode::kUnknown, grpc::StatusCode::UNKNOWN},
      {absl::StatusCode::kInvalidArgument, grpc::StatusCode::INVALID_ARGUMENT},
      {absl::StatusCode::kDeadlineExceeded, grpc::StatusCode::DEADLINE_EXCEEDED},
      {absl::StatusCode::kNotFound, grpc::StatusCode::NOT_FOUND},
      {absl::StatusCode::kAlreadyExists, grpc::StatusCode::ALREADY_EXISTS},
      {absl::StatusCode::kPermissionDenied, grpc::StatusCode::PERMISSION_DENIED},
      {absl::StatusCode::kResourceExhausted, grpc::StatusCode::RESOURCE_EXHAUSTED},
      {absl::StatusCode::kFailedPrecondition, grpc::StatusCode::FAILED_PRECONDITION},
      {absl::StatusCode::kAborted, grpc::StatusCode::ABORTED},
      {absl::StatusCode::kOutOfRange, grpc::StatusCode::OUT_OF_RANGE},
      {absl::StatusCode::kUnimplemented, grpc::StatusCode::UNIMPLEMENTED},
      {absl::StatusCode::kInternal, grpc::StatusCode::INTERNAL},
      {absl::StatusCode::kUnavailable, grpc::StatusCode::UNAVAILABLE},
      {absl::StatusCode::kDataLoss, grpc::StatusCode::DATA_LOSS},
      {absl::StatusCode::kUnauthenticated, grpc::StatusCode::UNAUTHENTICATED},
  };
  ASSERT_EQ(pairs.size(), 16u);  // every code but OK
  for (const auto& [absl_code, grpc_code] : pairs) {
    const grpc::Status out = ToGrpcStatus(absl::Status(absl_code, "why"));
    EXPECT_EQ(out.error_code(), grpc_code) << absl::StatusCodeToString(absl_code);
    EXPECT_EQ(out.error_message(), "why");
    const absl::Status back = FromGrpcStatus(grpc::Status(grpc_code, "because"));
    EXPECT_EQ(back.code(), absl_code) << GrpcCodeName(grpc_code);
    EXPECT_EQ(back.message(), "because");
  }
}

TEST(Status, MapsOkBothWays) {
  EXPECT_TRUE(ToGrpcStatus(absl::OkStatus()).ok());
  EXPECT_TRUE(FromGrpcStatus(grpc::Status::OK).ok());
}

TEST(Status, MapsCodesOutsideTheEnumToUnknown) {
  EXPECT_EQ(ToGrpcStatus(absl::Status(static_cast<absl::StatusCode>(42), "x")).error_code(),
            grpc::StatusCode::UNKNOWN);
  EXPECT_EQ(FromGrpcStatus(grpc::Status(static_cast<grpc::StatusCode>(20), "x")).code(),
            absl::StatusCode::kUnknown);
}

TEST(Status, CarriesErrorDetailsBothWays) {
  const std::string details("\x08\x09\x12\x03why", 7);
  const absl::Status in = FromGrpcStatus(grpc::Status(grpc::StatusCode::ABORTED, "m", details));
  ASSERT_TRUE(in.GetPayload(kGrpcErrorDetailsPayloadUrl).has_value());
  EXPECT_EQ(std::string(*in.GetPayload(kGrpcErrorDetailsPayloadUrl)), details);
  EXPECT_EQ(ToGrpcStatus(in).error_details(), details);
}

TEST(Status, NamesEveryCodeAsGrpcDoes) {
  EXPECT_EQ(GrpcCodeName(grpc::StatusCode::OK), "OK");
  EXPECT_EQ(GrpcCodeName(grpc::StatusCode::UNIMPLEMENTED), "UNIMPLEMENTED");
  EXPECT_EQ(GrpcCodeName(grpc::StatusCode::RESOURCE_EXHAUSTED), "RESOURCE_EXHAUSTED");
  EXPECT_EQ(GrpcCodeName(grpc::StatusCode::UNAUTHENTICATED), "UNAUTHENTICATED");
  EXPECT_EQ(GrpcCodeName(static_cast<grpc::StatusCode>(20)), "UNKNOWN");
}

}  // namespace
}  // namespace padlock::runtime
