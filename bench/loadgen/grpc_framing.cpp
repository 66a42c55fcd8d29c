#include "bench/loadgen/grpc_framing.h"

#include <algorithm>

#include "absl/strings/str_cat.h"

namespace padlock::loadgen {

void AppendGrpcMessage(const google::protobuf::MessageLite& message, std::string& out) {
  const size_t size = message.ByteSizeLong();
  const size_t at = out.size();
  out.resize(at + kGrpcPrefixBytes + size);
  auto* p = reinterpret_cast<uint8_t*>(out.data() + at);
  p[0] = 0;  // not compressed
  p[1] = static_cast<uint8_t>(size >> 24);
  p[2] = static_cast<uint8_t>(size >> 16);
  p[3] = static_cast<uint8_t>(size >> 8);
  p[4] = static_cast<uint8_t>(size);
  // ByteSizeLong cached the sizes just now.
  message.SerializeWithCachedSizesToArray(p + kGrpcPrefixBytes);
}

absl::Status GrpcDeframer::ParsePrefix(const char* p, size_t& length) const {
  const auto* u = reinterpret_cast<const uint8_t*>(p);
  if (u[0] != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("compressed gRPC message (flag ", u[0], ") without negotiated encoding"));
  }
  length = (size_t{u[1]} << 24) | (size_t{u[2]} << 16) | (size_t{u[3]} << 8) | size_t{u[4]};
  if (length > max_message_bytes_) {
    return absl::ResourceExhaustedError(
        absl::StrCat("gRPC message of ", length, " bytes, above ", max_message_bytes_));
  }
  return absl::OkStatus();
}

absl::Status GrpcDeframer::Feed(absl::string_view bytes,
                                absl::FunctionRef<void(absl::string_view)> on_message) {
  while (!bytes.empty()) {
    if (buffer_.empty()) {
      // Whole messages straight out of the caller's bytes.
      if (bytes.size() >= kGrpcPrefixBytes) {
        size_t length = 0;
        if (absl::Status s = ParsePrefix(bytes.data(), length); !s.ok()) return s;
        if (bytes.size() - kGrpcPrefixBytes >= length) {
          on_message(bytes.substr(kGrpcPrefixBytes, length));
          bytes.remove_prefix(kGrpcPrefixBytes + length);
          continue;
        }
        length_ = length;  // the rest of `bytes` is this message's start
      }
      buffer_.assign(bytes.data(), bytes.size());
      return absl::OkStatus();
    }
    if (buffer_.size() < kGrpcPrefixBytes) {
      const size_t take = std::min(kGrpcPrefixBytes - buffer_.size(), bytes.size());
      buffer_.append(bytes.data(), take);
      bytes.remove_prefix(take);
      if (buffer_.size() < kGrpcPrefixBytes) return absl::OkStatus();
      if (absl::Status s = ParsePrefix(buffer_.data(), length_); !s.ok()) return s;
    }
    const size_t take = std::min(kGrpcPrefixBytes + length_ - buffer_.size(), bytes.size());
    buffer_.append(bytes.data(), take);
    bytes.remove_prefix(take);
    if (buffer_.size() == kGrpcPrefixBytes + length_) {
      on_message(absl::string_view(buffer_).substr(kGrpcPrefixBytes));
      buffer_.clear();
    }
  }
  return absl::OkStatus();
}

}  // namespace padlock::loadgen
