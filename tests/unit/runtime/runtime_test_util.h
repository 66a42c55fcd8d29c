#pragma once
// Helpers for the runtime tests (unit and integration): a minimal HTTP GET for /metrics and a
// reader for the Prometheus text format.

#include <map>
#include <optional>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace padlock::runtime::testing {

// GET http://127.0.0.1:<port><path> with HTTP/1.0. Returns the body of a 200 answer;
// Unavailable when nothing answers, Internal for another status line.
absl::StatusOr<std::string> HttpGet(int port, std::string_view path,
                                    absl::Duration timeout = absl::Seconds(5));

// The value of the sample `name{labels}` in a Prometheus text exposition, where the sample's
// label set equals `labels` exactly; nullopt when there is no such sample.
std::optional<double> MetricValue(std::string_view exposition, std::string_view name,
                                  const std::map<std::string, std::string>& labels);

// Parses `text` as one complete JSON object (RFC 8259: nested objects and arrays, escapes with
// surrogate pairs, numbers, literals) and returns its top-level members: strings decoded, other
// values as their JSON text. nullopt when `text` is not valid JSON or not an object. Written
// here because protobuf's JSON parser crashes in TSan builds against Debian's libprotobuf.
std::optional<std::map<std::string, std::string>> ParseJsonObject(std::string_view text);

// MetricValue on a fresh scrape of 127.0.0.1:<port>/metrics; 0 when the sample is absent.
double ScrapeValue(int port, std::string_view name,
                   const std::map<std::string, std::string>& labels);

}  // namespace padlock::runtime::testing
