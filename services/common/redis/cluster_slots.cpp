#include "services/common/redis/cluster_slots.h"

#include <array>
#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace padlock::redis {
namespace {

constexpr std::array<uint16_t, 256> MakeCrc16Table() {
  std::array<uint16_t, 256> table{};
  for (int i = 0; i < 256; ++i) {
    uint16_t crc = static_cast<uint16_t>(i << 8);
    for (int bit = 0; bit < 8; ++bit) {
      crc = (crc & 0x8000) ? static_cast<uint16_t>((crc << 1) ^ 0x1021)
                           : static_cast<uint16_t>(crc << 1);
    }
    table[i] = crc;
  }
  return table;
}

constexpr std::array<uint16_t, 256> kCrc16Table = MakeCrc16Table();

// Debian's Abseil keeps its own string_view type (ABSL_OPTION_USE_STD_STRING_VIEW 0).
absl::string_view Absl(std::string_view s) { return absl::string_view(s.data(), s.size()); }

}  // namespace

uint16_t Crc16(std::string_view data) {
  uint16_t crc = 0;
  for (unsigned char c : data) {
    crc = static_cast<uint16_t>((crc << 8) ^ kCrc16Table[((crc >> 8) ^ c) & 0xff]);
  }
  return crc;
}

std::string_view HashTag(std::string_view key) {
  const size_t open = key.find('{');
  if (open == std::string_view::npos) return key;
  const size_t close = key.find('}', open + 1);
  if (close == std::string_view::npos || close == open + 1) return key;
  return key.substr(open + 1, close - open - 1);
}

int KeySlot(std::string_view key) { return Crc16(HashTag(key)) & (kClusterSlots - 1); }

std::string NodeAddress::ToString() const {
  if (host.find(':') != std::string::npos) return absl::StrCat("[", host, "]:", port);
  return absl::StrCat(host, ":", port);
}

absl::StatusOr<NodeAddress> ParseNodeAddress(std::string_view text) {
  const size_t colon = text.rfind(':');
  if (colon == std::string_view::npos) {
    return absl::InvalidArgumentError(
        absl::StrCat("redis address \"", Absl(text), "\" has no port"));
  }
  std::string_view host = text.substr(0, colon);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }
  int port = 0;
  if (host.empty() || !absl::SimpleAtoi(Absl(text.substr(colon + 1)), &port) || port < 1 ||
      port > 65535) {
    return absl::InvalidArgumentError(
        absl::StrCat("redis address \"", Absl(text), "\" is not host:port"));
  }
  return NodeAddress{std::string(host), port};
}

absl::StatusOr<std::vector<SlotRange>> ParseClusterSlots(const RedisReply& reply,
                                                         std::string_view queried_host) {
  if (!reply.is_array()) {
    return absl::InvalidArgumentError(
        absl::StrCat("CLUSTER SLOTS: expected an array, got ", reply.DebugString()));
  }
  std::vector<SlotRange> ranges;
  ranges.reserve(reply.elements().size());
  for (const RedisReply& entry : reply.elements()) {
    const auto& e = entry.elements();
    if (!entry.is_array() || e.size() < 3 || !e[0].is_integer() || !e[1].is_integer() ||
        !e[2].is_array() || e[2].elements().size() < 2 || !e[2].elements()[0].is_string() ||
        !e[2].elements()[1].is_integer()) {
      return absl::InvalidArgumentError(
          absl::StrCat("CLUSTER SLOTS: malformed entry ", entry.DebugString()));
    }
    SlotRange range;
    range.first = static_cast<int>(e[0].integer());
    range.last = static_cast<int>(e[1].integer());
    if (e[0].integer() < 0 || e[1].integer() >= kClusterSlots || range.first > range.last) {
      return absl::InvalidArgumentError(
          absl::StrCat("CLUSTER SLOTS: bad range ", e[0].integer(), "-", e[1].integer()));
    }
    const std::string& ip = e[2].elements()[0].str();
    range.master.host = (ip.empty() || ip == "?") ? std::string(queried_host) : ip;
    const int64_t port = e[2].elements()[1].integer();
    if (port < 1 || port > 65535) {
      return absl::InvalidArgumentError(absl::StrCat("CLUSTER SLOTS: bad port ", port));
    }
    range.master.port = static_cast<int>(port);
    ranges.push_back(std::move(range));
  }
  return ranges;
}

absl::StatusOr<Redirect> ParseRedirect(std::string_view error_text) {
  std::vector<absl::string_view> parts = absl::StrSplit(Absl(error_text), ' ', absl::SkipEmpty());
  Redirect redirect;
  if (parts.size() != 3) {
    return absl::InvalidArgumentError(absl::StrCat("not a redirect: ", Absl(error_text)));
  }
  if (parts[0] == "MOVED") {
    redirect.kind = Redirect::Kind::kMoved;
  } else if (parts[0] == "ASK") {
    redirect.kind = Redirect::Kind::kAsk;
  } else {
    return absl::InvalidArgumentError(absl::StrCat("not a redirect: ", Absl(error_text)));
  }
  if (!absl::SimpleAtoi(parts[1], &redirect.slot) || redirect.slot < 0 ||
      redirect.slot >= kClusterSlots) {
    return absl::InvalidArgumentError(absl::StrCat("bad slot in redirect: ", Absl(error_text)));
  }
  absl::StatusOr<NodeAddress> target =
      ParseNodeAddress(std::string_view(parts[2].data(), parts[2].size()));
  if (!target.ok()) return target.status();
  redirect.target = *std::move(target);
  return redirect;
}

}  // namespace padlock::redis
