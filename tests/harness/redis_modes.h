#pragma once
// Shared fixtures for integration tests on real servers (tests/harness).
//
// RedisModeTest: a test suite run once on a standalone redis-server and once on a 3-master Redis
// Cluster (TEST_P over RedisTestMode). Both servers start once per test binary; every test starts
// from flushed servers.
//
// PostgresRedisEnvironment: one PostgreSQL and one standalone Redis for the whole test binary.

#include <memory>
#include <string>

#include "gtest/gtest.h"
#include "services/common/redis/redis_client.h"
#include "tests/harness/postgres_server.h"
#include "tests/harness/redis_server.h"

namespace padlock::testing {

enum class RedisTestMode { kStandalone, kCluster };

// For INSTANTIATE_TEST_SUITE_P: both modes, named "Standalone" and "Cluster".
inline auto AllRedisModes() {
  return ::testing::Values(RedisTestMode::kStandalone, RedisTestMode::kCluster);
}
std::string RedisModeName(const ::testing::TestParamInfo<RedisTestMode>& info);

class RedisModeTest : public ::testing::TestWithParam<RedisTestMode> {
 protected:
  // Starts the standalone server and the cluster (once per binary; a failure fails every test).
  static void SetUpTestSuite();
  static void TearDownTestSuite();

  // Flushes this test's mode's servers and fills redis_options_ for them: the standalone address,
  // or every cluster master as a seed with RedisMode::kCluster. A subclass's SetUp calls it first.
  void SetUp() override;

  bool cluster_mode() const { return GetParam() == RedisTestMode::kCluster; }
  static RedisServer* standalone() { return standalone_; }
  static RedisCluster* cluster() { return cluster_; }

  redis::RedisOptions redis_options_;

 private:
  static inline RedisServer* standalone_ = nullptr;
  static inline RedisCluster* cluster_ = nullptr;
};

class PostgresRedisEnvironment : public ::testing::Environment {
 public:
  void SetUp() override;
  void TearDown() override;
  // Null before SetUp and after TearDown (or when the server did not start).
  static PostgresServer* postgres() { return postgres_.get(); }
  static RedisServer* redis() { return redis_.get(); }

 private:
  static inline std::unique_ptr<PostgresServer> postgres_;
  static inline std::unique_ptr<RedisServer> redis_;
};

}  // namespace padlock::testing
