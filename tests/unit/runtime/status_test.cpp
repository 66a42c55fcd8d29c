#include "services/common/runtime/status.h"
#include "services/common/runtime/upstream_status.h"

#include "absl/strings/cord.h"
#include "gmock/gmock.h"
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

namespace padlock::runtime {
namespace {

TEST(ContainsNetworkAddress, FindsTheAddressesGrpcPutsInItsErrors) {
  EXPECT_TRUE(ContainsNetworkAddress(
      "failed to connect to all addresses; last error: UNKNOWN: ipv4:127.0.0.1:17430: Failed to "
      "connect to remote host: Connection refused"));
  EXPECT_TRUE(ContainsNetworkAddress("Socket closed by 10.0.0.7"));
  EXPECT_TRUE(ContainsNetworkAddress("peer [2001:db8::1]:7420 went away"));
  EXPECT_TRUE(ContainsNetworkAddress("connect to message-queue:7420 failed"));
  EXPECT_TRUE(ContainsNetworkAddress("unix:/run/padlock.sock"));
  EXPECT_FALSE(ContainsNetworkAddress("user_id must match [a-z0-9._-]{3,32}"));
  EXPECT_FALSE(ContainsNetworkAddress("inbox full: retry after 1.5 s"));
  EXPECT_FALSE(ContainsNetworkAddress("device 2 of alice is not listed (version 3)"));
}

TEST(PublicUpstreamStatus, ReplacesTransportMessagesAndKeepsTheCode) {
  const grpc::Status raw(grpc::StatusCode::UNAVAILABLE,
                         "failed to connect to all addresses; last error: UNKNOWN: "
                         "ipv4:127.0.0.1:17430: Failed to connect to remote host");
  const grpc::Status shown = PublicUpstreamStatus("key-directory", raw);
  EXPECT_EQ(shown.error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_EQ(shown.error_message(), "key-directory unavailable: retry with backoff");

  for (grpc::StatusCode code :
       {grpc::StatusCode::DEADLINE_EXCEEDED, grpc::StatusCode::CANCELLED,
        grpc::StatusCode::UNKNOWN, grpc::StatusCode::INTERNAL, grpc::StatusCode::UNIMPLEMENTED,
        grpc::StatusCode::DATA_LOSS}) {
    const grpc::Status s =
        PublicUpstreamStatus("presence", grpc::Status(code, "Socket closed ipv4:10.1.2.3:7410"));
    EXPECT_EQ(s.error_code(), code);
    EXPECT_FALSE(ContainsNetworkAddress(s.error_message())) << s.error_message();
    EXPECT_THAT(s.error_message(), ::testing::StartsWith("presence "));
  }
}

TEST(PublicUpstreamStatus, KeepsOurServicesOwnMessages) {
  const grpc::Status refused(grpc::StatusCode::INVALID_ARGUMENT, "user_id: not a username");
  EXPECT_EQ(PublicUpstreamStatus("key-directory", refused).error_message(),
            "user_id: not a username");
  const grpc::Status leaky(grpc::StatusCode::FAILED_PRECONDITION, "replica 10.0.0.9 is behind");
  const grpc::Status shown = PublicUpstreamStatus("key-directory", leaky);
  EXPECT_EQ(shown.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_FALSE(ContainsNetworkAddress(shown.error_message()));
  EXPECT_TRUE(PublicUpstreamStatus("presence", grpc::Status::OK).ok());
}

}  // namespace
}  // namespace padlock::runtime
