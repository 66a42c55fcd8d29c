#include "services/common/postgres/migrations.h"

#include <algorithm>
#include <map>
#include <optional>
#include <pqxx/pqxx>
#include <set>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "services/common/postgres/conninfo.h"
#include "services/common/postgres/errors.h"

namespace padlock::postgres {
namespace {

constexpr char kCreateTable[] =
    "CREATE TABLE IF NOT EXISTS schema_migrations ("
    " version bigint PRIMARY KEY,"
    " name text NOT NULL,"
    " applied_at timestamptz NOT NULL DEFAULT now())";

std::string Describe(const Migration& m) { return absl::StrCat(m.version, " (", m.name, ")"); }

}  // namespace

absl::Status ValidateMigrations(const std::vector<Migration>& migrations) {
  std::set<int64_t> seen;
  for (const Migration& m : migrations) {
    if (m.version <= 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("migration ", Describe(m), ": version must be positive"));
    }
    if (!seen.insert(m.version).second) {
      return absl::InvalidArgumentError(
          absl::StrCat("migration version ", m.version, " appears more than once"));
    }
    if (absl::StripAsciiWhitespace(m.sql).empty()) {
      return absl::InvalidArgumentError(absl::StrCat("migration ", Describe(m), ": empty SQL"));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<MigrationResult> Migrate(const MigrateOptions& options,
                                        std::vector<Migration> migrations) {
  if (absl::Status s = ValidateMigrations(migrations); !s.ok()) return s;
  std::sort(migrations.begin(), migrations.end(),
            [](const Migration& a, const Migration& b) { return a.version < b.version; });
  const int64_t newest_known = migrations.empty() ? 0 : migrations.back().version;

  std::string step = "migrate: connect";
  std::optional<pqxx::connection> connection;
  try {
    connection.emplace(AddConnInfoDefault(
        options.conninfo, "connect_timeout",
        absl::StrCat(std::max<int64_t>(2, absl::ToInt64Seconds(options.connect_timeout)))));
    {
      step = "migrate: wait for migration lock";
      pqxx::nontransaction session(*connection);
      session.exec(absl::StrCat("SET statement_timeout = ",
                                std::max<int64_t>(0, absl::ToInt64Milliseconds(options.timeout))));
      // Session-level lock: held across the per-migration transactions below and released by
      // pg_advisory_unlock or, if this process dies, by the server when the session ends.
      session.exec_params("SELECT pg_advisory_lock($1)", options.lock_key);
    }
    {
      step = "migrate: create schema_migrations";
      pqxx::work txn(*connection);
      txn.exec(kCreateTable);
      txn.commit();
    }
    std::map<int64_t, std::string> applied;
    {
      step = "migrate: read schema_migrations";
      pqxx::work txn(*connection);
      for (const auto& row : txn.exec("SELECT version, name FROM schema_migrations")) {
        applied.emplace(row[0].as<int64_t>(), row[1].as<std::string>());
      }
      txn.commit();
    }

    MigrationResult result;
    result.previous_version = applied.empty() ? 0 : applied.rbegin()->first;
    std::set<int64_t> known;
    for (const Migration& m : migrations) known.insert(m.version);
    for (const auto& [version, name] : applied) {
      if (known.count(version) != 0) continue;
      // Leaves the lock to the session's end (below), like every other early return.
      return absl::FailedPreconditionError(
          version > newest_known
              ? absl::StrCat("database schema is at version ", result.previous_version,
                             ", newer than the newest this binary knows (", newest_known,
                             "); refusing to run against it")
              : absl::StrCat("database has migration ", version, " (", name,
                             ") that this binary does not know; refusing to run against it"));
    }

    for (const Migration& m : migrations) {
      if (applied.count(m.version) != 0) continue;
      step = absl::StrCat("migration ", Describe(m));
      pqxx::work txn(*connection);
      txn.exec(m.sql);
      txn.exec_params("INSERT INTO schema_migrations (version, name) VALUES ($1, $2)", m.version,
                      m.name);
      txn.commit();
      result.applied.push_back(m.version);
    }
    result.current_version = std::max(result.previous_version, newest_known);

    step = "migrate: release migration lock";
    pqxx::nontransaction session(*connection);
    session.exec_params("SELECT pg_advisory_unlock($1)", options.lock_key);
    return result;
  } catch (...) {
    // Destroying the connection (when this function returns) ends the session, which also
    // releases the advisory lock.
    return MapException(std::current_exception(), step).status;
  }
}

}  // namespace padlock::postgres
