#include "services/common/postgres/pool.h"

#include <poll.h>

#include <algorithm>
#include <cstdlib>
#include <set>

#include "absl/strings/str_cat.h"
#include "prometheus/counter.h"
#include "prometheus/family.h"
#include "prometheus/histogram.h"
#include "prometheus/registry.h"
#include "services/common/postgres/conninfo.h"
#include "services/common/postgres/errors.h"

namespace padlock::postgres {

struct Pool::Metrics {
  prometheus::Histogram* call_seconds = nullptr;
  prometheus::Family<prometheus::Counter>* errors = nullptr;
};

namespace {

const char* SetTransactionSql(const TransactionOptions& options) {
  switch (options.isolation) {
    case Isolation::kReadCommitted:
      return options.read_only ? "SET TRANSACTION READ ONLY" : nullptr;
    case Isolation::kRepeatableRead:
      return options.read_only ? "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY"
                               : "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ";
    case Isolation::kSerializable:
      return options.read_only ? "SET TRANSACTION ISOLATION LEVEL SERIALIZABLE, READ ONLY"
                               : "SET TRANSACTION ISOLATION LEVEL SERIALIZABLE";
  }
  return nullptr;
}

// True when an idle connection has something to read: the server closed it (EOF) or sent a
// FATAL message before closing (shutdown, restart, pg_terminate_backend). An idle session gets
// no unsolicited traffic from us (no LISTEN), so readable means gone; a rare false positive
// only costs a reconnect. Checking first also avoids sending BEGIN on a dead socket, where
// libpqxx 6.4 leaks the failed PGresult (seen with LeakSanitizer).
bool ClosedByServer(const pqxx::connection& connection) {
  const int fd = connection.sock();
  if (fd < 0) return true;
  pollfd p{};
  p.fd = fd;
  p.events = POLLIN;
  return ::poll(&p, 1, /*timeout=*/0) != 0;
}

}  // namespace

absl::StatusOr<std::unique_ptr<Pool>> Pool::Create(PoolOptions options) {
  if (options.size < 1) return absl::InvalidArgumentError("postgres pool: size must be >= 1");
  if (options.acquire_timeout < absl::ZeroDuration() ||
      options.statement_timeout < absl::ZeroDuration() ||
      options.connect_timeout < absl::ZeroDuration()) {
    return absl::InvalidArgumentError("postgres pool: timeouts must not be negative");
  }
  std::set<std::string> names;
  for (const PreparedStatement& statement : options.statements) {
    if (statement.name.empty() || !names.insert(statement.name).second) {
      return absl::InvalidArgumentError(absl::StrCat(
          "postgres pool: prepared statement names must be unique and non-empty: '",
          statement.name, "'"));
    }
  }
  auto metrics = std::make_unique<Metrics>();
  if (options.metrics != nullptr) {
    try {
      metrics->call_seconds =
          &prometheus::BuildHistogram()
               .Name("padlock_postgres_call_seconds")
               .Help("Duration of PostgreSQL transactions, including waiting for a connection")
               .Register(*options.metrics)
               .Add({}, prometheus::Histogram::BucketBoundaries{0.0005, 0.001, 0.0025, 0.005,
                                                                0.01, 0.025, 0.05, 0.1, 0.25,
                                                                0.5, 1, 2.5, 5, 10});
      metrics->errors = &prometheus::BuildCounter()
                             .Name("padlock_postgres_errors_total")
                             .Help("Failed PostgreSQL attempts, by status code")
                             .Register(*options.metrics);
    } catch (const std::exception& e) {
      return absl::InvalidArgumentError(
          absl::StrCat("postgres pool: cannot register metrics: ", e.what()));
    }
  }
  std::unique_ptr<Pool> pool(new Pool(std::move(options)));
  pool->metrics_ = std::move(metrics);
  return pool;
}

Pool::Pool(PoolOptions options)
    : options_(std::move(options)),
      conninfo_(AddConnInfoDefault(
          options_.conninfo, "connect_timeout",
          absl::StrCat(std::max<int64_t>(2, absl::ToInt64Seconds(options_.connect_timeout))))) {
  std::lock_guard<std::mutex> lock(mu_);
  idle_.resize(options_.size);
}

Pool::~Pool() {
  std::lock_guard<std::mutex> lock(mu_);
  // A call still holding a connection would return it into a destroyed pool.
  if (idle_.size() != static_cast<size_t>(options_.size)) std::abort();
}

std::optional<std::unique_ptr<pqxx::connection>> Pool::Acquire(absl::Time deadline) {
  std::unique_lock<std::mutex> lock(mu_);
  if (!returned_.wait_until(lock, absl::ToChronoTime(deadline),
                            [this]() ABSL_NO_THREAD_SAFETY_ANALYSIS { return !idle_.empty(); })) {
    return std::nullopt;
  }
  std::unique_ptr<pqxx::connection> connection = std::move(idle_.back());
  idle_.pop_back();
  return connection;
}

void Pool::Release(std::unique_ptr<pqxx::connection> connection) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (connection != nullptr) {
      idle_.push_back(std::move(connection));
    } else {
      idle_.push_front(nullptr);
    }
  }
  returned_.notify_one();
}

