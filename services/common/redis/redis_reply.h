#pragma once
// An owned Redis reply, independent of hiredis: users of the Redis layer never include hiredis.

#include <cstdint>
#include <ostream>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"

namespace padlock::redis {

// One RESP2 reply: nil, integer, bulk string, status ("+OK"), error ("-ERR ...") or array.
// A plain value type (copyable, movable, comparable). Strings are binary-safe.
class RedisReply {
 public:
  enum class Type { kNil, kInteger, kString, kStatus, kError, kArray };

  RedisReply() = default;  // nil

  static RedisReply Nil() { return RedisReply(); }
  static RedisReply Integer(int64_t value);
  static RedisReply String(std::string value);
  static RedisReply Status(std::string value);
  static RedisReply Error(std::string message);
  static RedisReply Array(std::vector<RedisReply> elements);

  Type type() const { return type_; }
  bool is_nil() const { return type_ == Type::kNil; }
  bool is_integer() const { return type_ == Type::kInteger; }
  bool is_string() const { return type_ == Type::kString; }
  bool is_status() const { return type_ == Type::kStatus; }
  bool is_error() const { return type_ == Type::kError; }
  bool is_array() const { return type_ == Type::kArray; }

  // The integer of an integer reply; 0 for any other type.
  int64_t integer() const { return integer_; }
  // The bytes of a string, status or error reply; empty for any other type.
  const std::string& str() const { return str_; }
  // The elements of an array reply; empty for any other type.
  const std::vector<RedisReply>& elements() const { return elements_; }

  // For an error reply, its first word ("MOVED", "NOSCRIPT", "ERR", "WRONGTYPE", ...);
  // empty for any other type.
  std::string_view error_code() const;

  // OkStatus unless this is an error reply, which maps by its code to what a caller should do:
  // OOM → ResourceExhausted; BUSY, LOADING, MASTERDOWN, TRYAGAIN, CLUSTERDOWN and UNCONFIRMED
  // (RedisClient's own: a write WAIT did not confirm, see Command::wait_per_element) → Unavailable;
  // NOSCRIPT, WRONGTYPE, NOPERM, CROSSSLOT → FailedPrecondition; anything else (including
  // errors raised by scripts) → Internal. The message is "redis: <error text>".
  absl::Status ToStatus() const;

  // Short human-readable rendering for logs and test failures; long strings are truncated.
  // Never log replies that may carry ciphertext.
  std::string DebugString() const;

  friend bool operator==(const RedisReply& a, const RedisReply& b);
  friend bool operator!=(const RedisReply& a, const RedisReply& b) { return !(a == b); }
  // GoogleTest printer: DebugString().
  friend void PrintTo(const RedisReply& reply, std::ostream* out) { *out << reply.DebugString(); }

 private:
  Type type_ = Type::kNil;
  int64_t integer_ = 0;
  std::string str_;
  std::vector<RedisReply> elements_;
};

}  // namespace padlock::redis
