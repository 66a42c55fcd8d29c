#pragma once
// Redis Cluster key-slot arithmetic and the parsing of cluster replies, as in the Redis Cluster
// specification (https://redis.io/docs/reference/cluster-spec/). Pure functions, no I/O.

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "services/common/redis/redis_reply.h"

namespace padlock::redis {

inline constexpr int kClusterSlots = 16384;

// CRC16-CCITT (XMODEM: polynomial 0x1021, initial value 0, no reflection), the checksum Redis
// Cluster uses. Crc16("123456789") == 0x31C3.
uint16_t Crc16(std::string_view data);

// The part of `key` that is hashed: the bytes between the first '{' and the first '}' after it,
// when that is non-empty; otherwise the whole key. "{user1000}.following" → "user1000",
// "foo{}{bar}" → "foo{}{bar}", "foo{{bar}}zap" → "{bar".
std::string_view HashTag(std::string_view key);

// The cluster slot (0..16383) of a key or shard channel: Crc16(HashTag(key)) mod 16384.
int KeySlot(std::string_view key);

// "host:port" split. IPv6 literals are written "[::1]:6379".
struct NodeAddress {
  std::string host;
  int port = 0;

  std::string ToString() const;
  friend bool operator==(const NodeAddress& a, const NodeAddress& b) {
    return a.host == b.host && a.port == b.port;
  }
};

// Parses "host:port" (or "[v6]:port"). InvalidArgument on an empty host or a port outside 1..65535.
absl::StatusOr<NodeAddress> ParseNodeAddress(std::string_view text);

// A range of slots served by one master.
struct SlotRange {
  int first = 0;  // inclusive
  int last = 0;   // inclusive
  NodeAddress master;

  friend bool operator==(const SlotRange& a, const SlotRange& b) {
    return a.first == b.first && a.last == b.last && a.master == b.master;
  }
};

// Parses a CLUSTER SLOTS reply: [[first, last, [ip, port, id, ...], replicas...], ...]. A master
// announced with an empty ip or "?" gets `queried_host` (the host the command was sent to), as
// the spec asks. InvalidArgument when the reply is not of that shape or a range is out of bounds.
absl::StatusOr<std::vector<SlotRange>> ParseClusterSlots(const RedisReply& reply,
                                                         std::string_view queried_host);

// A MOVED or ASK error reply: "MOVED 3999 127.0.0.1:6381".
struct Redirect {
  enum class Kind { kMoved, kAsk };
  Kind kind = Kind::kMoved;
  int slot = 0;
  NodeAddress target;
};

// Parses a MOVED/ASK error text (without the leading '-'). InvalidArgument for anything else.
absl::StatusOr<Redirect> ParseRedirect(std::string_view error_text);

}  // namespace padlock::redis