std::unique_ptr<pqxx::connection> Pool::Connect() const {
  auto connection = std::make_unique<pqxx::connection>(conninfo_);
  if (options_.statement_timeout > absl::ZeroDuration()) {
    // set_variable (unlike a bare SET) is re-applied by libpqxx if it ever reconnects itself.
    connection->set_variable(
        "statement_timeout",
        absl::StrCat(std::max<int64_t>(1, absl::ToInt64Milliseconds(options_.statement_timeout))));
  }
  // Registered with the server lazily on first use, and again after any reconnect.
  for (const PreparedStatement& statement : options_.statements) {
    connection->prepare(statement.name, statement.sql);
  }
  return connection;
}

void Pool::CountError(const absl::Status& status) {
  if (metrics_->errors == nullptr) return;
  metrics_->errors->Add({{"code", absl::StatusCodeToString(status.code())}}).Increment();
}

absl::Status Pool::WithTransaction(absl::string_view context, Body body,
                                   const TransactionOptions& options) {
  return Call<pqxx::work>(context, body, options);
}

absl::Status Pool::WithoutTransaction(absl::string_view context, StatementBody body,
                                      const TransactionOptions& options) {
  if (options.isolation != Isolation::kReadCommitted || options.read_only) {
    return absl::InvalidArgumentError(
        absl::StrCat(context, ": isolation and read_only need a transaction"));
  }
  return Call<pqxx::nontransaction>(context, body, options);
}

template <typename Txn, typename B>
absl::Status Pool::Call(absl::string_view context, B body, const TransactionOptions& options) {
  const absl::Time start = absl::Now();
  const int attempts = options.idempotent ? std::max(1, options.max_attempts) : 1;
  AttemptResult result;
  for (int attempt = 1; attempt <= attempts; ++attempt) {
    result = Attempt<Txn>(context, body, options);
    if (result.postgres_error) CountError(result.status);
    if (result.status.ok() || !result.retryable) break;
  }
  if (metrics_->call_seconds != nullptr) {
    metrics_->call_seconds->Observe(absl::ToDoubleSeconds(absl::Now() - start));
  }
  return result.status;
}

template <typename Txn, typename B>
Pool::AttemptResult Pool::Attempt(absl::string_view context, B body,
                                  const TransactionOptions& options) {
  std::optional<std::unique_ptr<pqxx::connection>> leased =
      Acquire(absl::Now() + options_.acquire_timeout);
  if (!leased.has_value()) {
    absl::Status status = absl::ResourceExhaustedError(
        absl::StrCat(context, ": all ", options_.size, " postgres connections busy for ",
                     absl::FormatDuration(options_.acquire_timeout)));
    return {std::move(status), /*postgres_error=*/true, /*retryable=*/false};
  }
  std::unique_ptr<pqxx::connection>& connection = *leased;
  // Hands the connection back on every path; a lost one comes back as nullptr.
  struct Returner {
    Pool* pool;
    std::unique_ptr<pqxx::connection>* connection;
    ~Returner() { pool->Release(std::move(*connection)); }
  } returner{this, &connection};

  auto fail = [&](const std::exception_ptr& error) -> AttemptResult {
    MappedError mapped = MapException(error, context);
    if (mapped.connection_lost || (connection != nullptr && !connection->is_open())) {
      connection.reset();
    }
    const absl::StatusCode code = mapped.status.code();
    return {std::move(mapped.status), /*postgres_error=*/true,
            code == absl::StatusCode::kAborted || code == absl::StatusCode::kUnavailable};
  };

  try {
    std::optional<Txn> txn;
    if (connection != nullptr && ClosedByServer(*connection)) connection.reset();
    if (connection == nullptr) {
      connection = Connect();
      txn.emplace(*connection);
    } else {
      try {
        txn.emplace(*connection);
      } catch (...) {
        // BEGIN failed on a connection that sat idle and looked healthy (e.g. the peer vanished
        // without closing the socket). Nothing of the transaction was sent, so one fresh
        // connection is a safe, invisible retry. Any other failure of BEGIN is reported as is.
        // (A nontransaction sends nothing here.)
        MappedError mapped = MapException(std::current_exception(), context);
        if (!mapped.connection_lost && connection->is_open()) throw;
        connection.reset();
        connection = Connect();
        txn.emplace(*connection);
      }
    }
    if constexpr (std::is_same_v<Txn, pqxx::work>) {
      if (const char* set_transaction = SetTransactionSql(options)) txn->exec(set_transaction);
    }
    absl::Status status = body(*txn);
    if (!status.ok()) {
      txn->abort();
      return {std::move(status), /*postgres_error=*/false, /*retryable=*/false};
    }
    txn->commit();
    return {absl::OkStatus(), /*postgres_error=*/false, /*retryable=*/false};
  } catch (...) {
    // The transaction (if any) was destroyed during unwinding, which rolled it back.
    return fail(std::current_exception());
  }
}

absl::Status Pool::Ping() {
  return WithTransaction("postgres ping", [](pqxx::work& txn) {
    txn.exec("SELECT 1");
    return absl::OkStatus();
  });
}

}  // namespace padlock::postgres
