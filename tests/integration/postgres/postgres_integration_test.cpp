// padlock_postgres against a real PostgreSQL 15: migrations, the pool's error mapping, prepared
// statements with bytea, recovery after a server restart, pool exhaustion, metrics.

#include <atomic>
#include <memory>
#include <optional>
#include <pqxx/pqxx>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/match.h"
#include "absl/synchronization/notification.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "prometheus/registry.h"
#include "services/common/postgres/migrations.h"
#include "services/common/postgres/pool.h"
#include "tests/harness/harness.h"
#include "tests/harness/postgres_server.h"
#include "tests/integration/postgres/testdata_migrations.h"

namespace padlock::postgres {
namespace {

using ::padlock::testing::PostgresServer;
using ::testing::HasSubstr;
using ::testing::Not;
using ::testing::UnorderedElementsAre;

// One server for the whole binary (initdb costs about a second); every test gets a fresh
// database.
class PostgresEnvironment : public ::testing::Environment {
 public:
  void SetUp() override {
    absl::StatusOr<std::unique_ptr<PostgresServer>> server = PostgresServer::Start();
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = *std::move(server);
  }
  void TearDown() override { server_.reset(); }
  static PostgresServer* server() { return server_.get(); }

 private:
  static std::unique_ptr<PostgresServer> server_;
};

std::unique_ptr<PostgresServer> PostgresEnvironment::server_;
::testing::Environment* const kEnvironment =
    ::testing::AddGlobalTestEnvironment(new PostgresEnvironment);

class PostgresTest : public ::testing::Test {
 protected:
  void SetUp() override {
    server_ = PostgresEnvironment::server();
    ASSERT_NE(server_, nullptr);
    // A test that stopped the server and failed half-way must not break the next one.
    ASSERT_TRUE(server_->Restart().ok());
    absl::StatusOr<std::string> db = server_->CreateFreshDatabase();
    ASSERT_TRUE(db.ok()) << db.status();
    conninfo_ = server_->ConnInfo(*db);
  }

  std::unique_ptr<Pool> MakePool(PoolOptions options = {}) {
    options.conninfo = conninfo_;
    absl::StatusOr<std::unique_ptr<Pool>> pool = Pool::Create(std::move(options));
    EXPECT_TRUE(pool.ok()) << pool.status();
    return pool.ok() ? *std::move(pool) : nullptr;
  }

  // Direct SQL outside the code under test.
  pqxx::result Query(const std::string& sql) {
    pqxx::connection c(conninfo_);
    pqxx::work txn(c);
    pqxx::result r = txn.exec(sql);
    txn.commit();
    return r;
  }
  int64_t QueryInt(const std::string& sql) { return Query(sql)[0][0].as<int64_t>(); }
  bool TableExists(const std::string& table) {
    return !Query("SELECT to_regclass('" + table + "')")[0][0].is_null();
  }

