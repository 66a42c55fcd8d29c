#include "services/common/postgres/errors.h"

#include <pqxx/except>
#include <string>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace padlock::postgres {
namespace {

// First line of a libpq/libpqxx message without the "ERROR:" / "FATAL:" severity prefix. Later
// lines hold DETAIL (which quotes key values) and the query: never pass them on.
std::string PrimaryMessage(const char* what) {
  absl::string_view text(what);
  text = text.substr(0, text.find('\n'));
  for (absl::string_view prefix : {"ERROR:", "FATAL:", "PANIC:"}) {
    if (absl::StartsWith(text, prefix)) {
      text.remove_prefix(prefix.size());
      break;
    }
  }
  return std::string(absl::StripAsciiWhitespace(text));
}

MappedError FromSqlError(const pqxx::sql_error& e, absl::string_view context) {
  const std::string& state = e.sqlstate();
  const absl::string_view cls = absl::string_view(state).substr(0, 2);
  auto with_text = [&](absl::string_view what) {
    return absl::StrCat(context, ": ", what, ": ", PrimaryMessage(e.what()), " (SQLSTATE ", state,
                        ")");
  };
  if (state == "23505") return {absl::AlreadyExistsError(with_text("unique violation")), false};
  if (cls == "23") {
    return {absl::FailedPreconditionError(with_text("integrity constraint violation")), false};
  }
  if (cls == "40") return {absl::AbortedError(with_text("transaction rolled back")), false};
  if (state == "57014") {
    return {absl::DeadlineExceededError(with_text("statement canceled (statement_timeout)")),
            false};
  }
  if (cls == "08" || state == "57P01" || state == "57P02" || state == "57P03") {
    return {absl::UnavailableError(with_text("postgres connection lost")), true};
  }
  if (state == "25006") {
    return {absl::UnavailableError(with_text("postgres is read-only (a standby?)")), true};
  }
  if (cls == "53" || state == "55P03") {
    return {absl::UnavailableError(with_text("postgres temporarily unable to serve")), false};
  }
  if (cls == "22") {
    // "invalid input syntax for type uuid: \"...\"" and friends quote the value: drop the text.
    return {absl::InvalidArgumentError(
                absl::StrCat(context, ": invalid value for the statement (SQLSTATE ", state, ")")),
            false};
  }
  return {absl::InternalError(with_text("postgres error")), false};
}

}  // namespace

MappedError MapException(const std::exception_ptr& error, absl::string_view context) {
  // Order matters: the more specific classes first. in_doubt_error and transaction_rollback are
  // not sql_errors in libpqxx 6 (they carry no SQLSTATE).
  try {
    std::rethrow_exception(error);
  } catch (const pqxx::in_doubt_error& e) {
    return {absl::UnavailableError(absl::StrCat(
                context, ": connection lost during commit, outcome unknown (the transaction may "
                         "or may not have been applied): ",
                PrimaryMessage(e.what()))),
            true};
  } catch (const pqxx::broken_connection& e) {
    return {absl::UnavailableError(
                absl::StrCat(context, ": postgres connection lost: ", PrimaryMessage(e.what()))),
            true};
  } catch (const pqxx::transaction_rollback& e) {
    // serialization_failure, deadlock_detected, statement_completion_unknown.
    return {absl::AbortedError(
                absl::StrCat(context, ": transaction rolled back: ", PrimaryMessage(e.what()))),
            false};
  } catch (const pqxx::sql_error& e) {
    return FromSqlError(e, context);
  } catch (const pqxx::usage_error& e) {
    return {absl::InternalError(absl::StrCat(context, ": libpqxx misuse: ", e.what())), false};
  } catch (const pqxx::argument_error& e) {
    return {absl::InternalError(absl::StrCat(context, ": libpqxx argument: ", e.what())), false};
  } catch (const pqxx::conversion_error&) {
    // The message quotes the field's contents.
    return {absl::InternalError(absl::StrCat(context, ": cannot convert a result field")), false};
  } catch (const pqxx::unexpected_rows& e) {
    return {absl::InternalError(absl::StrCat(context, ": ", e.what())), false};
  } catch (const pqxx::failure& e) {
    return {absl::InternalError(absl::StrCat(context, ": postgres failure: ",
                                             PrimaryMessage(e.what()))),
            false};
  } catch (const std::exception& e) {
    return {absl::InternalError(absl::StrCat(context, ": unexpected exception: ", e.what())),
            false};
  } catch (...) {
    return {absl::InternalError(absl::StrCat(context, ": unexpected non-standard exception")),
            false};
  }
}

}  // namespace padlock::postgres
