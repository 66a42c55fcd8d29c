#include "services/common/postgres/conninfo.h"

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace padlock::postgres {
namespace {

bool IsUri(absl::string_view conninfo) {
  return absl::StartsWith(conninfo, "postgresql://") || absl::StartsWith(conninfo, "postgres://");
}

// True when `key` appears as a keyword: at the start or after a separator, followed by '='
// (optionally after spaces in the keyword/value form).
bool SetsKey(absl::string_view conninfo, absl::string_view key, bool uri) {
  for (size_t pos = conninfo.find(key); pos != absl::string_view::npos;
       pos = conninfo.find(key, pos + 1)) {
    const char before = pos == 0 ? ' ' : conninfo[pos - 1];
    const bool starts = uri ? (before == '?' || before == '&') : absl::ascii_isspace(before);
    if (!starts) continue;
    size_t after = pos + key.size();
    while (!uri && after < conninfo.size() && absl::ascii_isspace(conninfo[after])) ++after;
    if (after < conninfo.size() && conninfo[after] == '=') return true;
  }
  return false;
}

}  // namespace

std::string AddConnInfoDefault(absl::string_view conninfo, absl::string_view key,
                               absl::string_view value) {
  const bool uri = IsUri(conninfo);
  if (SetsKey(conninfo, key, uri)) return std::string(conninfo);
  if (uri) {
    const char* separator = absl::StrContains(conninfo, '?') ? "&" : "?";
    return absl::StrCat(conninfo, separator, key, "=", value);
  }
  if (conninfo.empty()) return absl::StrCat(key, "=", value);
  return absl::StrCat(conninfo, " ", key, "=", value);
}

}  // namespace padlock::postgres
