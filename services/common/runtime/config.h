#pragma once
// Service configuration from PADLOCK_* environment variables.
//
// Every getter parses and validates one variable and returns its value, or the default when the
// variable is unset or empty. A bad value never aborts on the spot: the getter records an error
// naming the variable and returns the default, so that one start-up reports every mistake at once
// (Validate / ExitIfInvalid). Typical main():
//
//   auto config = padlock::runtime::Config::FromEnvironment();
//   auto options = padlock::runtime::ServerOptionsFromConfig(config, "gateway", 7400, 9400);
//   int64_t max_devices = config.Int("PADLOCK_MAX_DEVICES", 5, 1, 100);
//   padlock::runtime::ExitIfInvalid(config);   // after the last getter
//
// Error messages quote the offending value (truncated), so read secrets only with String(), which
// never fails and never echoes. Not thread-safe: use it from main() before starting threads.

#include <cstdint>
#include <initializer_list>
#include <map>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"

namespace padlock::runtime {

class Config {
 public:
  // One rejected variable.
  struct Error {
    std::string variable;  // e.g. "PADLOCK_GRPC_PORT"
    std::string message;   // e.g. "not a port number: 'abc'"
  };

  // Snapshot of the process environment (later setenv calls are not seen).
  static Config FromEnvironment();
  // For tests: exactly these variables are set. Config({{"PADLOCK_GRPC_PORT", "abc"}}).
  explicit Config(std::map<std::string, std::string> values);
  explicit Config(std::initializer_list<std::pair<const std::string, std::string>> values);

  // True when the variable is set to a non-empty value. Counts as reading it.
  bool Has(std::string_view name);

  // The raw value. Never fails; leading and trailing spaces are kept.
  std::string String(std::string_view name, std::string_view default_value);
  // A TCP port 0..65535 (0 = any free port). Error: "not a port number: 'abc'".
  int Port(std::string_view name, int default_value);
  // A decimal integer in [min, max].
  int64_t Int(std::string_view name, int64_t default_value, int64_t min, int64_t max);
  // A non-negative finite duration: "30s", "500ms", "1h30m", "720h", "30d" (d = 24 h; also
  // ns, us, m, h as absl::ParseDuration). A bare number is rejected (unit required) except "0".
  absl::Duration Duration(std::string_view name, absl::Duration default_value);
  // As above, and within [min, max].
  absl::Duration Duration(std::string_view name, absl::Duration default_value, absl::Duration min,
                          absl::Duration max);
  // true/false/1/0/yes/no/on/off, case-insensitive.
  bool Bool(std::string_view name, bool default_value);
  // One of `allowed`, exactly (case-sensitive).
  std::string OneOf(std::string_view name, std::string_view default_value,
                    std::initializer_list<std::string_view> allowed);
  // "host:port" or "[v6addr]:port" with a port 0..65535. The host is required (0.0.0.0 or [::]
  // for every interface).
  std::string HostPort(std::string_view name, std::string_view default_value);

  // Records a problem found by the caller (e.g. two variables that contradict each other).
  void AddError(std::string_view variable, std::string_view message);

  // OK, or InvalidArgument "invalid configuration: PADLOCK_A: why; PADLOCK_B: why" listing every
  // bad variable in the order read.
  absl::Status Validate() const;
  const std::vector<Error>& errors() const { return errors_; }
  // PADLOCK_* variables that are set but were never read by a getter (likely typos), sorted.
  std::vector<std::string> UnusedVariables() const;

 private:
  // Returns the trimmed value, or nullptr when unset/empty; marks the variable as read.
  const std::string* Lookup(std::string_view name);

  std::map<std::string, std::string, std::less<>> values_;
  std::set<std::string, std::less<>> read_;
  std::vector<Error> errors_;
};

// When `config` has errors: logs one JSON error line per bad variable
// ({"level":"error","msg":"invalid configuration","variable":"PADLOCK_GRPC_PORT",
// "error":"not a port number: 'abc'"}) and exits the process with status 2 (without running
// destructors). Otherwise logs a warning per unused PADLOCK_* variable and returns. Works before
// InitLogging (the service name is then the program name).
void ExitIfInvalid(const Config& config);

}  // namespace padlock::runtime
