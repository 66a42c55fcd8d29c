#pragma once
// The one JSON string escaper (RFC 8259) of the tree: the structured logs, the `padlock` CLI's
// --json output and the load generator's reports all write strings through it.
//
// Whatever the bytes, the result is valid JSON: `"` and `\` are escaped, control characters
// (U+0000..U+001F and DEL) become \n, \r, \t, \b, \f or \u00XX, valid UTF-8 is kept as it is, and
// every byte that is not part of a valid UTF-8 sequence (stray continuation bytes, cut sequences,
// overlong forms, surrogates, code points above U+10FFFF) becomes one U+FFFD. Text a peer sends is
// arbitrary bytes, so this matters for more than robustness: a parser must never choke on it.
// Thread-safe (no state).

#include <string>
#include <string_view>

namespace padlock::runtime {

// Appends the escaped characters of `value` to `out`, without the surrounding quotes.
void AppendJsonEscaped(std::string& out, std::string_view value);
// Appends `value` to `out` as a quoted JSON string.
void AppendJsonString(std::string& out, std::string_view value);
// `value` as a quoted JSON string.
std::string JsonString(std::string_view value);

}  // namespace padlock::runtime
