#pragma once
// Syntax of the ids every service accepts (DESIGN.md §3). Pure functions, thread-safe.

#include <string_view>

namespace padlock::statement {

// True for a phone number in E.164 form: "+", a non-zero digit, then 6 to 14 more digits
// (7 to 15 digits in all), nothing else.
bool IsPhoneNumberUserId(std::string_view user_id);

// True for a username: 3 to 32 characters from [a-z0-9._-] (lower case only).
bool IsUsernameUserId(std::string_view user_id);

// True when `user_id` is a phone number (IsPhoneNumberUserId) or a username (IsUsernameUserId).
// The two forms never overlap: a username cannot contain "+".
bool IsValidUserId(std::string_view user_id);

}  // namespace padlock::statement
