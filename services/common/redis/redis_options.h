#pragma once
// Options of the Redis layer: plain values, filled in by each service's config code.
//
// Environment variables the services map onto these options (the mapping itself lives in the
// service runtime, not here):
//   PADLOCK_REDIS_ADDRS      comma-separated "host:port" seeds          → addresses
//   PADLOCK_REDIS_MODE       "standalone" (default) or "cluster"        → mode
//   PADLOCK_REDIS_POOL_SIZE  connections per Redis node (default 4)     → pool_size
//   PADLOCK_REDIS_TIMEOUT    command timeout, e.g. "2s" / "500ms"       → command_timeout
// (A password, where one is set, comes from the deployment's secret store → password.)

#include <string>
#include <vector>

#include "absl/time/time.h"

namespace prometheus {
class Registry;
}  // namespace prometheus

namespace padlock::redis {

enum class RedisMode {
  // One redis-server: `addresses[0]`; other addresses are ignored.
  kStandalone,
  // A Redis Cluster: `addresses` are seeds; the slot map is read with CLUSTER SLOTS.
  kCluster,
};

struct RedisOptions {
  std::vector<std::string> addresses;  // "host:port"; at least one
  RedisMode mode = RedisMode::kStandalone;
  int pool_size = 4;                                   // connections per node, ≥ 1
  absl::Duration connect_timeout = absl::Seconds(1);   // TCP connect (and AUTH) per attempt
  absl::Duration command_timeout = absl::Seconds(2);   // socket read/write of one round trip
  std::string password;                                // empty: no AUTH
  int max_redirects = 5;   // MOVED/ASK hops followed per command before giving up
  int max_retries = 3;     // TRYAGAIN / CLUSTERDOWN / LOADING retries per command
  absl::Duration retry_backoff = absl::Milliseconds(20);  // × attempt number, between retries
  // Optional: when set, the client registers padlock_redis_* metrics here. Must outlive the
  // client. Labels never carry keys, channels or ids.
  prometheus::Registry* metrics = nullptr;
};

}  // namespace padlock::redis
