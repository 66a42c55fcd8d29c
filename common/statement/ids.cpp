#include "common/statement/ids.h"

#include <algorithm>

namespace padlock::statement {
namespace {

// Locale-independent on purpose: std::isdigit / std::islower depend on the C locale.
bool IsAsciiDigit(char c) { return c >= '0' && c <= '9'; }

bool IsUsernameChar(char c) {
  return (c >= 'a' && c <= 'z') || IsAsciiDigit(c) || c == '.' || c == '_' || c == '-';
}

}  // namespace

bool IsPhoneNumberUserId(std::string_view user_id) {
  // "+" + 7..15 digits.
  if (user_id.size() < 1 + 7 || user_id.size() > 1 + 15) return false;
  if (user_id[0] != '+' || user_id[1] == '0') return false;
  return std::all_of(user_id.begin() + 1, user_id.end(), IsAsciiDigit);
}

bool IsUsernameUserId(std::string_view user_id) {
  if (user_id.size() < 3 || user_id.size() > 32) return false;
  return std::all_of(user_id.begin(), user_id.end(), IsUsernameChar);
}

bool IsValidUserId(std::string_view user_id) {
  return IsPhoneNumberUserId(user_id) || IsUsernameUserId(user_id);
}

}  // namespace padlock::statement
