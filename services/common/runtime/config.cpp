#include "services/common/runtime/config.h"

#include <cstdlib>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "services/common/runtime/absl_compat.h"
#include "services/common/runtime/logging.h"

extern char** environ;

namespace padlock::runtime {
namespace {

// Values are quoted in error messages; keep a pasted blob from flooding the log.
constexpr size_t kMaxQuotedValue = 64;

std::string Quote(std::string_view value) {
  if (value.size() <= kMaxQuotedValue) return absl::StrCat("'", ToAbsl(value), "'");
  return absl::StrCat("'", ToAbsl(value.substr(0, kMaxQuotedValue)), "...'");
}

bool ParseNonNegativeDuration(absl::string_view text, absl::Duration* out) {
  // "30d": days are not an absl unit, and a retention period is naturally written in days.
  if (absl::EndsWith(text, "d")) {
    double days = 0;
    absl::string_view number = text.substr(0, text.size() - 1);
    if (number.empty() || !absl::SimpleAtod(number, &days) || !(days >= 0) || days > 1e6) {
      return false;
    }
    *out = absl::Hours(24) * days;
    return true;
  }
  absl::Duration d;
  if (!absl::ParseDuration(text, &d)) return false;
  if (d < absl::ZeroDuration() || d == absl::InfiniteDuration()) return false;
  *out = d;
  return true;
}

}  // namespace

Config Config::FromEnvironment() {
  std::map<std::string, std::string> values;
  for (char** entry = environ; entry != nullptr && *entry != nullptr; ++entry) {
    std::string_view kv(*entry);
    const size_t eq = kv.find('=');
    if (eq == std::string_view::npos) continue;
    values.emplace(std::string(kv.substr(0, eq)), std::string(kv.substr(eq + 1)));
  }
  return Config(std::move(values));
}

Config::Config(std::map<std::string, std::string> values) : values_(values.begin(), values.end()) {}

Config::Config(std::initializer_list<std::pair<const std::string, std::string>> values)
    : values_(values.begin(), values.end()) {}

const std::string* Config::Lookup(std::string_view name) {
  read_.emplace(name);
  auto it = values_.find(name);
  if (it == values_.end() || it->second.empty()) return nullptr;
  return &it->second;
}

bool Config::Has(std::string_view name) { return Lookup(name) != nullptr; }

void Config::AddError(std::string_view variable, std::string_view message) {
  for (const Error& e : errors_) {
    if (e.variable == variable && e.message == message) return;  // read twice, report once
  }
  errors_.push_back(Error{std::string(variable), std::string(message)});
}

std::string Config::String(std::string_view name, std::string_view default_value) {
  const std::string* value = Lookup(name);
  return value == nullptr ? std::string(default_value) : *value;
}

int Config::Port(std::string_view name, int default_value) {
  const std::string* value = Lookup(name);
  if (value == nullptr) return default_value;
  int port = 0;
  if (!absl::SimpleAtoi(*value, &port) || port < 0 || port > 65535) {
    AddError(name, absl::StrCat("not a port number: ", Quote(*value)));
    return default_value;
  }
  return port;
}

int64_t Config::Int(std::string_view name, int64_t default_value, int64_t min, int64_t max) {
  const std::string* value = Lookup(name);
  if (value == nullptr) return default_value;
  int64_t parsed = 0;
  if (!absl::SimpleAtoi(*value, &parsed)) {
    AddError(name, absl::StrCat("not an integer: ", Quote(*value)));
    return default_value;
  }
  if (parsed < min || parsed > max) {
    AddError(name, absl::StrCat("out of range [", min, ", ", max, "]: ", Quote(*value)));
    return default_value;
  }
  return parsed;
}

absl::Duration Config::Duration(std::string_view name, absl::Duration default_value) {
  return Duration(name, default_value, absl::ZeroDuration(), absl::InfiniteDuration());
}

absl::Duration Config::Duration(std::string_view name, absl::Duration default_value,
                                absl::Duration min, absl::Duration max) {
  const std::string* value = Lookup(name);
  if (value == nullptr) return default_value;
  absl::Duration parsed;
  if (!ParseNonNegativeDuration(absl::StripAsciiWhitespace(*value), &parsed)) {
    AddError(name, absl::StrCat("not a duration (e.g. 30s, 500ms, 720h, 30d): ", Quote(*value)));
    return default_value;
  }
  if (parsed < min || parsed > max) {
    AddError(name, absl::StrCat("out of range [", absl::FormatDuration(min), ", ",
                                absl::FormatDuration(max), "]: ", Quote(*value)));
    return default_value;
  }
  return parsed;
}

bool Config::Bool(std::string_view name, bool default_value) {
  const std::string* value = Lookup(name);
  if (value == nullptr) return default_value;
  const std::string lower = absl::AsciiStrToLower(absl::StripAsciiWhitespace(*value));
  if (lower == "true" || lower == "1" || lower == "yes" || lower == "on") return true;
  if (lower == "false" || lower == "0" || lower == "no" || lower == "off") return false;
  AddError(name, absl::StrCat("not a boolean (true/false/1/0/yes/no): ", Quote(*value)));
  return default_value;
}

std::string Config::OneOf(std::string_view name, std::string_view default_value,
                          std::initializer_list<std::string_view> allowed) {
  const std::string* value = Lookup(name);
  if (value == nullptr) return std::string(default_value);
  for (std::string_view candidate : allowed) {
    if (*value == candidate) return *value;
  }
  std::vector<absl::string_view> names;
  for (std::string_view candidate : allowed) names.push_back(ToAbsl(candidate));
  AddError(name, absl::StrCat("must be one of ", absl::StrJoin(names, ", "), ": ", Quote(*value)));
  return std::string(default_value);
}

std::string Config::HostPort(std::string_view name, std::string_view default_value) {
  const std::string* value = Lookup(name);
  if (value == nullptr) return std::string(default_value);
  const absl::string_view text = *value;
  const size_t colon = text.rfind(':');
  bool ok = colon != absl::string_view::npos && colon > 0;
  if (ok) {
    const absl::string_view host = text.substr(0, colon);
    int port = 0;
    ok = absl::SimpleAtoi(text.substr(colon + 1), &port) && port >= 0 && port <= 65535 &&
         !absl::StrContains(host, " ");
    if (ok && host.front() == '[') ok = host.size() > 2 && host.back() == ']';
    if (ok && host.front() != '[') ok = !absl::StrContains(host, ":");  // bare IPv6 needs []
  }
  if (!ok) {
    AddError(name, absl::StrCat("not host:port (e.g. 0.0.0.0:7400, [::]:7400): ", Quote(*value)));
    return std::string(default_value);
  }
  return *value;
}

absl::Status Config::Validate() const {
  if (errors_.empty()) return absl::OkStatus();
  return absl::InvalidArgumentError(
      absl::StrCat("invalid configuration: ",
                   absl::StrJoin(errors_, "; ", [](std::string* out, const Error& e) {
                     absl::StrAppend(out, e.variable, ": ", e.message);
                   })));
}

std::vector<std::string> Config::UnusedVariables() const {
  std::vector<std::string> unused;
  for (const auto& [name, value] : values_) {
    if (absl::StartsWith(name, "PADLOCK_") && read_.count(name) == 0) unused.push_back(name);
  }
  return unused;
}

void ExitIfInvalid(const Config& config) {
  if (!config.errors().empty()) {
    for (const Config::Error& e : config.errors()) {
      LogError("invalid configuration", {{"variable", e.variable}, {"error", e.message}});
    }
    // _Exit: no static destructors while library threads may already be running; every log
    // line has been written with write(2), nothing is buffered.
    std::_Exit(2);
  }
  for (const std::string& name : config.UnusedVariables()) {
    LogWarn("unknown configuration variable ignored", {{"variable", name}});
  }
}

}  // namespace padlock::runtime
