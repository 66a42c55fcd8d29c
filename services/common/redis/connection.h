#pragma once
// Internal to padlock_redis: one blocking hiredis connection. Used by one thread at a time.

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "services/common/redis/cluster_slots.h"
#include "services/common/redis/redis_reply.h"

struct redisContext;  // hiredis

namespace padlock::redis::internal {

struct ConnectionSettings {
  absl::Duration connect_timeout = absl::Seconds(1);
  absl::Duration command_timeout = absl::Seconds(2);
  std::string password;  // empty: no AUTH
};

class Connection {
 public:
  // Connects (and AUTHs when a password is set). Unavailable on any failure, naming the address.
  static absl::StatusOr<std::unique_ptr<Connection>> Open(const NodeAddress& address,
                                                          const ConnectionSettings& settings);
  ~Connection();
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  const std::string& address() const { return address_; }
  int fd() const;

  // Queues one command in the output buffer (nothing is written yet).
  absl::Status Append(const std::vector<std::string>& argv);
  // Writes the whole output buffer (blocking, bounded by the command timeout).
  absl::Status Flush();
  // Flushes, then blocks for the next reply (bounded by the command timeout).
  absl::StatusOr<RedisReply> Read();

  // For poll()-driven readers: one read() from the socket into the reply parser. Call only when
  // the socket is readable. Unavailable on EOF or error.
  absl::Status ReadAvailable();
  // A complete reply already read by ReadAvailable, or nullopt. Unavailable on a protocol error.
  absl::StatusOr<std::optional<RedisReply>> NextBuffered();

  // True once any I/O failed; the connection must then be dropped.
  bool broken() const;
  // True when the peer closed the socket or unexpected bytes are waiting (checked without
  // blocking). An idle pooled connection in that state must not be reused.
  bool PeerClosed() const;

 private:
  Connection(redisContext* context, std::string address);
  absl::Status Failure(const char* what) const;

  redisContext* context_;
  std::string address_;
  std::vector<const char*> argv_scratch_;
  std::vector<size_t> length_scratch_;
};

}  // namespace padlock::redis::internal
