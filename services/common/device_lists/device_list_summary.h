#pragma once
// The device-list summary the key-directory keeps in Redis for the message-queue's send check
// (docs/REDIS.md "Device-list summaries", docs/ARCHITECTURE.md).
//
// One hash per user, `dl:{<user_id>}` (the per-user hash tag of channels::UserHashTag), with the
// fields below. The key-directory is the only writer (services/key_directory/redis_adapters.h);
// the message-queue only reads field `s`. Present means current: every change of the list
// deletes `s` before it commits in PostgreSQL and a stale populate can never put an old one back,
// so a reader that finds `s` may trust it, and a reader that does not asks the key-directory.
//
// Plain C++: no Redis client here, so both services and the unit tests share it.

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace padlock::device_lists {

// Hash fields of `dl:{user}`.
inline constexpr char kSummaryField[] = "s";     // the encoded Summary; absent = ask PostgreSQL
inline constexpr char kGenerationField[] = "g";  // changes on every change start and end
inline constexpr char kWritersField[] = "w";     // changes in flight
// Unix ms after which the changes in flight are presumed dead.
inline constexpr char kWritersUntilField[] = "wu";

struct SummaryDevice {
  uint32_t device_id = 0;
  uint32_t registration_id = 0;
  friend bool operator==(const SummaryDevice&, const SummaryDevice&) = default;
};

// What the send check needs of one account. `listed` false: no current list — the id is unknown,
// deleted, banned or reset (GetDeviceLists leaves all of them out); version and devices are then
// empty.
struct Summary {
  bool listed = false;
  uint64_t version = 0;
  std::vector<SummaryDevice> devices = {};  // strictly ascending device_id
  friend bool operator==(const Summary&, const Summary&) = default;
};

// "dl:{alice}".
std::string SummaryKey(std::string_view user_id);

// "a <version> <device>:<registration> ..." for a listed account (devices in ascending id), "n"
// otherwise. Compact, and readable with redis-cli.
std::string EncodeSummary(const Summary& summary);

// The inverse of EncodeSummary; nullopt for anything else (a reader then treats the user as a
// miss and asks the key-directory).
std::optional<Summary> ParseSummary(std::string_view text);

}  // namespace padlock::device_lists
