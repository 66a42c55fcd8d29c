#include "clients/sdk/errors.h"

#include "absl/strings/cord.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace padlock::client {

absl::Status UntrustedIdentityError(std::string_view message) {
  absl::Status status =
      absl::FailedPreconditionError(absl::string_view(message.data(), message.size()));
  status.SetPayload(kUntrustedIdentityPayload, absl::Cord());
  return status;
}

bool IsUntrustedIdentity(const absl::Status& status) {
  return status.GetPayload(kUntrustedIdentityPayload).has_value();
}

absl::Status IdentityChangedError(const std::string& user, const std::vector<uint32_t>& devices) {
  std::string names;
  std::string payload = user;
  payload.push_back('\0');
  for (uint32_t d : devices) {
    absl::StrAppend(&names, names.empty() ? "" : ", ", d);
    absl::StrAppend(&payload, d, ",");
  }
  absl::Status status = absl::FailedPreconditionError(absl::StrCat(
      "security code changed: ", user, "'s device ", names, " has a new identity key; messages to ",
      user,
      " are held until you accept it (compare safety numbers, then accept the new identity)"));
  status.SetPayload(kIdentityChangedPayload, absl::Cord(payload));
  return status;
}

std::optional<std::pair<std::string, std::vector<uint32_t>>> IdentityChanged(
    const absl::Status& status) {
  absl::optional<absl::Cord> payload = status.GetPayload(kIdentityChangedPayload);
  if (!payload.has_value()) return std::nullopt;
  const std::string raw(*payload);
  const size_t nul = raw.find('\0');
  if (nul == std::string::npos) return std::nullopt;
  std::vector<uint32_t> devices;
  for (absl::string_view part : absl::StrSplit(raw.substr(nul + 1), ',', absl::SkipEmpty())) {
    uint32_t d = 0;
    if (absl::SimpleAtoi(part, &d)) devices.push_back(d);
  }
  return std::make_pair(raw.substr(0, nul), std::move(devices));
}

}  // namespace padlock::client
