// The InboxStore contract on the in-memory fake (no servers). The same suite runs on
// RedisInboxStore in tests/integration/message_queue/inbox_store_contract_redis_test.cpp.
#include <memory>

#include "tests/fakes/manual_clock.h"
#include "tests/fakes/message_queue_fakes.h"
#include "tests/fakes/inbox_store_contract.h"

namespace padlock::message_queue {
namespace {

padlock::testing::ManualClock* FixedClock() {
  static auto* clock = new padlock::testing::ManualClock(1'700'000'000'000);  // never advanced
  return clock;
}

INSTANTIATE_TEST_SUITE_P(
    Fake, InboxStoreContract,
    ::testing::Values(InboxStoreFactory{
        "InMemory",
        [](const InboxLimits& limits) -> std::unique_ptr<InboxStore> {
          return std::make_unique<InMemoryInboxStore>(limits, FixedClock());
        }}),
    [](const ::testing::TestParamInfo<InboxStoreFactory>& info) { return info.param.name; });

}  // namespace
}  // namespace padlock::message_queue
