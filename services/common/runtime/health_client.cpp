#include "services/common/runtime/health_client.h"

#include <grpcpp/client_context.h>
#include <grpcpp/completion_queue.h>
#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/support/byte_buffer.h>

#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "services/common/runtime/status.h"

namespace padlock::runtime {
namespace {

void AppendVarint(std::string& out, uint64_t value) {
  while (value >= 0x80) {
    out.push_back(static_cast<char>((value & 0x7F) | 0x80));
    value >>= 7;
  }
  out.push_back(static_cast<char>(value));
}

bool ReadVarint(std::string_view& in, uint64_t* value) {
  *value = 0;
  for (int shift = 0; shift < 64 && !in.empty(); shift += 7) {
    const auto byte = static_cast<unsigned char>(in.front());
    in.remove_prefix(1);
    *value |= static_cast<uint64_t>(byte & 0x7F) << shift;
    if ((byte & 0x80) == 0) return true;
  }
  return false;
}

// HealthCheckRequest { string service = 1; }
std::string EncodeRequest(std::string_view service) {
  std::string out;
  if (!service.empty()) {
    out.push_back(0x0A);  // field 1, length-delimited
    AppendVarint(out, service.size());
    out.append(service);
  }
  return out;
}

// HealthCheckResponse { ServingStatus status = 1; }, skipping unknown fields.
absl::StatusOr<HealthState> DecodeResponse(std::string_view in) {
  uint64_t status = 0;
  while (!in.empty()) {
    uint64_t key = 0;
    if (!ReadVarint(in, &key)) return absl::InternalError("malformed health response");
    const uint64_t field = key >> 3;
    const uint64_t wire_type = key & 7;
    uint64_t value = 0;
    switch (wire_type) {
      case 0:  // varint
        if (!ReadVarint(in, &value)) return absl::InternalError("malformed health response");
        if (field == 1) status = value;
        break;
      case 1:  // fixed64
        if (in.size() < 8) return absl::InternalError("malformed health response");
        in.remove_prefix(8);
        break;
      case 2:  // length-delimited
        if (!ReadVarint(in, &value) || value > in.size()) {
          return absl::InternalError("malformed health response");
        }
        in.remove_prefix(value);
        break;
      case 5:  // fixed32
        if (in.size() < 4) return absl::InternalError("malformed health response");
        in.remove_prefix(4);
        break;
      default:
        return absl::InternalError("malformed health response");
    }
  }
  if (status > 3) return HealthState::kUnknown;
  return static_cast<HealthState>(status);
}

}  // namespace

std::string_view HealthStateName(HealthState state) {
  switch (state) {
    case HealthState::kUnknown:
      return "UNKNOWN";
    case HealthState::kServing:
      return "SERVING";
    case HealthState::kNotServing:
      return "NOT_SERVING";
    case HealthState::kServiceUnknown:
      return "SERVICE_UNKNOWN";
  }
  return "UNKNOWN";
}

absl::StatusOr<HealthState> CheckHealth(const std::shared_ptr<grpc::Channel>& channel,
                                        std::string_view service, absl::Duration timeout) {
  const std::string request_bytes = EncodeRequest(service);
  grpc::Slice slice(request_bytes);
  grpc::ByteBuffer request(&slice, 1);

  grpc::ClientContext context;
  context.set_deadline(absl::ToChronoTime(absl::Now() + timeout));
  grpc::CompletionQueue cq;
  grpc::GenericStub stub(channel);
  auto call = stub.PrepareUnaryCall(&context, "/grpc.health.v1.Health/Check", request, &cq);
  call->StartCall();
  grpc::ByteBuffer response;
  grpc::Status status;
  int finish_tag = 0;
  call->Finish(&response, &status, &finish_tag);
  void* tag = nullptr;
  bool ok = false;
  // The deadline bounds the call, so Next returns; the queue is drained before it is destroyed.
  const bool got = cq.Next(&tag, &ok);
  cq.Shutdown();
  void* ignored_tag = nullptr;
  bool ignored_ok = false;
  while (cq.Next(&ignored_tag, &ignored_ok)) {
  }
  if (!got) return absl::InternalError("health check: completion queue shut down");
  if (!status.ok()) {
    absl::Status error = FromGrpcStatus(status);
    return absl::Status(error.code(), absl::StrCat("health check: ", error.message()));
  }
  std::vector<grpc::Slice> slices;
  if (!response.Dump(&slices).ok()) return absl::InternalError("health check: unreadable reply");
  std::string bytes;
  for (const grpc::Slice& s : slices) {
    bytes.append(reinterpret_cast<const char*>(s.begin()), s.size());
  }
  return DecodeResponse(bytes);
}

}  // namespace padlock::runtime
