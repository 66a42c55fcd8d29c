#pragma once
// A throw-away PostgreSQL 15 server for integration tests: initdb into a temporary directory,
// postgres on a free loopback port, trust authentication, durability switched off for speed.

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "tests/harness/harness.h"

namespace padlock::testing {

// One PostgreSQL server owned by a test binary. Start it once per binary (initdb takes about a
// second) and give every test case its own database with CreateFreshDatabase().
//
// When the test runs as root the server runs as the `postgres` system user, because PostgreSQL
// refuses to run as root. Not thread-safe: drive it from the test's main thread.
class PostgresServer {
 public:
  // Runs initdb and starts the server; returns once it accepts connections on 127.0.0.1, or an
  // error (with the server log attached) when it does not within `timeout`.
  static absl::StatusOr<std::unique_ptr<PostgresServer>> Start(
      absl::Duration timeout = absl::Seconds(30));

  // Shuts the server down (fast shutdown) and removes its data directory.
  ~PostgresServer();
  PostgresServer(const PostgresServer&) = delete;
  PostgresServer& operator=(const PostgresServer&) = delete;

  int port() const { return port_; }

  // libpq keyword/value connection string for `dbname` over TCP on 127.0.0.1, user postgres.
  std::string ConnInfo(const std::string& dbname) const;

  // Creates a new empty database (never used before in this process) and returns its name.
  // Requires a running server.
  absl::StatusOr<std::string> CreateFreshDatabase();

  // Fast shutdown: open sessions are terminated, the data survives. Returns once the postmaster
  // has exited. OK when already stopped.
  absl::Status Stop(absl::Duration timeout = absl::Seconds(30));

  // Starts the server again on the same port and data; returns once it accepts connections.
  // OK when already running.
  absl::Status Restart(absl::Duration timeout = absl::Seconds(30));

  // True while the postmaster process is alive.
  bool running();

  // The server log so far (for failure messages).
  std::string Log() const;

 private:
  PostgresServer() = default;
  absl::Status InitDb(absl::Duration timeout);
  absl::Status Launch(absl::Duration timeout);
  absl::Status RunTool(const std::string& tool, std::vector<std::string> args,
                       absl::Duration timeout);

  TempDir dir_;
  std::string bin_dir_;
  std::string data_dir_;
  std::string socket_dir_;
  std::string log_path_;
  int port_ = 0;
  uid_t uid_ = 0;  // 0: run as ourselves
  gid_t gid_ = 0;
  int next_database_ = 0;
  std::optional<Subprocess> postmaster_;
};

}  // namespace padlock::testing
