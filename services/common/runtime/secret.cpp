#include "services/common/runtime/secret.h"

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "services/common/runtime/absl_compat.h"

namespace padlock::runtime {
namespace {

bool IsHex(std::string_view value) {
  if (value.empty() || value.size() % 2 != 0) return false;
  for (char c : value) {
    if (!absl::ascii_isxdigit(static_cast<unsigned char>(c))) return false;
  }
  return true;
}

}  // namespace

absl::StatusOr<std::string> ParseSecret(std::string_view value, std::string_view variable) {
  std::string decoded;
  if (IsHex(value)) {
    decoded = absl::HexStringToBytes(std::string(value));
  } else if (!absl::Base64Unescape(std::string(value), &decoded) &&
             !absl::WebSafeBase64Unescape(std::string(value), &decoded)) {
    return absl::InvalidArgumentError(
        absl::StrCat(ToAbsl(variable), ": neither hex nor base64 (give at least 32 random bytes)"));
  }
  if (decoded.size() < kMinSecretBytes) {
    return absl::InvalidArgumentError(absl::StrCat(
        ToAbsl(variable), ": decodes to ", decoded.size(), " bytes, at least 32 required"));
  }
  return decoded;
}

}  // namespace padlock::runtime
