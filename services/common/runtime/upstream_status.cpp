#include "services/common/runtime/upstream_status.h"

#include <string>

#include "absl/strings/ascii.h"
#include "services/common/runtime/absl_compat.h"
#include "services/common/runtime/logging.h"
#include "services/common/runtime/status.h"

namespace padlock::runtime {
namespace {

// Digits starting at i; returns how many (0 when none).
size_t DigitsAt(std::string_view s, size_t i) {
  size_t n = 0;
  while (i + n < s.size() && absl::ascii_isdigit(static_cast<unsigned char>(s[i + n]))) ++n;
  return n;
}

bool DottedQuadAt(std::string_view s, size_t i) {
  for (int part = 0; part < 4; ++part) {
    const size_t n = DigitsAt(s, i);
    if (n == 0 || n > 3) return false;
    i += n;
    if (part < 3) {
      if (i >= s.size() || s[i] != '.') return false;
      ++i;
    }
  }
  return true;
}

}  // namespace

bool ContainsNetworkAddress(std::string_view text) {
  const std::string lower = absl::AsciiStrToLower(ToAbsl(text));
  for (const char* scheme : {"ipv4:", "ipv6:", "unix:"}) {
    if (lower.find(scheme) != std::string::npos) return true;
  }
  for (size_t i = 0; i < text.size(); ++i) {
    const unsigned char c = static_cast<unsigned char>(text[i]);
    const bool starts_token =
        i == 0 || !absl::ascii_isalnum(static_cast<unsigned char>(text[i - 1]));
    if (absl::ascii_isdigit(c) && starts_token && DottedQuadAt(text, i)) return true;
    if (c == '[') {
      // [2001:db8::1] or [::1]:7400
      const size_t close = text.find(']', i);
      if (close != std::string_view::npos &&
          text.substr(i + 1, close - i - 1).find(':') != std::string_view::npos) {
        return true;
      }
    }
    if (c == ':' && i > 0 && (absl::ascii_isalnum(static_cast<unsigned char>(text[i - 1])) ||
                              text[i - 1] == ']')) {
      const size_t n = DigitsAt(text, i + 1);
      const bool ends = i + 1 + n == text.size() ||
                        !absl::ascii_isalnum(static_cast<unsigned char>(text[i + 1 + n]));
      if (n >= 2 && n <= 5 && ends) return true;  // host:7400
    }
  }
  return false;
}

grpc::Status PublicUpstreamStatus(std::string_view upstream, const grpc::Status& status) {
  if (status.ok()) return status;
  const std::string name(upstream);
  const std::string code(GrpcCodeName(status.error_code()));
  std::string message;
  switch (status.error_code()) {
    case grpc::StatusCode::UNAVAILABLE:
      message = name + " unavailable: retry with backoff";
      break;
    case grpc::StatusCode::DEADLINE_EXCEEDED:
      message = name + " did not answer in time: retry with backoff";
      break;
    case grpc::StatusCode::CANCELLED:
      message = name + " call cancelled: retry";
      break;
    case grpc::StatusCode::UNKNOWN:
    case grpc::StatusCode::INTERNAL:
    case grpc::StatusCode::UNIMPLEMENTED:
    case grpc::StatusCode::DATA_LOSS:
      message = name + " failed (" + code + ")";
      break;
    default:
      if (!ContainsNetworkAddress(status.error_message())) return status;
      message = name + " refused the call (" + code + ")";
      break;
  }
  LogWarn("upstream call failed", {{"upstream", name},
                                   {"code", code},
                                   {"error", status.error_message()}});
  return grpc::Status(status.error_code(), std::move(message), status.error_details());
}

}  // namespace padlock::runtime
