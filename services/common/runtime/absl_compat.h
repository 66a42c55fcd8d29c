#pragma once
// Debian's Abseil 20220623 is built with its own absl::string_view (ABSL_OPTION_USE_STD_STRING_VIEW
// is 0), a type distinct from std::string_view: absl::StrCat, SimpleAtoi, StrSplit and friends do
// not accept a std::string_view, and absl::Status::message() does not convert to one. Padlock's
// interfaces use std::string_view; convert at the call with these (free, no copy).

#include <string_view>

#include "absl/strings/string_view.h"

namespace padlock {

inline absl::string_view ToAbsl(std::string_view s) { return absl::string_view(s.data(), s.size()); }
inline std::string_view ToStd(absl::string_view s) { return std::string_view(s.data(), s.size()); }

}  // namespace padlock
