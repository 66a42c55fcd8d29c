#include "services/common/device_lists/device_list_summary.h"


#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "services/common/runtime/absl_compat.h"

namespace padlock::device_lists {

std::string SummaryKey(std::string_view user_id) {
  return absl::StrCat("dl:{", ToAbsl(user_id), "}");
}

std::string EncodeSummary(const Summary& summary) {
  if (!summary.listed) return "n";
  std::string out = absl::StrCat("a ", summary.version);
  for (const SummaryDevice& d : summary.devices) {
    absl::StrAppend(&out, " ", d.device_id, ":", d.registration_id);
  }
  return out;
}

std::optional<Summary> ParseSummary(std::string_view text) {
  if (text == "n") return Summary{};
  std::vector<absl::string_view> parts = absl::StrSplit(ToAbsl(text), ' ');
  if (parts.size() < 2 || parts[0] != "a") return std::nullopt;
  Summary summary;
  summary.listed = true;
  if (!absl::SimpleAtoi(parts[1], &summary.version) || summary.version == 0) return std::nullopt;
  for (size_t i = 2; i < parts.size(); ++i) {
    const size_t colon = parts[i].find(':');
    if (colon == absl::string_view::npos) return std::nullopt;
    SummaryDevice device;
    if (!absl::SimpleAtoi(parts[i].substr(0, colon), &device.device_id) ||
        !absl::SimpleAtoi(parts[i].substr(colon + 1), &device.registration_id) ||
        device.device_id == 0) {
      return std::nullopt;
    }
    if (!summary.devices.empty() && summary.devices.back().device_id >= device.device_id) {
      return std::nullopt;
    }
    summary.devices.push_back(device);
  }
  // Only the canonical form (no signs, spaces or leading zeros that SimpleAtoi would forgive).
  if (EncodeSummary(summary) != text) return std::nullopt;
  return summary;
}

}  // namespace padlock::device_lists
