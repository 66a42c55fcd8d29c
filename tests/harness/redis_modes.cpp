#include "tests/harness/redis_modes.h"

#include <utility>

namespace padlock::testing {

std::string RedisModeName(const ::testing::TestParamInfo<RedisTestMode>& info) {
  return info.param == RedisTestMode::kCluster ? "Cluster" : "Standalone";
}

void RedisModeTest::SetUpTestSuite() {
  auto standalone = RedisServer::Start();
  ASSERT_TRUE(standalone.ok()) << standalone.status();
  standalone_ = standalone->release();
  auto cluster = RedisCluster::Start(3);
  ASSERT_TRUE(cluster.ok()) << cluster.status();
  cluster_ = cluster->release();
}

void RedisModeTest::TearDownTestSuite() {
  delete standalone_;
  delete cluster_;
  standalone_ = nullptr;
  cluster_ = nullptr;
}

void RedisModeTest::SetUp() {
  ASSERT_NE(standalone_, nullptr);
  ASSERT_NE(cluster_, nullptr);
  if (cluster_mode()) {
    ASSERT_TRUE(cluster_->FlushAll().ok());
    redis_options_.addresses = cluster_->addresses();
    redis_options_.mode = redis::RedisMode::kCluster;
  } else {
    ASSERT_TRUE(standalone_->FlushAll().ok());
    redis_options_.addresses = {standalone_->address()};
    redis_options_.mode = redis::RedisMode::kStandalone;
  }
}

void PostgresRedisEnvironment::SetUp() {
  auto pg = PostgresServer::Start();
  ASSERT_TRUE(pg.ok()) << pg.status();
  postgres_ = *std::move(pg);
  auto redis = RedisServer::Start();
  ASSERT_TRUE(redis.ok()) << redis.status();
  redis_ = *std::move(redis);
}

void PostgresRedisEnvironment::TearDown() {
  redis_.reset();
  postgres_.reset();
}

}  // namespace padlock::testing
