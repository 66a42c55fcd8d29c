#pragma once
// Test harness primitives shared by integration and e2e tests: child processes, free loopback
// ports, temporary directories and waiting on a condition with a deadline (never a bare sleep).

#include <sys/types.h>

#include <functional>
#include <map>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace padlock::testing {

// Returns a TCP port on 127.0.0.1 that was free a moment ago (it and port + 10000, for a Redis
// Cluster bus, were bound and released), picked at random below the kernel's ephemeral port range
// so that no outgoing connection on the machine takes it before the server binds. Ports handed
// out by one process are never repeated, so two servers of one test never collide.
int FreeTcpPort();

// Polls `condition` every few milliseconds until it returns true or `timeout` passes.
// Returns true when the condition held before the deadline.
bool WaitFor(const std::function<bool()>& condition, absl::Duration timeout);

// True when something accepts TCP connections on 127.0.0.1:`port`.
bool TcpPortOpen(int port);

// A directory under $TMPDIR (or /tmp) removed recursively on destruction.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// A child process. Output goes to `log_path` (or is discarded when empty). The process is sent
// SIGKILL on destruction if still running, so a failing test never leaks servers.
class Subprocess {
 public:
  struct Options {
    std::vector<std::string> argv = {};            // argv[0] is the program (searched in PATH)
    std::map<std::string, std::string> env = {};   // added to (or overriding) the parent env
    std::string log_path = {};                   // stdout+stderr; empty = /dev/null
    std::string working_dir = {};                // empty = inherit
    uid_t run_as_uid = 0;                        // non-zero: setgid/setuid before exec
    gid_t run_as_gid = 0;
  };

  static absl::StatusOr<Subprocess> Start(Options options);

  Subprocess(Subprocess&& other) noexcept;
  Subprocess& operator=(Subprocess&& other) noexcept;
  ~Subprocess();

  pid_t pid() const { return pid_; }
  bool running();
  // Sends `signal` and waits up to `timeout` for the process to exit. Returns the exit status
  // as from waitpid, or DeadlineExceeded (the process is then still running).
  absl::StatusOr<int> Stop(int signal, absl::Duration timeout);
  // Waits up to `timeout` for the process to exit on its own; returns the waitpid status.
  absl::StatusOr<int> Wait(absl::Duration timeout);
  // Kills (SIGKILL) and reaps.
  void Kill();
  // Whole contents of the log file ("" when there is none).
  std::string ReadLog() const;

 private:
  Subprocess() = default;
  pid_t pid_ = -1;
  int status_ = 0;
  bool exited_ = false;
  std::string log_path_;
};

// Absolute path of a binary built by this project (PADLOCK_BINARY_DIR is set by CMake).
std::string BuildBinary(const std::string& relative_path);

// Finds a server program: PATH first, then the given fallback directories.
std::string FindProgram(const std::string& name, const std::vector<std::string>& fallback_dirs = {});

}  // namespace padlock::testing