  PostgresServer* server_ = nullptr;
  std::string conninfo_;
};

std::vector<Migration> TestMigrations() { return testdata::EmbeddedMigrations(); }

// ---------------------------------------------------------------------------------------------
// Embedding and migrations

TEST_F(PostgresTest, EmbeddedMigrationsCarryVersionsNamesAndExactSql) {
  std::vector<Migration> migrations = TestMigrations();
  ASSERT_EQ(migrations.size(), 3u);
  EXPECT_EQ(migrations[0].version, 1);
  EXPECT_EQ(migrations[0].name, "create_devices");
  EXPECT_EQ(migrations[1].version, 2);
  EXPECT_EQ(migrations[1].name, "create_prekeys");
  EXPECT_EQ(migrations[2].version, 10);  // "0010": decimal, not octal
  EXPECT_EQ(migrations[2].name, "add_function");
  EXPECT_THAT(migrations[2].sql, HasSubstr("@x@ ${y}\n"));
  EXPECT_THAT(migrations[2].sql, HasSubstr("RETURN t || E'\\\\' || ';';"));
}

TEST_F(PostgresTest, MigrationsAreAppliedOnceAndASecondRunAppliesNothing) {
  absl::StatusOr<MigrationResult> first = Migrate({.conninfo = conninfo_}, TestMigrations());
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_EQ(first->previous_version, 0);
  EXPECT_EQ(first->current_version, 10);
  EXPECT_EQ(first->applied, (std::vector<int64_t>{1, 2, 10}));
  EXPECT_TRUE(TableExists("devices"));
  EXPECT_TRUE(TableExists("prekeys"));
  // The embedded SQL ran byte for byte: the function returns its input, a backslash, ';'.
  EXPECT_EQ(Query("SELECT padlock_echo('a')")[0][0].as<std::string>(), "a\\;");

  absl::StatusOr<MigrationResult> second = Migrate({.conninfo = conninfo_}, TestMigrations());
  ASSERT_TRUE(second.ok()) << second.status();
  EXPECT_EQ(second->previous_version, 10);
  EXPECT_EQ(second->current_version, 10);
  EXPECT_TRUE(second->applied.empty());
  EXPECT_EQ(QueryInt("SELECT count(*) FROM schema_migrations"), 3);
  EXPECT_EQ(Query("SELECT name FROM schema_migrations WHERE version = 2")[0][0].as<std::string>(),
            "create_prekeys");
}

TEST_F(PostgresTest, ConcurrentMigratorsApplyEachMigrationExactlyOnce) {
  // Hold the migration lock so that both migrators are provably waiting on it, then let them
  // race for it.
  pqxx::connection holder(conninfo_);
  pqxx::nontransaction session(holder);
  session.exec_params("SELECT pg_advisory_lock($1)", kMigrationLockKey);

  std::optional<absl::StatusOr<MigrationResult>> results[2];
  std::vector<std::thread> threads;
  for (int i = 0; i < 2; ++i) {
    threads.emplace_back(
        [&, i] { results[i].emplace(Migrate({.conninfo = conninfo_}, TestMigrations())); });
  }
  const bool both_waiting = padlock::testing::WaitFor(
      [&] {
        return session
                   .exec("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT "
                         "granted AND database = (SELECT oid FROM pg_database WHERE datname = "
                         "current_database())")[0][0]
                   .as<int>() == 2;
      },
      absl::Seconds(10));
  session.exec_params("SELECT pg_advisory_unlock($1)", kMigrationLockKey);
  for (std::thread& t : threads) t.join();
  ASSERT_TRUE(both_waiting);

  ASSERT_TRUE(results[0]->ok()) << results[0]->status();
  ASSERT_TRUE(results[1]->ok()) << results[1]->status();
  EXPECT_THAT((std::vector<size_t>{(*results[0])->applied.size(), (*results[1])->applied.size()}),
              UnorderedElementsAre(3u, 0u));
  EXPECT_EQ((*results[0])->current_version, 10);
  EXPECT_EQ((*results[1])->current_version, 10);
  EXPECT_EQ(QueryInt("SELECT count(*) FROM schema_migrations"), 3);
}

TEST_F(PostgresTest, RefusesADatabaseNewerThanTheBinary) {
  ASSERT_TRUE(Migrate({.conninfo = conninfo_}, TestMigrations()).ok());
  std::vector<Migration> older = TestMigrations();
  older.pop_back();  // this "binary" knows versions 1 and 2 only
  absl::StatusOr<MigrationResult> result = Migrate({.conninfo = conninfo_}, older);
  EXPECT_EQ(result.status().code(), absl::StatusCode::kFailedPrecondition) << result.status();
  EXPECT_THAT(std::string(result.status().message()), HasSubstr("version 10"));
  // And it changed nothing.
  EXPECT_EQ(QueryInt("SELECT count(*) FROM schema_migrations"), 3);
}

TEST_F(PostgresTest, FailingMigrationRollsBackAndReportsItsVersion) {
  std::vector<Migration> migrations = {
      {1, "good", "CREATE TABLE first_table (id int)"},
      {2, "broken", "CREATE TABLE half_done (id int); SELECT no_such_function();"},
      {3, "after", "CREATE TABLE third_table (id int)"},
  };
  absl::StatusOr<MigrationResult> result = Migrate({.conninfo = conninfo_}, migrations);
  EXPECT_EQ(result.status().code(), absl::StatusCode::kInternal) << result.status();
  EXPECT_THAT(std::string(result.status().message()), HasSubstr("migration 2 (broken)"));
  EXPECT_TRUE(TableExists("first_table"));
  EXPECT_FALSE(TableExists("half_done"));    // rolled back with its failing statement
  EXPECT_FALSE(TableExists("third_table"));  // never attempted
  EXPECT_EQ(QueryInt("SELECT count(*) FROM schema_migrations"), 1);

  // Once fixed, the next start applies the rest.
  migrations[1].sql = "CREATE TABLE half_done (id int)";
  result = Migrate({.conninfo = conninfo_}, migrations);
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(result->applied, (std::vector<int64_t>{2, 3}));
}

TEST_F(PostgresTest, MigrateRejectsDuplicateVersions) {
  absl::StatusOr<MigrationResult> result =
      Migrate({.conninfo = conninfo_}, {{1, "a", "SELECT 1"}, {1, "b", "SELECT 2"}});
  EXPECT_EQ(result.status().code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(PostgresTest, MigrateAgainstAStoppedServerIsUnavailable) {
  ASSERT_TRUE(server_->Stop().ok());
  absl::StatusOr<MigrationResult> result = Migrate({.conninfo = conninfo_}, TestMigrations());
  EXPECT_EQ(result.status().code(), absl::StatusCode::kUnavailable) << result.status();
  ASSERT_TRUE(server_->Restart().ok());
}

// ---------------------------------------------------------------------------------------------
// Pool

class PoolTest : public PostgresTest {
 protected:
  void SetUp() override {
    PostgresTest::SetUp();
    if (HasFatalFailure()) return;
    ASSERT_TRUE(Migrate({.conninfo = conninfo_}, TestMigrations()).ok());
  }

  static std::vector<PreparedStatement> Statements() {
    return {
        {"insert_device",
         "INSERT INTO devices (user_id, device_id, identity_key) VALUES ($1, $2, $3)"},
        {"identity_key", "SELECT identity_key FROM devices WHERE user_id = $1 AND device_id = $2"},
        {"count_devices", "SELECT count(*) FROM devices"},
    };
  }

  static absl::Status InsertDevice(Pool& pool, const std::string& user, int device,
                                   const std::string& key) {
    return pool.Run("insert device", [&](pqxx::work& txn) {
      txn.exec_prepared("insert_device", user, device, pqxx::binarystring(key));
      return absl::OkStatus();
    });
  }
};

TEST_F(PoolTest, UniqueViolationIsAlreadyExistsWithoutTheKeyInTheMessage) {
  std::unique_ptr<Pool> pool = MakePool({.statements = Statements()});
  ASSERT_TRUE(InsertDevice(*pool, "secret-user-name", 1, "k1").ok());
  absl::Status status = InsertDevice(*pool, "secret-user-name", 1, "k2");
  EXPECT_EQ(status.code(), absl::StatusCode::kAlreadyExists) << status;
  EXPECT_THAT(std::string(status.message()), HasSubstr("insert device"));
  EXPECT_THAT(std::string(status.message()), HasSubstr("devices_pkey"));
  // The DETAIL line, which quotes the key, is dropped.
  EXPECT_THAT(std::string(status.message()), Not(HasSubstr("secret-user-name")));
  EXPECT_EQ(QueryInt("SELECT count(*) FROM devices"), 1);
}

TEST_F(PoolTest, CheckAndForeignKeyViolationsAreFailedPrecondition) {
  std::unique_ptr<Pool> pool = MakePool({.statements = Statements()});
  EXPECT_EQ(InsertDevice(*pool, "alice", 0, "k").code(), absl::StatusCode::kFailedPrecondition);
  absl::Status orphan = pool->Run("insert orphan prekey", [](pqxx::work& txn) {
    txn.exec("INSERT INTO prekeys VALUES ('nobody', 1, 1, 'x')");
    return absl::OkStatus();
  });
  EXPECT_EQ(orphan.code(), absl::StatusCode::kFailedPrecondition) << orphan;
}

TEST_F(PoolTest, BadValueIsInvalidArgumentWithoutTheValueInTheMessage) {
  std::unique_ptr<Pool> pool = MakePool();
  absl::Status status = pool->Run("parse id", [](pqxx::work& txn) {
    txn.exec_params("SELECT $1::uuid", "secret-not-a-uuid");
    return absl::OkStatus();
  });
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << status;
  EXPECT_THAT(std::string(status.message()), Not(HasSubstr("secret")));
}

TEST_F(PoolTest, PreparedByteaRoundTripsExactBytesIncludingNuls) {
  std::unique_ptr<Pool> pool = MakePool({.statements = Statements()});
  std::string key;
  key.push_back('\0');
  for (int i = 0; i < 256; ++i) key.push_back(static_cast<char>(i));
  key.append(3, '\0');
  ASSERT_EQ(key.size(), 260u);
  ASSERT_TRUE(InsertDevice(*pool, "alice", 1, key).ok());

  absl::StatusOr<std::string> read = pool->Run("read key", [](pqxx::work& txn) {
    return absl::StatusOr<std::string>(
        pqxx::binarystring(txn.exec_prepared1("identity_key", "alice", 1)[0]).str());
  });
  ASSERT_TRUE(read.ok()) << read.status();
  EXPECT_EQ(*read, key);
  EXPECT_EQ(QueryInt("SELECT length(identity_key) FROM devices"), 260);
}

TEST_F(PoolTest, RunReturnsTheBodysValueAndAnErrorFromTheBodyRollsBack) {
  std::unique_ptr<Pool> pool = MakePool({.statements = Statements()});
  absl::StatusOr<int> inserted = pool->Run("insert then fail", [](pqxx::work& txn) {
    txn.exec_prepared("insert_device", "alice", 1, pqxx::binarystring(std::string("k")));
    return absl::StatusOr<int>(absl::NotFoundError("body says no"));
  });
  EXPECT_EQ(inserted.status(), absl::NotFoundError("body says no"));  // returned unchanged
  absl::StatusOr<int64_t> count = pool->Run("count", [](pqxx::work& txn) {
    return absl::StatusOr<int64_t>(txn.exec_prepared1("count_devices")[0].as<int64_t>());
  });
  ASSERT_TRUE(count.ok()) << count.status();
  EXPECT_EQ(*count, 0);
}

// Without a transaction each statement commits by itself: one round trip for a one-statement
// body, and nothing to roll back when the body fails afterwards. Errors map as in a transaction.
TEST_F(PoolTest, WithoutTransactionEachStatementCommitsOnItsOwn) {
  std::unique_ptr<Pool> pool = MakePool({.statements = Statements()});
  absl::StatusOr<int64_t> count =
      pool->RunWithoutTransaction("insert then count", [](pqxx::nontransaction& txn) {
        txn.exec_prepared("insert_device", "alice", 1, pqxx::binarystring(std::string("k")));
        return absl::StatusOr<int64_t>(txn.exec_prepared1("count_devices")[0].as<int64_t>());
      });
  ASSERT_TRUE(count.ok()) << count.status();
  EXPECT_EQ(*count, 1);
  absl::Status failed =
      pool->RunWithoutTransaction("insert then fail", [](pqxx::nontransaction& txn) {
        txn.exec_prepared("insert_device", "bob", 1, pqxx::binarystring(std::string("k")));
        return absl::NotFoundError("body says no");
      });
  EXPECT_EQ(failed, absl::NotFoundError("body says no"));  // returned unchanged
  EXPECT_EQ(QueryInt("SELECT count(*) FROM devices"), 2);  // bob's row stays: autocommit
  absl::Status duplicate =
      pool->WithoutTransaction("insert again", [](pqxx::nontransaction& txn) {
        txn.exec_prepared("insert_device", "alice", 1, pqxx::binarystring(std::string("k")));
        return absl::OkStatus();
      });
  EXPECT_EQ(duplicate.code(), absl::StatusCode::kAlreadyExists) << duplicate;
  // The connection is fine afterwards (no aborted transaction left on it).
  EXPECT_TRUE(InsertDevice(*pool, "carol", 1, "k").ok());
  EXPECT_EQ(QueryInt("SELECT count(*) FROM devices"), 3);
  // Isolation and read-only need a transaction.
  auto body = [](pqxx::nontransaction&) { return absl::OkStatus(); };
  EXPECT_EQ(pool->WithoutTransaction("ro", body, {.read_only = true}).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(
      pool->WithoutTransaction("rr", body, {.isolation = Isolation::kRepeatableRead}).code(),
      absl::StatusCode::kInvalidArgument);
}

TEST_F(PoolTest, SerializationFailureIsAbortedAndRetriedOnlyWhenIdempotent) {
  std::unique_ptr<Pool> pool = MakePool();
  int attempts = 0;
  auto fails_once = [&](pqxx::work& txn) {
    if (++attempts == 1) {
      txn.exec("DO $$ BEGIN RAISE EXCEPTION 'simulated conflict' USING ERRCODE = "
               "'serialization_failure'; END $$");
    }
    return absl::OkStatus();
  };
  absl::Status once = pool->Run("not idempotent", fails_once);
  EXPECT_EQ(once.code(), absl::StatusCode::kAborted) << once;
  EXPECT_EQ(attempts, 1);

  attempts = 0;
  absl::Status retried = pool->Run("idempotent", fails_once,
                                   {.isolation = Isolation::kSerializable, .idempotent = true});
  EXPECT_TRUE(retried.ok()) << retried;
  EXPECT_EQ(attempts, 2);
}

TEST_F(PoolTest, StatementOverTheTimeoutIsDeadlineExceeded) {
  std::unique_ptr<Pool> pool = MakePool({.statement_timeout = absl::Milliseconds(100)});
  absl::Status status = pool->Run("slow query", [](pqxx::work& txn) {
    txn.exec("SELECT pg_sleep(5)");
    return absl::OkStatus();
  });
  EXPECT_EQ(status.code(), absl::StatusCode::kDeadlineExceeded) << status;
  EXPECT_TRUE(pool->Ping().ok());  // the connection is still usable
}

TEST_F(PoolTest, ReadOnlyTransactionRefusesWrites) {
  std::unique_ptr<Pool> pool = MakePool({.statements = Statements()});
  absl::Status status = pool->Run(
      "write in read-only",
      [](pqxx::work& txn) {
        txn.exec_prepared("insert_device", "alice", 1, pqxx::binarystring(std::string("k")));
        return absl::OkStatus();
      },
      {.read_only = true});
  EXPECT_EQ(status.code(), absl::StatusCode::kUnavailable) << status;  // 25006, as on a standby
  EXPECT_EQ(QueryInt("SELECT count(*) FROM devices"), 0);
}

TEST_F(PoolTest, ExhaustedPoolIsResourceExhaustedAfterTheAcquireTimeout) {
  std::unique_ptr<Pool> pool = MakePool({.size = 1, .acquire_timeout = absl::Milliseconds(200)});
  absl::Notification entered;
  absl::Notification release;
  std::thread holder([&] {
    absl::Status s = pool->Run("hold the only connection", [&](pqxx::work&) {
      entered.Notify();
      release.WaitForNotification();
      return absl::OkStatus();
    });
    EXPECT_TRUE(s.ok()) << s;
  });
  entered.WaitForNotification();
  const absl::Time start = absl::Now();
  absl::Status status = pool->Ping();
  const absl::Duration waited = absl::Now() - start;
  release.Notify();
  holder.join();
  EXPECT_EQ(status.code(), absl::StatusCode::kResourceExhausted) << status;
  EXPECT_GE(waited, absl::Milliseconds(200));
  EXPECT_TRUE(pool->Ping().ok());  // the connection came back
}

TEST_F(PoolTest, ServerStoppedIsUnavailableAndThePoolRecoversWhenItReturns) {
  std::unique_ptr<Pool> pool = MakePool({.size = 2, .statements = Statements()});
  ASSERT_TRUE(InsertDevice(*pool, "alice", 1, std::string("a\0b", 3)).ok());

  // A restart behind the pool's back: the idle connection is dead, the next call still works.
  ASSERT_TRUE(server_->Stop().ok());
  ASSERT_TRUE(server_->Restart().ok());
  ASSERT_TRUE(InsertDevice(*pool, "alice", 2, "k").ok());

  ASSERT_TRUE(server_->Stop().ok());
  absl::Status down = InsertDevice(*pool, "alice", 3, "k");
  EXPECT_EQ(down.code(), absl::StatusCode::kUnavailable) << down;
  EXPECT_EQ(pool->Ping().code(), absl::StatusCode::kUnavailable);

  ASSERT_TRUE(server_->Restart().ok());
  EXPECT_TRUE(pool->Ping().ok());
  EXPECT_TRUE(InsertDevice(*pool, "alice", 3, "k").ok());
  absl::StatusOr<std::string> key = pool->Run("read key", [](pqxx::work& txn) {
    return absl::StatusOr<std::string>(
        pqxx::binarystring(txn.exec_prepared1("identity_key", "alice", 1)[0]).str());
  });
  ASSERT_TRUE(key.ok()) << key.status();
  EXPECT_EQ(*key, std::string("a\0b", 3));
}

TEST_F(PoolTest, MetricsCountCallsAndErrorsByCode) {
  prometheus::Registry registry;
  std::unique_ptr<Pool> pool = MakePool({.statements = Statements(), .metrics = &registry});
  ASSERT_TRUE(InsertDevice(*pool, "alice", 1, "k").ok());
  ASSERT_EQ(InsertDevice(*pool, "alice", 1, "k").code(), absl::StatusCode::kAlreadyExists);
  ASSERT_EQ(pool->Run("body error", [](pqxx::work&) { return absl::NotFoundError("x"); }).code(),
            absl::StatusCode::kNotFound);

  uint64_t calls = 0;
  double already_exists = -1;
  int error_series = 0;
  for (const prometheus::MetricFamily& family : registry.Collect()) {
    if (family.name == "padlock_postgres_call_seconds") {
      calls = family.metric.at(0).histogram.sample_count;
    }
    if (family.name == "padlock_postgres_errors_total") {
      for (const prometheus::ClientMetric& m : family.metric) {
        ++error_series;
        if (m.label.at(0).value == "ALREADY_EXISTS") already_exists = m.counter.value;
      }
    }
  }
  EXPECT_EQ(calls, 3u);
  EXPECT_EQ(already_exists, 1);
  EXPECT_EQ(error_series, 1);  // the body's own NotFound is not a postgres error
}

TEST_F(PoolTest, CreateRejectsBadOptions) {
  EXPECT_EQ(Pool::Create({.conninfo = conninfo_, .size = 0}).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Pool::Create({.conninfo = conninfo_, .statements = {{"a", "SELECT 1"}, {"a", "x"}}})
                .status()
                .code(),
            absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace padlock::postgres
