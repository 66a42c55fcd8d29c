#pragma once
// A server-side Lua script, run with EVALSHA (and loaded on NOSCRIPT) by RedisClient.

#include <string>
#include <vector>

#include "services/common/redis/redis_client.h"

namespace padlock::redis {

// Holds a Lua source and its SHA1 (lowercase hex, as SCRIPT LOAD returns it). Immutable and
// thread-safe. Commands made by Call() point at this object: it must outlive every call using them
// (scripts are normally long-lived members of the service that owns them).
class Script {
 public:
  explicit Script(std::string source);

  Script(const Script&) = delete;
  Script& operator=(const Script&) = delete;

  const std::string& source() const { return source_; }
  const std::string& sha1() const { return sha1_; }

  // EVALSHA <sha1> <#keys> keys... args..., routed by keys[0] (keyless when `keys` is empty).
  // On a cluster every key must share one slot (use one hash tag), or Redis answers CROSSSLOT;
  // channels a script publishes to belong in `keys` too (see notes/redis-grpc-pqxx.md).
  Command Call(const std::vector<std::string>& keys, const std::vector<std::string>& args) const;

 private:
  std::string source_;
  std::string sha1_;
};

}  // namespace padlock::redis
