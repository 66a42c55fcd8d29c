#pragma once
// A fixed-size pool of libpqxx connections that lends one connection to a callable for one
// transaction and turns every libpqxx exception into an absl::Status (see errors.h).
//
//   PoolOptions options{.conninfo = dsn, .size = 8,
//                       .statements = {{"get_device", "SELECT ... WHERE user_id = $1"}}};
//   absl::StatusOr<std::unique_ptr<Pool>> pool = Pool::Create(std::move(options));
//   absl::StatusOr<int> count = (*pool)->Run("count devices of alice", [&](pqxx::work& txn) {
//     return absl::StatusOr<int>(txn.exec_prepared1("count_devices", user)[0].as<int>());
//   });
//
// Callers need pqxx only inside the callable body.
//
// Environment variables the services map onto these options (the mapping lives in each
// service's config code, as for Redis; see docs/POSTGRES.md):
//   PADLOCK_POSTGRES_DSN                conninfo or postgres:// URI (secret) → conninfo
//   PADLOCK_POSTGRES_POOL_SIZE          connections per replica (default 8) → size
//   PADLOCK_POSTGRES_ACQUIRE_TIMEOUT    default "2s"                        → acquire_timeout
//   PADLOCK_POSTGRES_STATEMENT_TIMEOUT  default "5s"; "0" = none            → statement_timeout
//   PADLOCK_POSTGRES_CONNECT_TIMEOUT    default "5s"                        → connect_timeout

#include <condition_variable>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <pqxx/pqxx>  // the whole API, for the callable bodies
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace prometheus {
class Registry;
class Histogram;
class Counter;
template <typename T>
class Family;
}  // namespace prometheus

namespace padlock::postgres {

// A statement prepared on every connection of the pool, for `txn.exec_prepared(name, args...)`.
struct PreparedStatement {
  std::string name;
  std::string sql;
};

struct PoolOptions {
  // libpq connection string (keyword/value or postgres:// URI). Never logged: it may hold a
  // password.
  std::string conninfo = {};
  // Connections, opened lazily on first use and re-opened lazily after a failure.
  int size = 8;
  // How long a transaction waits for a free connection before ResourceExhausted.
  absl::Duration acquire_timeout = absl::Seconds(2);
  // Server-side statement_timeout of every connection; a statement over it fails with
  // DeadlineExceeded. Zero: no limit.
  absl::Duration statement_timeout = absl::Seconds(5);
  // libpq connect_timeout (whole seconds, libpq's minimum is 2) unless `conninfo` sets one.
  absl::Duration connect_timeout = absl::Seconds(5);
  // Prepared on each connection when it is (re)made.
  std::vector<PreparedStatement> statements = {};
  // Optional; must outlive the pool. Records padlock_postgres_call_seconds (histogram, one
  // observation per WithTransaction/Run/Ping call, waiting and retries included) and
  // padlock_postgres_errors_total{code} (one per failed attempt that PostgreSQL or the pool
  // caused; statuses returned by the callable itself are not counted).
  prometheus::Registry* metrics = nullptr;
};

enum class Isolation { kReadCommitted, kRepeatableRead, kSerializable };

struct TransactionOptions {
  Isolation isolation = Isolation::kReadCommitted;
  bool read_only = false;
  // The caller declares that running the whole transaction again is harmless. Only then is a
  // transaction that failed with Aborted (serialization failure, deadlock) or Unavailable
  // (connection lost, commit outcome unknown) run again, up to `max_attempts` times in all, on
  // a fresh connection where the old one was lost. The last attempt's status is returned.
  bool idempotent = false;
  int max_attempts = 3;
};

// Thread-safe. Each connection is used by one transaction at a time.
class Pool {
 public:
  using Body = absl::FunctionRef<absl::Status(pqxx::work&)>;

  // Validates `options` (InvalidArgument: size < 1, negative timeouts, duplicate statement
  // names, metrics that clash with an existing family). Opens no connection: use Ping() to check
  // that the database is reachable.
  static absl::StatusOr<std::unique_ptr<Pool>> Create(PoolOptions options);

  // All leased connections must have been returned (no call may be running).
  ~Pool();
  Pool(const Pool&) = delete;
  Pool& operator=(const Pool&) = delete;

  // Lends a connection to `body` inside one transaction (BEGIN ... COMMIT) and commits when
  // `body` returns OK. When `body` returns an error the transaction is rolled back and that
  // status is returned unchanged (never retried). When `body` or the commit throws, the
  // transaction is rolled back and the exception is mapped by MapException (errors.h) with
  // `context` as the message prefix; a lost connection is discarded and a new one is made on
  // next use. A connection that turns out to be dead before `body` starts (the server restarted
  // while it sat idle) is replaced once transparently: nothing had been sent yet.
  //
  // No free connection within acquire_timeout: ResourceExhausted ("slow down": the database is
  // reachable but every connection is busy; Unavailable stays reserved for "database down").
  // Cannot connect: Unavailable.
  absl::Status WithTransaction(absl::string_view context, Body body,
                               const TransactionOptions& options = {});

