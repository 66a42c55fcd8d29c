#pragma once
// The one place where libpqxx exceptions become absl::Status (STYLE.md "Errors").

#include <exception>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace padlock::postgres {

// What a caught exception means for the caller and for the connection that raised it.
struct MappedError {
  absl::Status status;
  // True when the connection must not be reused (lost, shut down by the server, or left in an
  // unknown state); the pool then discards it and opens a fresh one on next use.
  bool connection_lost = false;
};

// Maps `error` (anything thrown while talking to PostgreSQL) to a status. `context` names the
// operation ("claim bundle for alice:2") and starts the message. Messages never carry statement
// parameters: server text is kept only where PostgreSQL does not echo values into it.
//
//   pqxx::in_doubt_error                        -> Unavailable, "commit outcome unknown"
//   pqxx::broken_connection, SQLSTATE 08xxx,
//     57P01..57P03 (shutdown, cannot connect)   -> Unavailable (connection lost)
//   25006 read-only transaction (a standby)     -> Unavailable (connection lost: reconnect)
//   53xxx insufficient resources, 55P03 lock
//     not available (lock_timeout)              -> Unavailable
//   23505 unique_violation                      -> AlreadyExists
//   other 23xxx (foreign key, check, not null,
//     exclusion)                                -> FailedPrecondition
//   40xxx, serialization_failure,
//     deadlock_detected                         -> Aborted (redo the transaction)
//   57014 query_canceled (statement_timeout)    -> DeadlineExceeded
//   22xxx data exception (bad value)            -> InvalidArgument (server text dropped: it
//                                                  quotes the offending value)
//   any other error or exception                -> Internal
MappedError MapException(const std::exception_ptr& error, absl::string_view context);

}  // namespace padlock::postgres
