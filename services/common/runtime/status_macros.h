#pragma once
// Early-return helpers for absl::Status / absl::StatusOr (Debian's Abseil 20220623 ships none):
//
//   absl::Status Save(const Thing& t) {
//     RETURN_IF_ERROR(Validate(t));                      // returns Validate's status if not OK
//     ASSIGN_OR_RETURN(std::string bytes, Encode(t));    // declares `bytes`, or returns the error
//     ASSIGN_OR_RETURN(existing_, Load(t.id()));         // assigns to an existing lvalue
//     return Store(bytes);
//   }
//
// Both work in functions returning absl::Status or absl::StatusOr<U>. The error is returned as it
// is (code and message unchanged). ASSIGN_OR_RETURN expands to more than one statement: do not use
// it as the only statement of an unbraced `if`.

#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace padlock::runtime::status_internal {

inline const absl::Status& AsStatus(const absl::Status& s) { return s; }
inline absl::Status AsStatus(absl::Status&& s) { return std::move(s); }
template <typename T>
const absl::Status& AsStatus(const absl::StatusOr<T>& s) {
  return s.status();
}

}  // namespace padlock::runtime::status_internal

#define PADLOCK_STATUS_CONCAT_INNER(a, b) a##b
#define PADLOCK_STATUS_CONCAT(a, b) PADLOCK_STATUS_CONCAT_INNER(a, b)

#ifndef RETURN_IF_ERROR
#define RETURN_IF_ERROR(expr)                                                                 \
  do {                                                                                        \
    if (::absl::Status padlock_return_if_error_ =                                             \
            ::padlock::runtime::status_internal::AsStatus(expr);                              \
        !padlock_return_if_error_.ok()) {                                                     \
      return padlock_return_if_error_;                                                        \
    }                                                                                         \
  } while (false)
#endif

#ifndef ASSIGN_OR_RETURN
#define ASSIGN_OR_RETURN(lhs, rexpr) \
  PADLOCK_ASSIGN_OR_RETURN_IMPL(PADLOCK_STATUS_CONCAT(padlock_statusor_, __LINE__), lhs, rexpr)
#define PADLOCK_ASSIGN_OR_RETURN_IMPL(statusor, lhs, rexpr) \
  auto statusor = (rexpr);                                  \
  if (!statusor.ok()) return std::move(statusor).status();  \
  lhs = *std::move(statusor)
#endif
