#pragma once
// Small helpers for libpq connection strings (keyword/value form or postgres:// URIs).

#include <string>

#include "absl/strings/string_view.h"

namespace padlock::postgres {

// Returns `conninfo` with `key=value` added, in the syntax `conninfo` uses: a space-separated
// pair for the keyword/value form (also for an empty string), a query parameter for a
// postgres:// or postgresql:// URI. A `conninfo` that already sets `key` is returned unchanged,
// so an operator's explicit setting wins. `value` must not need quoting (digits, plain words).
std::string AddConnInfoDefault(absl::string_view conninfo, absl::string_view key,
                               absl::string_view value);

}  // namespace padlock::postgres
