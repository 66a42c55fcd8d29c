// padlock_postgres without a server: the exception -> status mapping, conninfo defaults and
// migration list validation.

#include <pqxx/except>
#include <stdexcept>
#include <string>

#include "absl/status/status.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "services/common/postgres/conninfo.h"
#include "services/common/postgres/errors.h"
#include "services/common/postgres/migrations.h"

namespace padlock::postgres {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;
using ::testing::StartsWith;

template <typename E>
MappedError Map(const E& e) {
  return MapException(std::make_exception_ptr(e), "claim bundle for alice:2");
}

std::string Message(const MappedError& m) { return std::string(m.status.message()); }

TEST(MapException, UniqueViolationIsAlreadyExistsWithoutDetail) {
  MappedError m = Map(pqxx::unique_violation(
      "ERROR:  duplicate key value violates unique constraint \"devices_pkey\"\n"
      "DETAIL:  Key (user_id, device_id)=(secret-user, 2) already exists.\n",
      "INSERT INTO devices VALUES ($1, $2)", "23505"));
  EXPECT_EQ(m.status.code(), absl::StatusCode::kAlreadyExists);
  EXPECT_THAT(Message(m), StartsWith("claim bundle for alice:2: "));
  EXPECT_THAT(Message(m), HasSubstr("devices_pkey"));
  EXPECT_THAT(Message(m), Not(HasSubstr("secret-user")));
  EXPECT_THAT(Message(m), Not(HasSubstr("INSERT")));
  EXPECT_FALSE(m.connection_lost);
}

TEST(MapException, IntegrityViolationsAreFailedPrecondition) {
  EXPECT_EQ(Map(pqxx::check_violation("ERROR:  check", "", "23514")).status.code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(Map(pqxx::foreign_key_violation("ERROR:  fk", "", "23503")).status.code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(Map(pqxx::not_null_violation("ERROR:  null", "", "23502")).status.code(),
            absl::StatusCode::kFailedPrecondition);
}

TEST(MapException, BrokenConnectionIsUnavailableAndLosesTheConnection) {
  MappedError m = Map(pqxx::broken_connection("server closed the connection unexpectedly\nmore"));
  EXPECT_EQ(m.status.code(), absl::StatusCode::kUnavailable);
  EXPECT_TRUE(m.connection_lost);
  EXPECT_THAT(Message(m), Not(HasSubstr("more")));
}

TEST(MapException, InDoubtIsUnavailableSayingTheOutcomeIsUnknown) {
  MappedError m = Map(pqxx::in_doubt_error("lost connection during commit"));
  EXPECT_EQ(m.status.code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(Message(m), HasSubstr("outcome unknown"));
  EXPECT_TRUE(m.connection_lost);
}

TEST(MapException, SerializationFailureAndDeadlockAreAborted) {
  EXPECT_EQ(Map(pqxx::serialization_failure("could not serialize")).status.code(),
            absl::StatusCode::kAborted);
  EXPECT_EQ(Map(pqxx::deadlock_detected("deadlock detected")).status.code(),
            absl::StatusCode::kAborted);
  EXPECT_EQ(Map(pqxx::sql_error("ERROR:  x", "", "40001")).status.code(),
            absl::StatusCode::kAborted);
}

TEST(MapException, ServerShutdownAndConnectionClassAreUnavailableAndLoseTheConnection) {
  for (const char* state : {"57P01", "57P02", "57P03", "08006", "25006"}) {
    MappedError m = Map(pqxx::sql_error("FATAL:  terminating connection", "", state));
    EXPECT_EQ(m.status.code(), absl::StatusCode::kUnavailable) << state;
    EXPECT_TRUE(m.connection_lost) << state;
  }
  MappedError too_many = Map(pqxx::sql_error("FATAL:  too many clients", "", "53300"));
  EXPECT_EQ(too_many.status.code(), absl::StatusCode::kUnavailable);
  EXPECT_FALSE(too_many.connection_lost);
}

TEST(MapException, StatementTimeoutIsDeadlineExceeded) {
  EXPECT_EQ(Map(pqxx::sql_error("ERROR:  canceling statement", "", "57014")).status.code(),
            absl::StatusCode::kDeadlineExceeded);
}

TEST(MapException, DataExceptionIsInvalidArgumentWithoutTheServerText) {
  MappedError m = Map(pqxx::data_exception(
      "ERROR:  invalid input syntax for type uuid: \"secret-value\"", "", "22P02"));
  EXPECT_EQ(m.status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(Message(m), Not(HasSubstr("secret-value")));
  EXPECT_THAT(Message(m), HasSubstr("22P02"));
}

TEST(MapException, OtherSqlErrorsAreInternalWithSqlState) {
  MappedError m = Map(pqxx::syntax_error("ERROR:  relation \"nope\" does not exist", "", "42P01"));
  EXPECT_EQ(m.status.code(), absl::StatusCode::kInternal);
  EXPECT_THAT(Message(m), HasSubstr("relation \"nope\" does not exist (SQLSTATE 42P01)"));
}

TEST(MapException, ConversionErrorIsInternalWithoutTheFieldValue) {
  MappedError m = Map(pqxx::conversion_error("Could not convert 'secret' to int"));
  EXPECT_EQ(m.status.code(), absl::StatusCode::kInternal);
  EXPECT_THAT(Message(m), Not(HasSubstr("secret")));
}

TEST(MapException, NonPqxxExceptionsAreInternal) {
  EXPECT_EQ(Map(std::runtime_error("boom")).status.code(), absl::StatusCode::kInternal);
  EXPECT_EQ(Map(42).status.code(), absl::StatusCode::kInternal);
}

TEST(AddConnInfoDefault, AppendsToKeywordValueStrings) {
  EXPECT_EQ(AddConnInfoDefault("host=db dbname=keys", "connect_timeout", "5"),
            "host=db dbname=keys connect_timeout=5");
  EXPECT_EQ(AddConnInfoDefault("", "connect_timeout", "5"), "connect_timeout=5");
}

TEST(AddConnInfoDefault, KeepsAnExplicitSetting) {
  EXPECT_EQ(AddConnInfoDefault("host=db connect_timeout = 9", "connect_timeout", "5"),
            "host=db connect_timeout = 9");
  EXPECT_EQ(AddConnInfoDefault("postgresql://db/keys?connect_timeout=9", "connect_timeout", "5"),
            "postgresql://db/keys?connect_timeout=9");
}

TEST(AddConnInfoDefault, DoesNotMistakeASuffixForTheKey) {
  EXPECT_EQ(AddConnInfoDefault("host=db xconnect_timeout=1", "connect_timeout", "5"),
            "host=db xconnect_timeout=1 connect_timeout=5");
}

TEST(AddConnInfoDefault, AddsAQueryParameterToUris) {
  EXPECT_EQ(AddConnInfoDefault("postgresql://db/keys", "connect_timeout", "5"),
            "postgresql://db/keys?connect_timeout=5");
  EXPECT_EQ(AddConnInfoDefault("postgres://db/keys?sslmode=require", "connect_timeout", "5"),
            "postgres://db/keys?sslmode=require&connect_timeout=5");
}

TEST(ValidateMigrations, AcceptsDistinctPositiveVersionsInAnyOrder) {
  EXPECT_TRUE(ValidateMigrations({{2, "b", "SELECT 2"}, {1, "a", "SELECT 1"}}).ok());
  EXPECT_TRUE(ValidateMigrations({}).ok());
}

TEST(ValidateMigrations, RejectsDuplicateNonPositiveAndEmpty) {
  EXPECT_EQ(ValidateMigrations({{1, "a", "SELECT 1"}, {1, "b", "SELECT 2"}}).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ValidateMigrations({{0, "a", "SELECT 1"}}).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ValidateMigrations({{1, "a", "  \n"}}).code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace padlock::postgres