  // Like WithTransaction, for a callable returning absl::Status or absl::StatusOr<T>; returns
  // the same type. The value is returned only when the commit succeeded.
  template <typename F>
  std::invoke_result_t<F&, pqxx::work&> Run(absl::string_view context, F&& body,
                                           const TransactionOptions& options = {});

  // Like WithTransaction, but without BEGIN and COMMIT: every statement of `body` commits on its
  // own (autocommit), so a body of one statement costs one round trip instead of three. For a
  // unit of work that is one statement (a CTE may read, delete and return in one); an error the
  // body returns after a write does not undo it. Only `idempotent` and `max_attempts` of
  // `options` apply: another isolation level or read_only is InvalidArgument.
  using StatementBody = absl::FunctionRef<absl::Status(pqxx::nontransaction&)>;
  absl::Status WithoutTransaction(absl::string_view context, StatementBody body,
                                  const TransactionOptions& options = {});

  // WithoutTransaction for a callable returning absl::Status or absl::StatusOr<T>.
  template <typename F>
  std::invoke_result_t<F&, pqxx::nontransaction&> RunWithoutTransaction(
      absl::string_view context, F&& body, const TransactionOptions& options = {});

  // Readiness probe: OK when a connection can run `SELECT 1` now. Same codes as
  // WithTransaction (ResourceExhausted when every connection stays busy for acquire_timeout).
  absl::Status Ping();

  int size() const { return options_.size; }

 private:
  struct Metrics;
  struct AttemptResult {
    absl::Status status;
    bool postgres_error = false;  // caused by PostgreSQL or the pool, not returned by the body
    bool retryable = false;       // a fault worth redoing when the caller is idempotent
  };

  explicit Pool(PoolOptions options);
  // One attempt in a pqxx::work (Body) or a pqxx::nontransaction (StatementBody); defined and
  // instantiated in pool.cpp only.
  template <typename Txn, typename B>
  AttemptResult Attempt(absl::string_view context, B body, const TransactionOptions& options);
  template <typename Txn, typename B>
  absl::Status Call(absl::string_view context, B body, const TransactionOptions& options);
  // Runs `body` (returning Status or StatusOr<T>) through `with`, which takes a Status-returning
  // callable; returns the body's value only when `with` succeeded (the commit included).
  template <typename Txn, typename F, typename With>
  static std::invoke_result_t<F&, Txn&> CarryValue(F& body, With with);
  // nullopt when no slot frees up before `deadline`; the slot may hold nullptr (not connected).
  std::optional<std::unique_ptr<pqxx::connection>> Acquire(absl::Time deadline);
  void Release(std::unique_ptr<pqxx::connection> connection);
  std::unique_ptr<pqxx::connection> Connect() const;
  void CountError(const absl::Status& status);

  const PoolOptions options_;
  const std::string conninfo_;  // options_.conninfo plus defaults (connect_timeout)
  std::unique_ptr<Metrics> metrics_;

  // std::mutex rather than absl::Mutex: Debian's Abseil is not built with TSan, so TSan cannot
  // see absl::Mutex's ordering and reports false races; it does understand pthread mutexes.
  std::mutex mu_;
  std::condition_variable returned_;  // signalled when a connection comes back to idle_
  // Connections not lent out. nullptr: a slot whose connection is not made yet (or was
  // discarded). Open connections are kept at the back and taken first.
  std::deque<std::unique_ptr<pqxx::connection>> idle_ ABSL_GUARDED_BY(mu_);
};

template <typename Txn, typename F, typename With>
std::invoke_result_t<F&, Txn&> Pool::CarryValue(F& body, With with) {
  using Result = std::invoke_result_t<F&, Txn&>;
  if constexpr (std::is_same_v<Result, absl::Status>) {
    return with([&](Txn& txn) { return body(txn); });
  } else {
    std::optional<typename Result::value_type> value;
    absl::Status status = with([&](Txn& txn) -> absl::Status {
      Result result = body(txn);
      if (!result.ok()) return result.status();
      value.emplace(*std::move(result));
      return absl::OkStatus();
    });
    if (!status.ok()) return status;
    return Result(*std::move(value));
  }
}

template <typename F>
std::invoke_result_t<F&, pqxx::work&> Pool::Run(absl::string_view context, F&& body,
                                                const TransactionOptions& options) {
  return CarryValue<pqxx::work>(body, [&](auto&& status_body) {
    return WithTransaction(context, status_body, options);
  });
}

template <typename F>
std::invoke_result_t<F&, pqxx::nontransaction&> Pool::RunWithoutTransaction(
    absl::string_view context, F&& body, const TransactionOptions& options) {
  return CarryValue<pqxx::nontransaction>(body, [&](auto&& status_body) {
    return WithoutTransaction(context, status_body, options);
  });
}

}  // namespace padlock::postgres
