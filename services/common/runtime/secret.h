#pragma once
// Parsing of the cluster secrets given in the environment (PADLOCK_TOKEN_SECRET,
// PADLOCK_DEDUPE_SECRET, ...).

#include <cstddef>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"

namespace padlock::runtime {

inline constexpr size_t kMinSecretBytes = 32;

// Decodes a secret given as hex (only [0-9a-fA-F], even length) or base64 (standard or URL-safe
// alphabet, padding optional) to raw bytes. InvalidArgument naming `variable` (never quoting the
// value) when it is neither or decodes to fewer than kMinSecretBytes bytes.
absl::StatusOr<std::string> ParseSecret(std::string_view value, std::string_view variable);

}  // namespace padlock::runtime
