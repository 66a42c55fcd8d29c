#pragma once
// Versioned schema migrations, applied at start-up under a PostgreSQL advisory lock so that
// replicas starting together apply each migration exactly once.
//
// Migrations usually come from `NNNN_name.sql` files embedded into the binary by the CMake
// function padlock_embed_migrations() (embed_migrations.cmake). This header has no libpqxx in it.
//
// Environment (mapped by the service): PADLOCK_POSTGRES_DSN → conninfo,
// PADLOCK_POSTGRES_MIGRATE_TIMEOUT (e.g. "10m") → timeout, PADLOCK_POSTGRES_MIGRATE (true/false,
// default true: whether this replica migrates at start-up) → whether to call Migrate.

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace padlock::postgres {

struct Migration {
  int64_t version = 0;  // > 0, unique; applied in increasing order
  std::string name = {};  // for people and for schema_migrations.name
  // One or more SQL statements, run in one transaction. Must not manage transactions itself
  // and cannot use statements that refuse to run in one (CREATE INDEX CONCURRENTLY, VACUUM).
  std::string sql = {};
};

// Advisory lock key every Padlock migrator takes ("padlock" in ASCII).
inline constexpr int64_t kMigrationLockKey = 0x7061646c6f636b;

struct MigrateOptions {
  std::string conninfo = {};  // libpq connection string; never logged
  // statement_timeout of the migration session: bounds both the wait for another replica's
  // lock and each migration statement. Zero: no limit.
  absl::Duration timeout = absl::Minutes(10);
  absl::Duration connect_timeout = absl::Seconds(5);
  int64_t lock_key = kMigrationLockKey;
};

struct MigrationResult {
  int64_t previous_version = 0;  // highest version applied before this run; 0 = none
  int64_t current_version = 0;   // highest version applied after this run
  std::vector<int64_t> applied;  // versions this run applied, in order
};

// InvalidArgument when a version is not positive, appears twice, or a migration has empty SQL.
absl::Status ValidateMigrations(const std::vector<Migration>& migrations);

// Applies the migrations that the database has not seen, in version order, each in its own
// transaction, recording them in schema_migrations(version, name, applied_at) (created on
// first use). Opens one connection of its own and holds pg_advisory_lock(lock_key) on it for
// the whole run; concurrent callers wait for it and then find the work done.
//
// Errors: InvalidArgument (see ValidateMigrations); Unavailable (cannot connect, connection
// lost); DeadlineExceeded (`timeout` passed, e.g. waiting for the lock); FailedPrecondition when
// the database holds a version this binary does not know (a newer binary migrated it: refuse to
// run rather than corrupt it). A failing migration is rolled back, the ones before it stay
// applied, and its mapped status (errors.h) is returned with "migration <version> (<name>)" in
// the message; later migrations are not attempted.
absl::StatusOr<MigrationResult> Migrate(const MigrateOptions& options,
                                        std::vector<Migration> migrations);

}  // namespace padlock::postgres
