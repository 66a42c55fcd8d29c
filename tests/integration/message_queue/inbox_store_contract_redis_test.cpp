// The InboxStore contract (tests/fakes/inbox_store_contract.h) on RedisInboxStore:
// a real redis-server and a real 3-master Redis Cluster, flushed before each test.
#include <memory>
#include <utility>

#include "services/common/redis/redis_client.h"
#include "services/message_queue/redis_inbox_store.h"
#include "tests/harness/redis_server.h"
#include "tests/fakes/inbox_store_contract.h"

namespace padlock::message_queue {
namespace {

// Servers live for the rest of the binary once started (on first use); each store starts on a
// flushed one.
struct RedisBackend {
  bool cluster = false;
  std::unique_ptr<padlock::testing::RedisServer> server;
  std::unique_ptr<padlock::testing::RedisCluster> nodes;
  std::unique_ptr<redis::RedisClient> client;

  static RedisBackend& Get(bool cluster) {
    // Destroyed at exit, which stops the servers.
    static std::unique_ptr<RedisBackend> backends[2];
    std::unique_ptr<RedisBackend>& b = backends[cluster ? 1 : 0];
    if (b == nullptr) {
      b = std::make_unique<RedisBackend>();
      b->cluster = cluster;
      redis::RedisOptions options;
      if (cluster) {
        auto started = padlock::testing::RedisCluster::Start(3);
        EXPECT_TRUE(started.ok()) << started.status();
        if (started.ok()) {
          b->nodes = *std::move(started);
          options.addresses = b->nodes->addresses();
          options.mode = redis::RedisMode::kCluster;
        }
      } else {
        auto started = padlock::testing::RedisServer::Start();
        EXPECT_TRUE(started.ok()) << started.status();
        if (started.ok()) {
          b->server = *std::move(started);
          options.addresses = {b->server->address()};
        }
      }
      if (!options.addresses.empty()) b->client = *redis::RedisClient::Create(options);
    }
    return *b;
  }
  std::unique_ptr<InboxStore> Fresh(const InboxLimits& limits) {
    if (client == nullptr) return nullptr;
    absl::Status flushed = cluster ? nodes->FlushAll() : server->FlushAll();
    EXPECT_TRUE(flushed.ok()) << flushed;
    return std::make_unique<RedisInboxStore>(client.get(), limits);
  }
};

INSTANTIATE_TEST_SUITE_P(
    Redis, InboxStoreContract,
    ::testing::Values(
        InboxStoreFactory{"Standalone",
                          [](const InboxLimits& limits) {
                            return RedisBackend::Get(false).Fresh(limits);
                          }},
        InboxStoreFactory{"Cluster",
                          [](const InboxLimits& limits) {
                            return RedisBackend::Get(true).Fresh(limits);
                          }}),
    [](const ::testing::TestParamInfo<InboxStoreFactory>& info) { return info.param.name; });

}  // namespace
}  // namespace padlock::message_queue
